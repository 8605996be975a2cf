"""The site-side statistics generator a user writes: :class:`Statistics` and two ready bases.

A generator loads the site's data and returns per-feature local statistics when asked; it
never decides what leaves the site: the site's runtime (:mod:`ember.fedstats.site`) checks
and noises what it returns before sending. The method names are NVFlare's
(``nvflare.app_common.abstract.statistics_spec.Statistics``), so a generator written for
NVFlare ports by changing its imports and ``initialize``'s argument.

- :class:`Statistics`: implement ``features`` and ``count``, and the methods of the
  statistics a job asks for.
- :class:`NumpyStatistics`: implement ``load_data`` returning ``{dataset: {feature: 1-d
  array}}``; every statistic is computed for you (NaN is a missing value).
- :class:`DataFrameStatistics`: the same from ``{dataset: pandas.DataFrame}`` (its numeric
  columns); needs pandas (``pip install 'ember-core[stats]'``).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ember.common.components import Component
from ember.extras import require
from ember.fedstats.spec import Bin, DataType, Feature, Histogram, HistogramType


@dataclass(frozen=True)
class StatsContext:
    """Where a generator runs: the site's name, the job's id and the site's job workspace
    (a folder the generator may write to)."""

    site_name: str
    job_id: str
    workspace: Path

    def get_identity_name(self) -> str:
        """The site's name (NVFlare's ``fl_ctx.get_identity_name()``)."""
        return self.site_name


class Statistics(Component, ABC):
    """Computes a site's local statistics; the job asks only for those it needs.

    Implement :meth:`features` and :meth:`count` (the privacy checks start from the count),
    and the methods of the statistics the job's ``statistic_configs`` names: ``sum``,
    ``mean``, ``stddev`` (also for ``var``), ``variance_with_mean`` (``stddev``/``var``),
    ``histogram`` (``histogram``/``quantile``), ``min_value``/``max_value`` (``min``/``max``,
    and histograms without a configured range), ``failure_count``. ``FedStatsRecipe`` checks
    when it is built that the methods it needs are implemented.

    The recipe carries the generator to the sites as its class and constructor arguments
    (recorded when the instance is made), so the arguments must be JSON values (paths,
    numbers, names), and the class must live in a module the job can bundle (a file beside
    ``job.py``, not ``job.py`` itself). Load data in :meth:`initialize`, which runs at the
    site, not in ``__init__``, which also runs where the job is built.

    Quantiles are not a method: Ember computes them from the privacy-checked histogram.
    """

    def initialize(self, ctx: StatsContext) -> None:
        """Called once at the site before any statistic: load the data here."""

    @abstractmethod
    def features(self) -> dict[str, list[Feature]]:
        """The datasets and their features: ``{"train": [Feature("age", DataType.INT),
        ...], "test": [...]}``. Only INT and FLOAT features get statistics."""

    @abstractmethod
    def count(self, dataset_name: str, feature_name: str) -> int:
        """The number of records of the feature (missing values not counted)."""

    def failure_count(self, dataset_name: str, feature_name: str) -> int:
        """The number of records whose value is missing or unusable (default 0)."""
        return 0

    def sum(self, dataset_name: str, feature_name: str) -> float:
        """The sum of the feature's values."""
        raise NotImplementedError

    def mean(self, dataset_name: str, feature_name: str) -> float:
        """The mean of the feature's values."""
        raise NotImplementedError

    def stddev(self, dataset_name: str, feature_name: str) -> float:
        """The local sample standard deviation (``ddof=1``, as pandas)."""
        raise NotImplementedError

    def variance_with_mean(
        self, dataset_name: str, feature_name: str, global_mean: float, global_count: float
    ) -> float:
        """``sum((x - global_mean) ** 2) / (global_count - 1)`` over this site's values:
        the site's share of the global sample variance."""
        raise NotImplementedError

    def histogram(
        self,
        dataset_name: str,
        feature_name: str,
        num_of_bins: int,
        global_min_value: float,
        global_max_value: float,
    ) -> Histogram:
        """``num_of_bins`` equal-width buckets over ``[global_min_value, global_max_value]``
        (``numpy.histogram(values, num_of_bins, (global_min_value, global_max_value))``:
        the last bucket includes its upper edge, values outside are not counted)."""
        raise NotImplementedError

    def max_value(self, dataset_name: str, feature_name: str) -> float:
        """The local maximum. It never leaves the site as it is: it is noised upward."""
        raise NotImplementedError

    def min_value(self, dataset_name: str, feature_name: str) -> float:
        """The local minimum. It never leaves the site as it is: it is noised downward."""
        raise NotImplementedError

    def finalize(self, ctx: StatsContext) -> None:
        """Called once at the site after the last statistic (release resources)."""


def implements(cls: type, method: str) -> bool:
    """Whether ``cls`` overrides :class:`Statistics`'s ``method``."""
    return getattr(cls, method, None) is not getattr(Statistics, method)


