"""PyTorch devices for the ember-edge tests: a small MLP on scikit-learn's digits.

Each device holds ``samples`` training digits drawn (seeded by its id) from the first 1437;
the evaluator scores a model on the last 360.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from ember_edge.torch_devices import TorchDeviceProcessor, load_params

TRAIN = 1437


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


@functools.lru_cache(maxsize=1)
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    data = load_digits()
    return (
        torch.tensor(data.data / 16.0, dtype=torch.float32),
        torch.tensor(data.target, dtype=torch.int64),
    )


def initial_model() -> MLP:
    torch.manual_seed(0)
    return MLP()


def device_data(device_id: str, samples: int) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = digits()
    rng = np.random.default_rng(zlib.crc32(device_id.encode()))
    index = torch.from_numpy(rng.choice(TRAIN, size=samples, replace=False))
    return x[index], y[index]


def accuracy(params: Mapping[str, Any]) -> dict[str, float]:
    model = MLP()
    load_params(model, params)
    x, y = digits()
    with torch.no_grad():
        pred = model(x[TRAIN:]).argmax(dim=1)
    return {"accuracy": float((pred == y[TRAIN:]).float().mean())}


class TorchDigitsDevice(TorchDeviceProcessor):
    """One device: ``samples`` digits, the base class's SGD train step."""

    def __init__(self, samples: int = 32, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.samples = samples

    def build_model(self) -> nn.Module:
        return MLP()

    def load_data(self, device_id: str) -> tuple[torch.Tensor, torch.Tensor]:
        return device_data(device_id, self.samples)
