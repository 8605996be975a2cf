"""The model: a small MLP for 8x8 digit images."""

from torch import nn


class DigitsMLP(nn.Module):
    """64 pixels -> hidden -> 10 classes."""

    def __init__(self, hidden: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))

    def forward(self, x):  # type: ignore[no-untyped-def]
        return self.net(x)
