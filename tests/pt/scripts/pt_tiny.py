"""A tiny deterministic model for the tests."""

import torch
from torch import nn


class TinyNet(nn.Module):
    def __init__(self, width: int = 3) -> None:
        super().__init__()
        self.fc = nn.Linear(width, 2)
        with torch.no_grad():
            self.fc.weight.copy_(torch.arange(2 * width, dtype=torch.float32).reshape(2, width))
            self.fc.bias.copy_(torch.tensor([0.5, -0.5]))


class BigNet(nn.Module):
    """More than 1 MiB per tensor, in float16 and bfloat16: streamed, not inlined."""

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(7)
        self.w16 = nn.Parameter(torch.randn(1024, 640, generator=gen).to(torch.float16))
        self.wbf = nn.Parameter(torch.randn(1024, 640, generator=gen).to(torch.bfloat16))
