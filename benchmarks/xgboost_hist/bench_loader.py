"""The benchmark's data: a synthetic binary task, each site a slice of its rows."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import make_classification

import xgboost as xgb
from ember_xgboost import XGBDataLoader


def site_rows(rows: int, features: int, site: int, sites: int) -> tuple[np.ndarray, np.ndarray]:
    x, y = make_classification(
        n_samples=rows * sites, n_features=features, n_informative=features // 2, random_state=0
    )
    part = np.array_split(np.arange(len(y)), sites)[site]
    return x[part], y[part]


class SyntheticRows(XGBDataLoader):
    def __init__(self, rows: int, features: int, sites: int) -> None:
        self.rows, self.features, self.sites = rows, features, sites

    def load_data(self) -> tuple[xgb.DMatrix, xgb.DMatrix]:
        index = int(self.client_id.rsplit("-", 1)[1]) - 1
        x, y = site_rows(self.rows, self.features, index, self.sites)
        n_valid = len(y) // 5
        return (
            xgb.DMatrix(x[n_valid:], label=y[n_valid:]),
            xgb.DMatrix(x[:n_valid], label=y[:n_valid]),
        )
