"""A simulated device for the ember-edge tests: softmax regression on scikit-learn's digits.

Each device holds ``samples`` training digits drawn (seeded by its id) from the first 1437;
the evaluator scores a model on the last 360.
"""

from __future__ import annotations

import functools
import zlib

import numpy as np

from ember_edge.simulator import DeviceResult, DeviceTask

CLASSES = 10
FEATURES = 64
TRAIN = 1437


@functools.lru_cache(maxsize=1)
def digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    data = load_digits()
    return (data.data / 16.0).astype(np.float64), data.target.astype(np.int64)


def initial_model() -> dict[str, np.ndarray]:
    return {"w": np.zeros((FEATURES, CLASSES)), "b": np.zeros(CLASSES)}


def _grad(params: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, ...]:
    logits = x @ params["w"] + params["b"]
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(y)), y] -= 1.0
    return x.T @ p / len(y), p.mean(axis=0)


def accuracy(params: dict[str, np.ndarray]) -> dict[str, float]:
    x, y = digits()
    pred = np.argmax(x[TRAIN:] @ params["w"] + params["b"], axis=1)
    return {"accuracy": float(np.mean(pred == y[TRAIN:]))}


class DigitsDevice:
    """One device: ``steps`` full-batch gradient steps of ``lr`` on its own digits."""

    def __init__(self, samples: int = 32, steps: int = 5, lr: float = 1.0) -> None:
        self.samples, self.steps, self.lr = samples, steps, lr
        self.x = np.empty((0, FEATURES))
        self.y = np.empty(0, dtype=np.int64)
        self.closed = False

    def setup(self, device_id: str) -> None:
        x, y = digits()
        rng = np.random.default_rng(zlib.crc32(device_id.encode()))
        index = rng.choice(TRAIN, size=self.samples, replace=False)
        self.x, self.y = x[index], y[index]

    def process_task(self, task: DeviceTask) -> DeviceResult:
        params = {k: np.array(v, dtype=np.float64) for k, v in task.params.items()}
        for _ in range(self.steps):
            gw, gb = _grad(params, self.x, self.y)
            params["w"] -= self.lr * gw
            params["b"] -= self.lr * gb
        return DeviceResult(params=params, params_type="FULL", weight=float(len(self.y)))

    def shutdown(self) -> None:
        self.closed = True


class BrokenOnSite(DigitsDevice):
    """A DigitsDevice that fails when the devices of ``site`` are set up (a leaf whose
    devices break)."""

    def __init__(self, site: str, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.site = site

    def setup(self, device_id: str) -> None:
        if device_id.startswith(self.site + "/"):
            raise RuntimeError(f"device {device_id} is broken")
        super().setup(device_id)
