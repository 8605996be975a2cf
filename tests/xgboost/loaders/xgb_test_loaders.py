"""Data loaders of the ember-xgboost tests: breast-cancer rows or columns per site."""

from __future__ import annotations

import os

import numpy as np
from sklearn.datasets import load_breast_cancer

import xgboost as xgb
from ember_xgboost import XGBDataLoader

N_VALID = 113


def data(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train, y_train, x_valid, y_valid)``: the shuffled rows, the same everywhere."""
    x, y = load_breast_cancer(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(y))
    x, y = x[order], y[order]
    return x[N_VALID:], y[N_VALID:], x[:N_VALID], y[:N_VALID]


def site_index(client_id: str) -> int:
    return int(client_id.rsplit("-", 1)[1]) - 1


class Rows(XGBDataLoader):
    """Site k trains on the k-th slice of the rows; all validate on the same rows."""

    def __init__(self, num_sites: int) -> None:
        self.num_sites = num_sites

    def load_data(self) -> tuple[xgb.DMatrix, xgb.DMatrix]:
        x, y, xv, yv = data()
        rows = np.array_split(np.arange(len(y)), self.num_sites)[site_index(self.client_id)]
        return xgb.DMatrix(x[rows], label=y[rows]), xgb.DMatrix(xv, label=yv)


class Columns(XGBDataLoader):
    """Rank r holds the r-th slice of the columns of every row; only rank 0 the labels."""

    def __init__(self, num_sites: int) -> None:
        self.num_sites = num_sites

    def load_data(self) -> tuple[xgb.DMatrix, xgb.DMatrix]:
        x, y, xv, yv = data()
        cols = np.array_split(np.arange(x.shape[1]), self.num_sites)[self.rank]
        split = xgb.core.DataSplitMode.COL
        labels = (y, yv) if self.rank == 0 else (None, None)
        return (
            xgb.DMatrix(x[:, cols], label=labels[0], data_split_mode=split),
            xgb.DMatrix(xv[:, cols], label=labels[1], data_split_mode=split),
        )


class DiesAt(Rows):
    """Rows, but the site named ``dies`` exits abruptly once the others are training."""

    def __init__(self, num_sites: int, dies: str) -> None:
        super().__init__(num_sites)
        self.dies = dies

    def load_data(self) -> tuple[xgb.DMatrix, xgb.DMatrix]:
        matrices = super().load_data()
        if self.client_id == self.dies:
            os._exit(3)  # as kill -9 would: no goodbye to anyone
        return matrices
