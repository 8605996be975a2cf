"""The data-loader contract: how a site gives XGBoost its training and validation data."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

from ember.common import Component

if TYPE_CHECKING:
    import xgboost as xgb

ROW_SPLIT = 0
"""``data_split_mode`` of horizontal training: each site holds other rows."""
COLUMN_SPLIT = 1
"""``data_split_mode`` of vertical training: each site holds other columns of the same rows."""


class XGBDataLoader(Component, ABC):
    """A site's data for XGBoost (NVFlare's ``XGBDataLoader``).

    A recipe takes one loader per site in ``per_site_config={"site-1": {"data_loader":
    MyLoader(...)}}``. The loader travels as its class and constructor arguments, so the
    arguments must be JSON values (paths, names, numbers) and the class must live in a
    module beside ``job.py`` (the recipe bundles it). At the site Ember calls
    :meth:`initialize`, then :meth:`load_data` (for histogram-based training inside
    XGBoost's communicator, so ``xgb.DMatrix(..., data_split_mode=...)`` works).

    Example, a loader reading one CSV file per site::

        import numpy as np
        import xgboost as xgb
        from ember_xgboost import XGBDataLoader

        class CsvLoader(XGBDataLoader):
            def __init__(self, folder: str, valid_fraction: float = 0.2) -> None:
                self.folder, self.valid_fraction = folder, valid_fraction

            def load_data(self) -> tuple[xgb.DMatrix, xgb.DMatrix]:
                data = np.loadtxt(f"{self.folder}/{self.client_id}.csv", delimiter=",")
                n_valid = int(len(data) * self.valid_fraction)
                train, valid = data[n_valid:], data[:n_valid]
                return (xgb.DMatrix(train[:, 1:], label=train[:, 0]),
                        xgb.DMatrix(valid[:, 1:], label=valid[:, 0]))

    For vertical training (``data_split_mode == COLUMN_SPLIT``) build the matrices with
    ``data_split_mode=xgb.core.DataSplitMode.COL`` from the rows of the PSI intersection,
    in its order; only the label owner (rank 0) passes ``label=``.
    """

    client_id: str = ""
    rank: int = 0
    data_split_mode: int = ROW_SPLIT

    def initialize(self, client_id: str, rank: int, data_split_mode: int = ROW_SPLIT) -> None:
        """Called at the site before :meth:`load_data`: the site's name, its rank in the
        federation (0 is the label owner in vertical training) and the split mode."""
        self.client_id, self.rank, self.data_split_mode = client_id, rank, data_split_mode

    @abstractmethod
    def load_data(self) -> tuple[xgb.DMatrix, xgb.DMatrix]:
        """The site's ``(train, validation)`` matrices."""
