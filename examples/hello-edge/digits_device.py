"""hello-edge's devices: each holds 32 of scikit-learn's digits (drawn by its id from 1437
training digits) and trains a softmax regression on them; the server scores each model
version on the other 360 (a seeded shuffle: sklearn's last 360 digits are other writers',
on which even the centralised model stops at 0.91)."""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import zlib

import numpy as np

from ember_edge.simulator import DeviceResult, DeviceTask

CLASSES, FEATURES, TRAIN = 10, 64, 1437


@functools.lru_cache(maxsize=1)
def digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    data = load_digits()
    order = np.random.default_rng(0).permutation(len(data.target))
    return data.data[order] / 16.0, data.target[order]


def initial_model() -> dict[str, np.ndarray]:
    return {"w": np.zeros((FEATURES, CLASSES)), "b": np.zeros(CLASSES)}


def accuracy(params: dict[str, np.ndarray]) -> dict[str, float]:
    """The server's evaluation of a model version (EvaluatorConfig)."""
    x, y = digits()
    pred = np.argmax(x[TRAIN:] @ params["w"] + params["b"], axis=1)
    return {"accuracy": float(np.mean(pred == y[TRAIN:]))}


class DigitsDevice:
    """One device (the task-processor interface: setup, process_task, shutdown)."""

    def __init__(self, samples: int = 32, steps: int = 5, lr: float = 1.0) -> None:
        self.samples, self.steps, self.lr = samples, steps, lr

    def setup(self, device_id: str) -> None:
        x, y = digits()
        rng = np.random.default_rng(zlib.crc32(device_id.encode()))
        index = rng.choice(TRAIN, size=self.samples, replace=False)
        self.x, self.y = x[index], y[index]

    def process_task(self, task: DeviceTask) -> DeviceResult:
        w = np.array(task.params["w"], dtype=np.float64)
        b = np.array(task.params["b"], dtype=np.float64)
        for _ in range(self.steps):
            logits = self.x @ w + b
            p = np.exp(logits - logits.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            p[np.arange(len(self.y)), self.y] -= 1.0
            w -= self.lr * self.x.T @ p / len(self.y)
            b -= self.lr * p.mean(axis=0)
        return DeviceResult(params={"w": w, "b": b}, params_type="FULL", weight=len(self.y))

    def shutdown(self) -> None:
        pass


def main() -> None:
    """The device fleet as a process of its own: devices talk HTTP to the gateways whose
    gateway.json files appear under --workspace, until their gateways say DONE."""
    from ember_edge.http_devices import HttpDeviceSimulator

    parser = argparse.ArgumentParser()
    parser.add_argument("--workspace", required=True)
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--gateways", type=int, default=4)
    parser.add_argument("--stats", required=True, help="where to write the fleet's counters")
    parser.add_argument("--job-id", default=None, help="only this job's gateways")
    args = parser.parse_args()
    digits()
    fleet = HttpDeviceSimulator(
        args.workspace,
        factory=DigitsDevice,
        num_devices=args.devices,
        speed={"distribution": "uniform", "low": 0.0, "high": 0.5},  # seconds per task
        dropout=0.02,  # a device vanishes mid-task now and then
        expect_gateways=args.gateways,
        start_spread=2.0,  # the fleet comes online over two seconds
        seed=1,
        job_id=args.job_id,
    )
    stats: dict[str, object] = dict(asyncio.run(fleet.run()))
    stats["seconds"] = round(fleet.seconds, 2)
    stats["per_gateway"] = dict(fleet.per_gateway)
    with open(args.stats, "w") as out:
        json.dump(stats, out)


if __name__ == "__main__":
    main()
