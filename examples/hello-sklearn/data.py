"""Deterministic per-site splits of scikit-learn's bundled data sets (nothing is downloaded).

Every site shuffles the whole data set with the same seed, keeps its own shard and splits
it into train and test parts; features are standardised with the site's own training
statistics (a site never sees another's data). ``central_*`` pools the same parts, as a
centralised baseline would.
"""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

Split = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def site_index(site: str) -> int:
    """``site-3`` -> 2."""
    return int(site.rsplit("-", 1)[1]) - 1


def _shard(n_samples: int, index: int, n_sites: int, seed: int) -> np.ndarray:
    if not 0 <= index < n_sites:
        raise ValueError(f"site index {index} is outside 0..{n_sites - 1}")
    order = np.random.default_rng(seed).permutation(n_samples)
    return np.array_split(order, n_sites)[index]  # type: ignore[no-any-return]


def _raw_breast_cancer_part(index: int, n_sites: int, seed: int) -> Split:
    x, y = load_breast_cancer(return_X_y=True)
    rows = _shard(len(x), index, n_sites, seed)
    x_train, x_test, y_train, y_test = train_test_split(
        x[rows], y[rows], test_size=0.3, stratify=y[rows], random_state=seed
    )
    return x_train, y_train, x_test, y_test


def _standardise(x_train: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scaler = StandardScaler().fit(x_train)
    return scaler.transform(x_train), scaler.transform(x_test)


def breast_cancer_site(site: str, n_sites: int, seed: int = 0) -> Split:
    """This site's (x_train, y_train, x_test, y_test), standardised on its own train part."""
    x_train, y_train, x_test, y_test = _raw_breast_cancer_part(site_index(site), n_sites, seed)
    x_train, x_test = _standardise(x_train, x_test)
    return x_train, y_train, x_test, y_test


def central_breast_cancer(n_sites: int, seed: int = 0) -> Split:
    """Every site's train parts and test parts pooled, standardised on the pooled train."""
    parts = [_raw_breast_cancer_part(i, n_sites, seed) for i in range(n_sites)]
    x_train, y_train, x_test, y_test = (np.concatenate(p) for p in zip(*parts, strict=True))
    x_train, x_test = _standardise(x_train, x_test)
    return x_train, y_train, x_test, y_test


def iris_site(site: str, n_sites: int, seed: int = 0) -> np.ndarray:
    """This site's iris measurements (raw centimetres: k-means needs no scaling here)."""
    x = load_iris().data
    return x[_shard(len(x), site_index(site), n_sites, seed)]  # type: ignore[no-any-return]


def central_iris() -> tuple[np.ndarray, np.ndarray]:
    """All iris measurements and species."""
    data = load_iris()
    return data.data, data.target
