"""Federated statistics: the public names (``FedStatsRecipe`` is in :mod:`ember.recipes`).

A site's data never leaves it: each site runs a generator the user writes, and Ember checks
and noises what the generator returns, at the site, before sending (``docs/statistics.md``).

- :class:`Statistics`: the generator base class (NVFlare's method names: ``features``,
  ``count``, ``sum``, ``mean``, ``stddev``, ``variance_with_mean``, ``histogram``,
  ``min_value``, ``max_value``, ``failure_count``, ``initialize``, ``finalize``), with
  :class:`Feature`, :class:`DataType`, :class:`Histogram`, :class:`Bin`,
  :class:`HistogramType` and :class:`StatsContext`;
- :class:`NumpyStatistics` and :class:`DataFrameStatistics`: implement ``load_data`` only;
- :class:`PrivacyPolicy`: the limits; a site's own ``stats_policy.json`` (its kit's
  ``local/`` folder, or ``$EMBER_STATS_POLICY_DIR/<site>.json``) makes the job's stricter;
- :class:`StatsController`: the server workflow; :func:`run_site`: the site script's body;
  :func:`histogram_quantiles`: how quantiles are read off a histogram.
"""

from ember.fedstats.aggregate import AUTO_BINS_MAX, histogram_quantiles
from ember.fedstats.generator import (
    DataFrameStatistics,
    NumpyStatistics,
    Statistics,
    StatsContext,
)
from ember.fedstats.privacy import (
    POLICY_DIR_ENV,
    POLICY_FILE,
    PrivacyPolicy,
    StatsPrivacyError,
)
from ember.fedstats.site import StatsSiteError, run_site
from ember.fedstats.spec import (
    GLOBAL,
    STATISTICS,
    Bin,
    DataType,
    Feature,
    Histogram,
    HistogramType,
)
from ember.runtime.controllers.stats import StatsController

__all__ = [
    "AUTO_BINS_MAX",
    "GLOBAL",
    "POLICY_DIR_ENV",
    "POLICY_FILE",
    "STATISTICS",
    "Bin",
    "DataFrameStatistics",
    "DataType",
    "Feature",
    "Histogram",
    "HistogramType",
    "NumpyStatistics",
    "PrivacyPolicy",
    "Statistics",
    "StatsContext",
    "StatsController",
    "StatsPrivacyError",
    "StatsSiteError",
    "histogram_quantiles",
    "run_site",
]
