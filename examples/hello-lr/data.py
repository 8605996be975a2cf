"""scikit-learn's breast cancer data (ships with the package, nothing downloaded):
standardised, a fixed test set, the rest split over the sites in unequal parts."""

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

NUM_FEATURES = 30
#: each site's share of the training rows
SHARES = (0.5, 0.3, 0.2)


def _split() -> list[np.ndarray]:
    x, y = load_breast_cancer(return_X_y=True)
    # standardised with the whole set's mean and deviation, as a data owner preparing the
    # split would (sites that standardised alone would each solve a different problem)
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    return train_test_split(x, y.astype(np.float64), test_size=0.2, random_state=0, stratify=y)


def train_data() -> tuple[np.ndarray, np.ndarray]:
    """All the sites' training rows together: what centralised training would see."""
    x_train, _, y_train, _ = _split()
    return x_train, y_train


def test_data() -> tuple[np.ndarray, np.ndarray]:
    _, x_test, _, y_test = _split()
    return x_test, y_test


def site_data(index: int, n_sites: int = len(SHARES)) -> tuple[np.ndarray, np.ndarray]:
    """Site ``index``'s (0-based) rows of the training set."""
    x, y = train_data()
    shares = np.asarray(SHARES[:n_sites]) if n_sites <= len(SHARES) else np.ones(n_sites)
    bounds = np.concatenate([[0], np.cumsum(shares / shares.sum())]) * len(x)
    start, stop = (round(b) for b in bounds[index : index + 2])
    return x[start:stop], y[start:stop]


def accuracy(weights: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    z = weights[0] + x @ weights[1:]
    return float(np.mean((z > 0) == (y == 1)))
