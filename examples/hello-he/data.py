"""scikit-learn's digits (ships with the package): a fixed test set, the rest split by site."""

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split


def _split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    return train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)


def test_data() -> tuple[torch.Tensor, torch.Tensor]:
    _, x_test, _, y_test = _split()
    return torch.from_numpy(x_test), torch.from_numpy(y_test)


def site_data(site_index: int, n_sites: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Site ``site_index`` (0-based) gets every ``n_sites``-th training sample."""
    x_train, _, y_train, _ = _split()
    part = slice(site_index, None, n_sites)
    return torch.from_numpy(x_train[part]), torch.from_numpy(y_train[part])


def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(x).argmax(dim=1) == y).float().mean())
