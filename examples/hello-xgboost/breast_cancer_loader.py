"""Each site's share of scikit-learn's breast-cancer data, for XGBoost (hello-xgboost)."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_breast_cancer

import xgboost as xgb
from ember_xgboost import XGBDataLoader


def split(
    seed: int, valid_fraction: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The shuffled rows: ``(x_train, y_train, x_valid, y_valid)``, the same everywhere."""
    x, y = load_breast_cancer(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(y))
    x, y = x[order], y[order]
    n_valid = int(len(y) * valid_fraction)
    return x[n_valid:], y[n_valid:], x[:n_valid], y[:n_valid]


class BreastCancerLoader(XGBDataLoader):
    """Site ``site-k`` of ``num_sites`` trains on the k-th slice of the training rows; every
    site validates on the same held-out rows (the centralised baseline uses them too)."""

    def __init__(self, num_sites: int, seed: int = 0, valid_fraction: float = 0.2) -> None:
        self.num_sites, self.seed, self.valid_fraction = num_sites, seed, valid_fraction

    def load_data(self) -> tuple[xgb.DMatrix, xgb.DMatrix]:
        x_train, y_train, x_valid, y_valid = split(self.seed, self.valid_fraction)
        index = int(self.client_id.rsplit("-", 1)[1]) - 1
        rows = np.array_split(np.arange(len(y_train)), self.num_sites)[index]
        return (
            xgb.DMatrix(x_train[rows], label=y_train[rows]),
            xgb.DMatrix(x_valid, label=y_valid),
        )
