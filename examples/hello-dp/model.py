"""The model: a small MLP for the 30 features of scikit-learn's breast cancer data."""

from torch import nn


class CancerMLP(nn.Module):
    """30 standardized features -> hidden -> 2 classes (malignant, benign).

    Only layers Opacus computes per-sample gradients for (``nn.Linear``); no batch norm,
    which mixes samples and so cannot be made differentially private.
    """

    def __init__(self, hidden: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(30, hidden), nn.ReLU(), nn.Linear(hidden, 2))

    def forward(self, x):  # type: ignore[no-untyped-def]
        return self.net(x)
