"""Global statistics from the sites' privacy-checked answers (the server's side).

Pass 1 gives each site's count, sum, local stddev and noised extremes; the server makes
the global count, sum and mean (``sum of sums / sum of counts``), minimum and maximum
(the extremes of the noised ones), and chooses each histogram's edges: the configured
range, else ``[global noised min, global noised max]``. Pass 2 gives each site's share of
the variance around the global mean (summed: the global sample variance, ``ddof=1``) and
its bin counts over those edges (summed: the global histogram).

Quantiles come from a histogram that passed every check (:func:`histogram_quantiles`),
never from records: the feature's own histogram if the job asks for one, else one with the
finest bins every site's ``max_bins_percent`` allows (at most :data:`AUTO_BINS_MAX`),
reported under ``histogram`` too.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from ember.errors import EmberError
from ember.fedstats import spec
from ember.fedstats.privacy import PrivacyPolicy
from ember.fedstats.site import FIRST, SECOND

#: the most bins of a histogram made only for a feature's quantiles
AUTO_BINS_MAX = 100
QUANTILE_METHOD = (
    "from the privacy-checked histogram: the value at rank p*(N-1)+0.5 of the cumulative bin "
    "counts, interpolated linearly inside its bin"
)


class StatsAnswerError(EmberError, ValueError):
    """A site's answer is not what the protocol says."""


def histogram_edges(bins: int, low: float, high: float) -> np.ndarray:
    """The edges ``numpy.histogram(values, bins, (low, high))`` uses."""
    return np.histogram_bin_edges(np.empty(0), bins=bins, range=(low, high))


def histogram_quantiles(
    counts: Sequence[float] | np.ndarray,
    edges: Sequence[float] | np.ndarray,
    percentiles: Sequence[float],
) -> dict[float, float]:
    """Each percentile's value from a histogram (empty when it counts nothing).

    The ``N`` records are taken as spread evenly inside their bins; percentile ``p`` is the
    point at rank ``p * (N - 1) + 0.5`` of the cumulative counts (the middle of record
    ``p * (N - 1)``, numbering from 0, which is where ``numpy.quantile`` interpolates). The
    estimate lies in the bin of one of the two records numpy interpolates between, so it is
    within one bin width (plus half the gap between those two records) of
    ``numpy.quantile(records, p)``.
    """
    c = np.asarray(counts, dtype=np.float64)
    e = np.asarray(edges, dtype=np.float64)
    total = float(c.sum())
    if total <= 0:
        return {}
    cumulative = np.cumsum(c)
    out: dict[float, float] = {}
    for p in percentiles:
        rank = min(max(p * (total - 1) + 0.5, 0.0), total)
        j = int(np.searchsorted(cumulative, rank, side="left"))
        j = min(j, len(c) - 1)
        before = cumulative[j - 1] if j > 0 else 0.0
        frac = (rank - before) / c[j] if c[j] > 0 else 0.0
        out[float(p)] = float(e[j] + min(max(frac, 0.0), 1.0) * (e[j + 1] - e[j]))
    return out