class NumpyStatistics(Statistics):
    """Every statistic from numpy arrays: implement :meth:`load_data`.

    ``load_data(ctx)`` returns ``{dataset: {feature: values}}``, each ``values`` a 1-d
    array-like of numbers; NaN is a missing value (not counted; ``failure_count``). Integer
    and boolean arrays are INT features, floating ones FLOAT.
    """

    def __init__(self) -> None:
        self._data: dict[str, dict[str, np.ndarray]] = {}
        self._types: dict[str, list[Feature]] = {}

    @abstractmethod
    def load_data(self, ctx: StatsContext) -> Mapping[str, Any]:
        """This site's datasets: ``{dataset: {feature: 1-d values}}``."""

    def initialize(self, ctx: StatsContext) -> None:
        self._data, self._types = {}, {}
        for dataset, table in self.load_data(ctx).items():
            columns = self.columns(dataset, table)
            self._types[dataset] = [Feature(name, kind) for name, (kind, _) in columns.items()]
            self._data[dataset] = {name: values for name, (_, values) in columns.items()}

    def columns(self, dataset: str, table: Any) -> dict[str, tuple[DataType, np.ndarray]]:
        """A dataset's numeric features as ``{name: (type, float64 values)}``."""
        if not isinstance(table, Mapping):
            raise TypeError(
                f"{type(self).__name__}.load_data()[{dataset!r}] must be a dict of feature "
                f"-> 1-d values, got {type(table).__name__}"
            )
        out: dict[str, tuple[DataType, np.ndarray]] = {}
        for name, values in table.items():
            array = np.asarray(values)
            if array.ndim != 1:
                raise ValueError(
                    f"{type(self).__name__}.load_data()[{dataset!r}][{name!r}] must be 1-d, "
                    f"got shape {array.shape}"
                )
            if array.dtype.kind in "biu":
                out[str(name)] = (DataType.INT, array.astype(np.float64))
            elif array.dtype.kind == "f":
                out[str(name)] = (DataType.FLOAT, array.astype(np.float64))
        return out

    def _values(self, dataset_name: str, feature_name: str) -> np.ndarray:
        values = self._data[dataset_name][feature_name]
        kept: np.ndarray = values[~np.isnan(values)]
        return kept

    def features(self) -> dict[str, list[Feature]]:
        return {dataset: list(features) for dataset, features in self._types.items()}

    def count(self, dataset_name: str, feature_name: str) -> int:
        return int(self._values(dataset_name, feature_name).size)

    def failure_count(self, dataset_name: str, feature_name: str) -> int:
        return int(np.isnan(self._data[dataset_name][feature_name]).sum())

    def sum(self, dataset_name: str, feature_name: str) -> float:
        return float(np.sum(self._values(dataset_name, feature_name)))

    def mean(self, dataset_name: str, feature_name: str) -> float:
        return float(np.mean(self._values(dataset_name, feature_name)))

    def stddev(self, dataset_name: str, feature_name: str) -> float:
        values = self._values(dataset_name, feature_name)
        return float(np.std(values, ddof=1)) if values.size > 1 else math.nan

    def variance_with_mean(
        self, dataset_name: str, feature_name: str, global_mean: float, global_count: float
    ) -> float:
        values = self._values(dataset_name, feature_name)
        return float(np.sum((values - global_mean) ** 2) / (global_count - 1))

    def histogram(
        self,
        dataset_name: str,
        feature_name: str,
        num_of_bins: int,
        global_min_value: float,
        global_max_value: float,
    ) -> Histogram:
        counts, edges = np.histogram(
            self._values(dataset_name, feature_name),
            bins=num_of_bins,
            range=(global_min_value, global_max_value),
        )
        bins = [Bin(float(edges[i]), float(edges[i + 1]), int(c)) for i, c in enumerate(counts)]
        return Histogram(HistogramType.STANDARD, bins)

    def max_value(self, dataset_name: str, feature_name: str) -> float:
        return float(np.max(self._values(dataset_name, feature_name)))

    def min_value(self, dataset_name: str, feature_name: str) -> float:
        return float(np.min(self._values(dataset_name, feature_name)))


class DataFrameStatistics(NumpyStatistics):
    """Every statistic from pandas DataFrames: implement :meth:`load_data` returning
    ``{dataset: DataFrame}``. Numeric columns are features (integer and boolean: INT,
    floating: FLOAT); other columns are skipped, missing values (NaN, NA) not counted.
    pandas comes with the ``stats`` extra (``pip install 'ember-core[stats]'``).

    Example (the NVFlare ``DFStatisticsCore`` pattern)::

        import pandas as pd
        from ember.statistics import DataFrameStatistics

        class AdultStatistics(DataFrameStatistics):
            def __init__(self, data_root_dir: str, filename: str = "data.csv") -> None:
                super().__init__()
                self.data_root_dir, self.filename = data_root_dir, filename

            def load_data(self, ctx):
                df = pd.read_csv(f"{self.data_root_dir}/{ctx.site_name}/{self.filename}")
                return {"train": df}
    """

    def initialize(self, ctx: StatsContext) -> None:
        require("pandas", "stats", "DataFrameStatistics")
        super().initialize(ctx)

    def columns(self, dataset: str, table: Any) -> dict[str, tuple[DataType, np.ndarray]]:
        pd = require("pandas", "stats", "DataFrameStatistics")
        if not isinstance(table, pd.DataFrame):
            raise TypeError(
                f"{type(self).__name__}.load_data()[{dataset!r}] must be a pandas DataFrame, "
                f"got {type(table).__name__}"
            )
        types = pd.api.types
        out: dict[str, tuple[DataType, np.ndarray]] = {}
        for name in table.columns:
            column = table[name]
            if types.is_bool_dtype(column) or types.is_integer_dtype(column):
                kind = DataType.INT
            elif types.is_float_dtype(column):
                kind = DataType.FLOAT
            else:
                continue
            out[str(name)] = (kind, column.to_numpy(dtype=np.float64, na_value=np.nan))
        return out
