"""The statistics a job may ask for, their configuration, and the types a generator returns.

Names follow NVFlare's federated statistics (``nvflare.app_common.abstract.statistics_spec``):
a site holds datasets (``"train"``, ``"test"``, ...) of numeric features; a generator
describes them with :class:`Feature` and returns a :class:`Histogram` of :class:`Bin`.

``statistic_configs`` maps a statistic's name to its configuration::

    {
        "count": {}, "sum": {}, "mean": {}, "stddev": {}, "var": {}, "min": {}, "max": {},
        "failure_count": {},
        "histogram": {"*": {"bins": 20}, "Age": {"bins": 10, "range": [0, 120]}},
        "quantile": {"*": [0.25, 0.5, 0.75], "Age": [0.5, 0.9]},
    }

``"*"`` is every feature without an entry of its own. :func:`parse_statistic_configs`
checks a configuration and raises :class:`~ember.errors.RecipeArgumentError` naming what
is wrong.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, NamedTuple

from ember.errors import RecipeArgumentError

COUNT = "count"
FAILURE_COUNT = "failure_count"
SUM = "sum"
MEAN = "mean"
STDDEV = "stddev"
VAR = "var"
MIN = "min"
MAX = "max"
HISTOGRAM = "histogram"
QUANTILE = "quantile"

#: every statistic, in the order the result lists them
STATISTICS = (COUNT, FAILURE_COUNT, SUM, MEAN, STDDEV, VAR, MIN, MAX, HISTOGRAM, QUANTILE)
#: statistics that take no configuration (``{}``)
PLAIN = (COUNT, FAILURE_COUNT, SUM, MEAN, STDDEV, VAR, MIN, MAX)
#: every feature without an entry of its own
DEFAULT_FEATURE = "*"
#: the key of the global values in the result, beside the sites'
GLOBAL = "Global"


class DataType(IntEnum):
    """A feature's type (NVFlare's values). Only INT and FLOAT features get statistics."""

    INT = 0
    FLOAT = 1
    STRING = 2
    BYTES = 3
    STRUCT = 4
    DATETIME = 5


NUMERIC = (DataType.INT, DataType.FLOAT)


class Feature(NamedTuple):
    """One feature (column) of a dataset."""

    feature_name: str
    data_type: DataType


class Bin(NamedTuple):
    """One bucket of a histogram: ``[low_value, high_value)`` (the last bucket includes
    ``high_value``) and how many records fall in it."""

    low_value: float
    high_value: float
    sample_count: float


class HistogramType(IntEnum):
    STANDARD = 0
    QUANTILES = 1


class Histogram(NamedTuple):
    """A histogram: its buckets, lowest first."""

    hist_type: HistogramType
    bins: list[Bin]
    hist_name: str | None = None


@dataclass(frozen=True)
class HistogramConfig:
    """The histogram of one feature: ``bins`` equal-width buckets over ``range`` (None:
    the global range estimated from the sites' noised minimum and maximum)."""

    bins: int
    range: tuple[float, float] | None = None


@dataclass
class StatsRequest:
    """A checked ``statistic_configs``: which statistics, and the per-feature settings of
    ``histogram`` and ``quantile``."""

    statistics: list[str]
    histogram: dict[str, HistogramConfig] = field(default_factory=dict)
    quantile: dict[str, list[float]] = field(default_factory=dict)

    def wants(self, statistic: str) -> bool:
        return statistic in self.statistics

    def histogram_for(self, feature: str) -> HistogramConfig | None:
        """The feature's histogram configuration (its own, else ``"*"``'s), or None."""
        if not self.wants(HISTOGRAM):
            return None
        return self.histogram.get(feature, self.histogram.get(DEFAULT_FEATURE))

    def quantiles_for(self, feature: str) -> list[float] | None:
        """The feature's percentiles (its own, else ``"*"``'s), or None."""
        if not self.wants(QUANTILE):
            return None
        return self.quantile.get(feature, self.quantile.get(DEFAULT_FEATURE))

    def needs_range(self, feature: str) -> bool:
        """Whether the feature's histogram (asked for, or needed by its quantiles) has no
        configured range, so that the sites' noised extremes must estimate one."""
        hist = self.histogram_for(feature)
        if hist is not None:
            return hist.range is None
        return self.quantiles_for(feature) is not None

    def needs_moments(self) -> bool:
        """Whether the sites' sums are needed (mean, variance, stddev)."""
        return any(self.wants(s) for s in (SUM, MEAN, STDDEV, VAR))

    def second_pass(self) -> bool:
        """Whether a second pass (variance around the global mean, histograms) is needed."""
        return any(self.wants(s) for s in (STDDEV, VAR, HISTOGRAM, QUANTILE))

    def to_json(self) -> dict[str, Any]:
        """The configuration back as ``statistic_configs`` (JSON values, normalized)."""
        out: dict[str, Any] = {}
        for name in self.statistics:
            if name == HISTOGRAM:
                out[name] = {
                    f: {"bins": c.bins, **({"range": list(c.range)} if c.range else {})}
                    for f, c in self.histogram.items()
                }
            elif name == QUANTILE:
                out[name] = {f: list(p) for f, p in self.quantile.items()}
            else:
                out[name] = {}
        return out


def _unknown(name: Any) -> RecipeArgumentError:
    close = difflib.get_close_matches(str(name), STATISTICS, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return RecipeArgumentError(
        f"statistic_configs: unknown statistic {name!r}{hint} (known: {', '.join(STATISTICS)})"
    )


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _histogram(config: Any) -> dict[str, HistogramConfig]:
    example = "{'*': {'bins': 20}, 'Age': {'bins': 10, 'range': [0, 120]}}"
    if not isinstance(config, dict) or not config:
        raise RecipeArgumentError(
            f"statistic_configs['histogram'] must map features (or '*') to {{'bins': n, "
            f"'range': [low, high]}}, e.g. {example}; got {config!r}"
        )
    out: dict[str, HistogramConfig] = {}
    for feature, entry in config.items():
        where = f"statistic_configs['histogram'][{feature!r}]"
        if not isinstance(feature, str) or not feature:
            raise RecipeArgumentError(f"{where}: a feature name must be a non-empty string")
        if not isinstance(entry, dict):
            raise RecipeArgumentError(f"{where} must be {{'bins': n}}, got {entry!r}")
        extra = sorted(set(entry) - {"bins", "range"})
        if extra:
            raise RecipeArgumentError(f"{where}: unknown keys {extra}; it takes 'bins' and 'range'")
        bins = entry.get("bins")
        if not isinstance(bins, int) or isinstance(bins, bool) or bins < 1:
            raise RecipeArgumentError(f"{where}['bins'] must be an integer >= 1, got {bins!r}")
        span = entry.get("range")
        if span is not None:
            if (
                not isinstance(span, list | tuple)
                or len(span) != 2
                or not all(_number(v) for v in span)
                or not span[0] < span[1]
            ):
                raise RecipeArgumentError(
                    f"{where}['range'] must be [low, high] with finite low < high, got {span!r}"
                )
            out[feature] = HistogramConfig(bins, (float(span[0]), float(span[1])))
        else:
            out[feature] = HistogramConfig(bins)
    return out


def _quantile(config: Any) -> dict[str, list[float]]:
    if not isinstance(config, dict) or not config:
        raise RecipeArgumentError(
            "statistic_configs['quantile'] must map features (or '*') to lists of "
            f"percentiles in [0, 1], e.g. {{'*': [0.25, 0.5, 0.75]}}; got {config!r}"
        )
    out: dict[str, list[float]] = {}
    for feature, entry in config.items():
        where = f"statistic_configs['quantile'][{feature!r}]"
        if not isinstance(feature, str) or not feature:
            raise RecipeArgumentError(f"{where}: a feature name must be a non-empty string")
        if not isinstance(entry, list | tuple) or not entry or not all(_number(p) for p in entry):
            raise RecipeArgumentError(
                f"{where} must be a non-empty list of percentiles in [0, 1], got {entry!r}"
            )
        bad = [p for p in entry if not 0 <= p <= 1]
        if bad:
            hint = (
                f" (write {bad[0] / 100:g} for the {bad[0]:g}th percentile)"
                if bad[0] <= 100
                else ""
            )
            raise RecipeArgumentError(
                f"{where}: percentiles are fractions in [0, 1], got {bad[0]!r}{hint}"
            )
        out[feature] = sorted({float(p) for p in entry})
    return out


def parse_statistic_configs(configs: Any) -> StatsRequest:
    """Check ``statistic_configs``; the :class:`StatsRequest` it describes."""
    if not isinstance(configs, dict) or not configs:
        raise RecipeArgumentError(
            "statistic_configs must be a non-empty dict of statistic name -> configuration, "
            f"e.g. {{'count': {{}}, 'mean': {{}}, 'histogram': {{'*': {{'bins': 10}}}}}}; "
            f"got {configs!r}"
        )
    for name in configs:
        if name not in STATISTICS:
            raise _unknown(name)
    request = StatsRequest([s for s in STATISTICS if s in configs])
    for name in PLAIN:
        if name in configs and configs[name] not in ({}, None):
            raise RecipeArgumentError(
                f"statistic_configs[{name!r}] takes no configuration: give {{}}, got "
                f"{configs[name]!r}"
            )
    if HISTOGRAM in configs:
        request.histogram = _histogram(configs[HISTOGRAM])
    if QUANTILE in configs:
        request.quantile = _quantile(configs[QUANTILE])
    if COUNT not in request.statistics:
        # every privacy check starts from the count: NVFlare asks for it always, so do we
        request.statistics.insert(0, COUNT)
    return request
