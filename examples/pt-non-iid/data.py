"""scikit-learn's digits (ships with the package, nothing is downloaded): a fixed held-out
test set shared by every site and algorithm, and a Dirichlet label split of the rest."""

from __future__ import annotations

import functools

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

#: the test split does not depend on the partition seed, so runs with other seeds compare
TEST_SPLIT_SEED = 0


@functools.lru_cache(maxsize=1)
def _split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    return train_test_split(x, y, test_size=0.25, random_state=TEST_SPLIT_SEED, stratify=y)


def train_labels() -> np.ndarray:
    """The labels of the training rows (what the partition splits)."""
    return _split()[2]


def dirichlet_partition(
    labels: np.ndarray, n_sites: int, alpha: float, seed: int, min_size: int = 10
) -> list[np.ndarray]:
    """Split the row indices of ``labels`` over ``n_sites`` sites, non-IID by label.

    For each class, the share of its rows each site gets is drawn from
    Dirichlet(``alpha``, ..., ``alpha``) (small ``alpha``: each site sees few classes). The
    draw is repeated (up to 100 times) until every site has ``min_size`` rows; if none does,
    the largest sites give rows to the smallest until they all do. Deterministic for a seed;
    the parts are disjoint, cover every row, and are sorted.
    """
    labels = np.asarray(labels)
    if n_sites < 1 or alpha <= 0 or min_size < 0:
        raise ValueError(f"need n_sites >= 1, alpha > 0, min_size >= 0 (got {n_sites}, {alpha})")
    if len(labels) < n_sites * min_size:
        raise ValueError(f"{len(labels)} rows cannot give {n_sites} sites {min_size} each")
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    for _ in range(100):
        parts: list[list[int]] = [[] for _ in range(n_sites)]
        for c in classes:
            rows = rng.permutation(np.flatnonzero(labels == c))
            shares = rng.dirichlet(np.full(n_sites, alpha))
            cuts = (np.cumsum(shares)[:-1] * len(rows)).astype(int)
            for site, chunk in enumerate(np.split(rows, cuts)):
                parts[site].extend(chunk.tolist())
        if min(len(p) for p in parts) >= min_size:
            break
    else:  # top up the smallest sites from the largest (deterministic)
        while min(len(p) for p in parts) < min_size:
            small = min(range(n_sites), key=lambda s: len(parts[s]))
            large = max(range(n_sites), key=lambda s: len(parts[s]))
            parts[small].append(parts[large].pop())
    return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]


@functools.lru_cache(maxsize=8)
def partition(n_sites: int, alpha: float, seed: int) -> tuple[np.ndarray, ...]:
    """The training rows of each site (sites in one process share the computation)."""
    return tuple(dirichlet_partition(train_labels(), n_sites, alpha, seed))


def site_data(
    site_index: int, n_sites: int, alpha: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Site ``site_index`` (0-based)'s training rows."""
    x_train, _, y_train, _ = _split()
    rows = partition(n_sites, alpha, seed)[site_index]
    return torch.from_numpy(x_train[rows]), torch.from_numpy(y_train[rows])


def test_data() -> tuple[torch.Tensor, torch.Tensor]:
    """The held-out test set (a quarter of the digits, stratified)."""
    _, x_test, _, y_test = _split()
    return torch.from_numpy(x_test), torch.from_numpy(y_test)


def label_counts(n_sites: int, alpha: float, seed: int) -> np.ndarray:
    """``counts[site, label]``: how many training rows of each label each site holds."""
    y = train_labels()
    return np.stack(
        [np.bincount(y[rows], minlength=10) for rows in partition(n_sites, alpha, seed)]
    )


def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(x).argmax(dim=1) == y).float().mean())
