"""The benchmark's model: ``layers`` float32 ``nn.Linear(width, rows)`` layers, filled from a seed.

The parameters are allocated once (built on the meta device, then ``to_empty``) and filled in
place with integers in [-100, 100) drawn from a per-parameter generator, so the job can rebuild
any single tensor to check the final model (integers plus the clients' constants stay exact in
float32).
"""

from __future__ import annotations

import torch
from torch import nn

WIDTH = 4096
LAYERS = 8
MIB = 1 << 20


def rows_for(model_bytes: float, layers: int = LAYERS, width: int = WIDTH) -> int:
    """Rows per layer so that the weights total about ``model_bytes``."""
    return max(1, round(model_bytes / (layers * width * 4)))


def fill(tensor: torch.Tensor, seed: int, index: int) -> torch.Tensor:
    """Fill ``tensor`` in place with the benchmark's values for parameter ``index``."""
    generator = torch.Generator().manual_seed(seed * 1000 + index)
    return tensor.random_(-100, 100, generator=generator)


class BigModel(nn.Module):
    """``layers`` Linear layers applied to the same input, outputs concatenated."""

    def __init__(self, rows: int, layers: int = LAYERS, width: int = WIDTH, seed: int = 0):
        super().__init__()
        with torch.device("meta"):
            self.layers = nn.ModuleList(nn.Linear(width, rows) for _ in range(layers))
        self.to_empty(device="cpu")  # one allocation per parameter, no default init
        with torch.no_grad():
            for index, param in enumerate(self.parameters()):
                fill(param, seed, index)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([layer(x) for layer in self.layers], dim=-1)


def expected_tensor(shape: torch.Size, seed: int, index: int, offset: float) -> torch.Tensor:
    """Parameter ``index`` of a fresh ``BigModel`` plus ``offset``."""
    return fill(torch.empty(shape, dtype=torch.float32), seed, index).add_(offset)
