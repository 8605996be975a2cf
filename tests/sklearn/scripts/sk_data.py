"""Deterministic, unequal per-site shards of scikit-learn's bundled data sets, for tests."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.preprocessing import StandardScaler

LOADERS = {"breast_cancer": load_breast_cancer, "iris": load_iris, "diabetes": load_diabetes}


def site_data(
    dataset: str, site: str, fractions: list[float], seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Site ``site-i`` gets the i-th share (``fractions``) of a seeded shuffle."""
    x, y = LOADERS[dataset](return_X_y=True)
    if dataset != "iris":
        x = StandardScaler().fit_transform(x)
    if dataset == "diabetes":
        y = (y - y.mean()) / y.std()
    order = np.random.default_rng(seed).permutation(len(x))
    bounds = np.round(np.cumsum([0.0, *fractions]) / sum(fractions) * len(x)).astype(int)
    index = int(site.rsplit("-", 1)[1]) - 1
    rows = order[bounds[index] : bounds[index + 1]]
    return x[rows], y[rows]