def _dig(tree: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if not isinstance(tree, dict) or key not in tree:
            return None
        tree = tree[key]
    return tree


def _real(value: Any) -> bool:
    return (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


class StatsAggregator:
    """Collects the answers of ``sites`` to both passes and makes the global statistics."""

    def __init__(self, request: spec.StatsRequest, sites: Sequence[str]) -> None:
        self.request = request
        self.sites = list(sites)
        self.first: dict[str, dict[str, Any]] = {}
        self.second: dict[str, dict[str, Any]] = {}
        self.policies: dict[str, dict[str, Any]] = {}
        self.withheld: list[dict[str, str]] = []
        #: (dataset, feature) in first-seen order
        self.columns: list[tuple[str, str]] = []
        self.histograms: dict[tuple[str, str], dict[str, Any]] = {}
        self.notes: list[str] = []
        self._partial: list[dict[str, Any]] | None = None

    # -- pass 1
    def add_first(self, site: str, answer: Any) -> None:
        if not isinstance(answer, dict) or answer.get("pass") != FIRST:
            raise StatsAnswerError(f"{site} sent no answer to the first statistics pass")
        features = answer.get("features")
        stats = answer.get("statistics")
        if not isinstance(features, dict) or not isinstance(stats, dict):
            raise StatsAnswerError(f"{site}'s first-pass answer lacks features or statistics")
        for dataset, columns in features.items():
            for column in columns:
                key = (str(dataset), str(column[0]))
                if key not in self.columns:
                    self.columns.append(key)
        for statistic, by_dataset in stats.items():
            if statistic not in spec.STATISTICS or not isinstance(by_dataset, dict):
                raise StatsAnswerError(f"{site} sent an unknown statistic {statistic!r}")
            for dataset, values in by_dataset.items():
                for feature, value in values.items():
                    if value is not None and not _real(value):
                        raise StatsAnswerError(
                            f"{site} sent {statistic} of {dataset}/{feature} = {value!r}"
                        )
        self.first[site] = answer
        self.policies[site] = dict(answer.get("policy") or {})
        self._add_withheld(site, answer)

    def _add_withheld(self, site: str, answer: dict[str, Any]) -> None:
        for item in answer.get("withheld") or []:
            entry = {"site": site, **{k: str(item.get(k, "")) for k in ("dataset", "feature")}}
            entry["statistic"] = str(item.get("statistic", "*"))
            entry["reason"] = str(item.get("reason", ""))
            self.withheld.append(entry)

    def _site_values(
        self, answers: dict[str, dict[str, Any]], statistic: str, dataset: str, feature: str
    ) -> dict[str, Any]:
        out = {}
        for site in self.sites:
            if site in answers:
                value = _dig(answers[site], "statistics", statistic, dataset, feature)
                if value is not None:
                    out[site] = value
        return out

    def moments(self, dataset: str, feature: str) -> tuple[float, float, list[str]] | None:
        """Global count and sum over the sites that sent both, and those sites."""
        counts = self._site_values(self.first, spec.COUNT, dataset, feature)
        sums = self._site_values(self.first, spec.SUM, dataset, feature)
        sites = [s for s in counts if s in sums]
        if not sites:
            return None
        return _ordered_sum(counts, sites), _ordered_sum(sums, sites), sites

    def second_request(self) -> dict[str, Any] | None:
        """The second pass's request (global means and counts, histogram edges), or None
        when the job asks for nothing that needs one."""
        if not self.request.second_pass():
            return None
        moments: dict[str, dict[str, dict[str, float]]] = {}
        histograms: dict[str, dict[str, dict[str, Any]]] = {}
        wants_var = self.request.wants(spec.VAR) or self.request.wants(spec.STDDEV)
        for dataset, feature in self.columns:
            if wants_var:
                got = self.moments(dataset, feature)
                if got is not None and got[0] > 1:
                    count, total, _ = got
                    moments.setdefault(dataset, {})[feature] = {
                        "mean": total / count,
                        "count": count,
                    }
            hist = self._histogram_spec(dataset, feature)
            if hist is not None:
                self.histograms[(dataset, feature)] = hist
                histograms.setdefault(dataset, {})[feature] = {
                    "bins": hist["bins"],
                    "range": hist["range"],
                }
        return {"pass": SECOND, "global": moments, "histogram": histograms}

    def _histogram_spec(self, dataset: str, feature: str) -> dict[str, Any] | None:
        config = self.request.histogram_for(feature)
        quantiles = self.request.quantiles_for(feature)
        if config is None and quantiles is None:
            return None
        counts = self._site_values(self.first, spec.COUNT, dataset, feature)
        if not counts:
            return None  # every site withheld the feature
        if config is not None and config.range is not None:
            span, source = config.range, "configured range"
        else:
            lows = self._site_values(self.first, spec.MIN, dataset, feature)
            highs = self._site_values(self.first, spec.MAX, dataset, feature)
            if not lows or not highs:
                self.notes.append(
                    f"{dataset}/{feature}: no histogram; no site sent a (noised) range and the "
                    "job configures none"
                )
                return None
            span = (min(float(v) for v in lows.values()), max(float(v) for v in highs.values()))
            source = "noised site extremes"
        if config is not None:
            bins, made_for = config.bins, "histogram"
        else:
            allowed = []
            for site, count in counts.items():
                pct = self.policies.get(site, {}).get("max_bins_percent", 100.0)
                limit = PrivacyPolicy(max_bins_percent=float(pct)).max_bins(float(count))
                if limit >= 1:
                    allowed.append(limit)
            if not allowed:
                self.notes.append(
                    f"{dataset}/{feature}: no quantiles; no site has records enough for one bin "
                    "under its max_bins_percent"
                )
                return None
            bins, made_for = min(min(allowed), AUTO_BINS_MAX), "quantile"
        return {
            "bins": bins,
            "range": [float(span[0]), float(span[1])],
            "source": source,
            "for": made_for,
        }

    # -- pass 2
    def add_second(self, site: str, answer: Any) -> None:
        if not isinstance(answer, dict) or answer.get("pass") != SECOND:
            raise StatsAnswerError(f"{site} sent no answer to the second statistics pass")
        stats = answer.get("statistics")
        if not isinstance(stats, dict):
            raise StatsAnswerError(f"{site}'s second-pass answer lacks statistics")
        for (dataset, feature), hist in self.histograms.items():
            counts = _dig(stats, spec.HISTOGRAM, dataset, feature)
            if counts is not None and (
                not isinstance(counts, list)
                or len(counts) != hist["bins"]
                or not all(_real(c) and c >= 0 for c in counts)
            ):
                raise StatsAnswerError(
                    f"{site} sent a histogram of {dataset}/{feature} that is not "
                    f"{hist['bins']} counts"
                )
        for dataset, values in (stats.get(spec.VAR) or {}).items():
            for feature, value in values.items():
                if not _real(value):
                    raise StatsAnswerError(f"{site} sent var of {dataset}/{feature} = {value!r}")
        self.second[site] = answer
        self._add_withheld(site, answer)

    # -- the result
    def result(self) -> dict[str, Any]:
        """feature -> statistic -> site or ``"Global"`` -> dataset -> value (NVFlare's)."""
        out: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
        request = self.request
        partial: list[dict[str, Any]] = []

        def put(feature: str, statistic: str, who: str, dataset: str, value: Any) -> None:
            out.setdefault(feature, {}).setdefault(statistic, {}).setdefault(who, {})[dataset] = (
                value
            )

        def covered(dataset: str, feature: str, statistic: str, sites: list[str]) -> None:
            expected = [
                s
                for s in self.sites
                if s in self.first and (dataset, feature) in self._columns_of(s)
            ]
            if sites != expected:
                partial.append(
                    {
                        "dataset": dataset,
                        "feature": feature,
                        "statistic": statistic,
                        "sites": sites,
                        "of": expected,
                    }
                )

        for dataset, feature in self.columns:
            for statistic in (spec.COUNT, spec.FAILURE_COUNT, spec.SUM, spec.MEAN):
                if not request.wants(statistic):
                    continue
                values = self._site_values(self.first, statistic, dataset, feature)
                for site, value in values.items():
                    put(feature, statistic, site, dataset, value)
                if statistic == spec.MEAN:
                    got = self.moments(dataset, feature)
                    if got is not None:
                        put(feature, statistic, spec.GLOBAL, dataset, got[1] / got[0])
                        covered(dataset, feature, statistic, got[2])
                    continue
                if values:
                    put(
                        feature, statistic, spec.GLOBAL, dataset, _ordered_sum(values, list(values))
                    )
                    covered(dataset, feature, statistic, list(values))
            self._spread(dataset, feature, put, covered)
            for statistic, pick in ((spec.MIN, min), (spec.MAX, max)):
                if request.wants(statistic):
                    values = self._site_values(self.first, statistic, dataset, feature)
                    for site, value in values.items():
                        put(feature, statistic, site, dataset, value)
                    if values:
                        put(feature, statistic, spec.GLOBAL, dataset, pick(values.values()))
                        covered(dataset, feature, statistic, list(values))
            self._histogram_and_quantiles(dataset, feature, put, covered)
        self._partial = partial
        return _ordered(out)

    def _columns_of(self, site: str) -> list[tuple[str, str]]:
        features = self.first[site].get("features") or {}
        return [(str(d), str(c[0])) for d, cols in features.items() for c in cols]

    def _spread(self, dataset: str, feature: str, put: Any, covered: Any) -> None:
        request = self.request
        if not (request.wants(spec.STDDEV) or request.wants(spec.VAR)):
            return
        for site, value in self._site_values(self.first, spec.STDDEV, dataset, feature).items():
            if request.wants(spec.STDDEV):
                put(feature, spec.STDDEV, site, dataset, value)
            if request.wants(spec.VAR):
                put(feature, spec.VAR, site, dataset, float(value) ** 2)
        got = self.moments(dataset, feature)
        if got is None:
            return
        shares = self._site_values(self.second, spec.VAR, dataset, feature)
        if [s for s in got[2] if s not in shares]:
            if shares:
                self.notes.append(
                    f"{dataset}/{feature}: no global var/stddev; sites "
                    f"{[s for s in got[2] if s not in shares]} sent their mean but not their "
                    "variance"
                )
            return
        variance = _ordered_sum(shares, got[2])
        if request.wants(spec.VAR):
            put(feature, spec.VAR, spec.GLOBAL, dataset, variance)
            covered(dataset, feature, spec.VAR, got[2])
        if request.wants(spec.STDDEV):
            put(feature, spec.STDDEV, spec.GLOBAL, dataset, math.sqrt(variance))
            covered(dataset, feature, spec.STDDEV, got[2])

    def _histogram_and_quantiles(self, dataset: str, feature: str, put: Any, covered: Any) -> None:
        hist = self.histograms.get((dataset, feature))
        if hist is None:
            return
        edges = histogram_edges(hist["bins"], *hist["range"])
        sent = self._site_values(self.second, spec.HISTOGRAM, dataset, feature)
        percentiles = self.request.quantiles_for(feature)
        total = np.zeros(hist["bins"], dtype=np.float64)
        for site, counts in sent.items():
            total += np.asarray(counts, dtype=np.float64)
            put(feature, spec.HISTOGRAM, site, dataset, _bins(edges, counts))
            if percentiles:
                put(
                    feature,
                    spec.QUANTILE,
                    site,
                    dataset,
                    histogram_quantiles(counts, edges, percentiles),
                )
        if not sent:
            return
        exact = all(float(c).is_integer() for counts in sent.values() for c in counts)
        global_counts = [int(c) for c in total] if exact else [float(c) for c in total]
        put(feature, spec.HISTOGRAM, spec.GLOBAL, dataset, _bins(edges, global_counts))
        covered(dataset, feature, spec.HISTOGRAM, list(sent))
        if percentiles:
            put(
                feature,
                spec.QUANTILE,
                spec.GLOBAL,
                dataset,
                histogram_quantiles(global_counts, edges, percentiles),
            )
            covered(dataset, feature, spec.QUANTILE, list(sent))

    def privacy(self) -> dict[str, Any]:
        """What was withheld and why, each site's limits in force, which global values
        cover only some sites, and how histograms and quantiles were made."""
        if self._partial is None:
            self.result()
        return {
            "withheld": self.withheld,
            "policies": self.policies,
            "partial_global": self._partial,
            "histograms": [
                {"dataset": d, "feature": f, **h} for (d, f), h in self.histograms.items()
            ],
            "quantile_method": QUANTILE_METHOD,
            "notes": self.notes,
        }


def _ordered_sum(values: dict[str, Any], sites: list[str]) -> float:
    """The sum in site order (the same bits run after run); exact for integer counts."""
    if all(isinstance(values[s], int) for s in sites):
        return sum(int(values[s]) for s in sites)
    total = 0.0
    for site in sites:
        total += float(values[site])
    return total


def _bins(edges: np.ndarray, counts: Sequence[Any]) -> list[list[Any]]:
    return [[float(edges[i]), float(edges[i + 1]), counts[i]] for i in range(len(counts))]


def _ordered(result: dict[str, Any]) -> dict[str, Any]:
    """Statistics in :data:`spec.STATISTICS` order; sites in the job's order, Global last."""
    out: dict[str, Any] = {}
    for feature, stats in result.items():
        out[feature] = {s: stats[s] for s in spec.STATISTICS if s in stats}
        for statistic, by_who in out[feature].items():
            out[feature][statistic] = dict(
                sorted(by_who.items(), key=lambda kv: kv[0] == spec.GLOBAL)
            )
    return out
