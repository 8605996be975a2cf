"""The sites of xgboost-vertical: each holds other columns of scikit-learn's breast-cancer
rows, keyed by a patient id, and not quite the same patients (each keeps a random 90%).
site-1 also holds the labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.datasets import load_breast_cancer

import xgboost as xgb
from ember.psi import PSIDataLoader
from ember_xgboost import XGBDataLoader

SITES = ("site-1", "site-2", "site-3")
LABEL_OWNER = "site-1"
VALID_FRACTION = 0.2


def table() -> tuple[list[str], np.ndarray, np.ndarray]:
    """Every patient's id, features and label (what no single site holds)."""
    x, y = load_breast_cancer(return_X_y=True)
    return [f"patient-{i:04d}" for i in range(len(y))], x, y


def site_part(site: str) -> tuple[list[str], np.ndarray, np.ndarray | None]:
    """``site``'s ids, its columns of those rows, and the labels if it owns them."""
    ids, x, y = table()
    index = SITES.index(site)
    keep = np.sort(np.random.default_rng(index + 1).permutation(len(ids))[: int(0.9 * len(ids))])
    cols = np.array_split(np.arange(x.shape[1]), len(SITES))[index]
    labels = y[keep] if site == LABEL_OWNER else None
    return [ids[i] for i in keep], x[np.ix_(keep, cols)], labels


def read_intersection(path: str) -> list[str]:
    """The PSI result, sorted: every site orders the common rows the same way."""
    return sorted(line for line in Path(path).read_text().splitlines() if line)


def aligned(site: str, common: list[str]) -> tuple[np.ndarray, np.ndarray | None]:
    """``site``'s columns and labels of the ``common`` rows, in that order."""
    ids, x, y = site_part(site)
    where = {pid: i for i, pid in enumerate(ids)}
    rows = np.array([where[pid] for pid in common])
    return x[rows], (y[rows] if y is not None else None)


class VerticalLoader(XGBDataLoader):
    """The site's columns of the intersection's rows (its first 80% train, the rest
    validate); only the label owner passes labels."""

    def __init__(self, intersection: str) -> None:
        #: where this site's PSI job wrote its intersection ("{site}" stands for its name)
        self.intersection = intersection

    def load_data(self) -> tuple[xgb.DMatrix, xgb.DMatrix]:
        common = read_intersection(self.intersection.format(site=self.client_id))
        x, y = aligned(self.client_id, common)
        n_train = int(len(common) * (1 - VALID_FRACTION))
        split = xgb.core.DataSplitMode.COL
        return (
            xgb.DMatrix(
                x[:n_train], label=None if y is None else y[:n_train], data_split_mode=split
            ),
            xgb.DMatrix(
                x[n_train:], label=None if y is None else y[n_train:], data_split_mode=split
            ),
        )


class PatientIds(PSIDataLoader):
    """The ids the site brings to the private set intersection."""

    def load_items(self) -> list[str]:
        return site_part(self.ctx.site_name)[0]
