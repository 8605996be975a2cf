"""scikit-learn's digits (ships with the package, nothing downloaded): a fixed test set, the
rest split by site."""

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split


def _split() -> list[np.ndarray]:
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)  # pixels 0..16 -> 0..1
    return train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)


def test_data() -> tuple[np.ndarray, np.ndarray]:
    """The 450 held-out images and their labels (the same for every site and the server)."""
    _, x_test, _, y_test = _split()
    return x_test, y_test


def site_data(site_index: int, n_sites: int) -> tuple[np.ndarray, np.ndarray]:
    """Site ``site_index`` (0-based) gets every ``n_sites``-th training image."""
    x_train, _, y_train, _ = _split()
    part = slice(site_index, None, n_sites)
    return x_train[part], y_train[part]


def accuracy(model, x: np.ndarray, y: np.ndarray) -> float:  # type: ignore[no-untyped-def]
    """The share of ``x`` that ``model`` (logits out) classifies as ``y``."""
    logits = np.asarray(model(x, training=False))
    return float(np.mean(logits.argmax(axis=1) == y))
