"""scikit-learn's breast cancer data (ships with the package), split between the sites.

A fixed stratified quarter of the 569 samples is the test set; site ``i`` gets every
``n_sites``-th sample of the rest and of the test set. Each site standardizes its features
with the mean and standard deviation of its own training part (no statistic leaves a site;
these scaling statistics are not covered by the DP guarantee, only the training is).
"""

import numpy as np
import torch
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler


def site_data(
    site_index: int, n_sites: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x_train, y_train, x_test, y_test)`` of site ``site_index`` (0-based), standardized."""
    x, y = load_breast_cancer(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.25, random_state=0, stratify=y
    )
    part = slice(site_index, None, n_sites)
    scaler = StandardScaler().fit(x_train[part])

    def features(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(scaler.transform(a).astype(np.float32))

    return (
        features(x_train[part]),
        torch.from_numpy(y_train[part]),
        features(x_test[part]),
        torch.from_numpy(y_test[part]),
    )


def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(x).argmax(dim=1) == y).float().mean())
