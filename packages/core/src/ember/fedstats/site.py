"""A site's side of a federated statistics job: load the generator, answer the server's two
passes, and apply the privacy rules to every value before it is sent.

``FedStatsRecipe`` bundles a two-line site script (``app/fedstats_site.py``) that calls
:func:`run_site` with the job's site settings (``app/fedstats_site.json``: the generator
as ``{"path": "module.Class", "args": {...}}`` and the job's privacy limits). The script
is the same bytes in every job, so a site that runs no custom code can trust its hash once.

What a site sends, per dataset and feature (nothing else):

- pass 1: ``count`` (Laplace-noised with ``laplace_epsilon``), and as asked ``failure_count``,
  ``sum``, ``mean``, the local ``stddev``, and ``min``/``max`` moved outward by the noise
  levels (also sent when a histogram has no configured range, to estimate the global one);
- pass 2: the share of the global variance around the global mean, and the histogram's
  bin counts over the edges the server chose (the edges are the server's, never the
  generator's).

A feature with fewer than ``min_count`` records sends nothing, in either pass; a histogram
with ``max_bins_percent`` % of the record count or more bins is withheld. Each withheld
value is listed with its reason (without the count) so the result can say which.
"""

from __future__ import annotations

import json
import math
import numbers
from pathlib import Path
from typing import Any

import numpy as np

from ember.errors import EmberError
from ember.fedstats import spec
from ember.fedstats.generator import Statistics, StatsContext
from ember.fedstats.privacy import (
    PrivacyPolicy,
    effective_policy,
    laplace,
    noised_extremes,
    policy_files,
)
from ember.plugins.entries import load_dotted
from ember.plugins.errors import PluginError

#: task name and the keys of the request (task meta) and the answer (result meta)
TASK = "fed_stats"
REQUEST = "fed_stats_request"
ANSWER = "fed_stats_answer"
FIRST, SECOND = "stats_1st", "stats_2nd"
#: statistics that cannot be released under differential privacy (unbounded sensitivity)
NOT_DP = (spec.SUM, spec.MEAN, spec.STDDEV, spec.VAR, spec.MIN, spec.MAX)


class StatsSiteError(EmberError, RuntimeError):
    """A site cannot answer: its generator failed, returned something unusable, or the
    request is not a federated statistics request."""


def load_generator(path: str, args: dict[str, Any]) -> Statistics:
    """The generator ``module.Class(**args)``."""
    try:
        cls = load_dotted(path)
    except PluginError as exc:
        raise StatsSiteError(f"cannot load the statistics generator {path!r}: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, Statistics)):
        raise StatsSiteError(
            f"the statistics generator {path!r} is not a subclass of ember.statistics.Statistics"
        )
    generator: Statistics = cls(**args)
    return generator


class SiteAnswerer:
    """Answers the server's requests from ``generator`` under ``policy``."""

    def __init__(
        self, generator: Statistics, policy: PrivacyPolicy, rng: np.random.Generator | None = None
    ) -> None:
        self.generator = generator
        self.policy = policy
        self.rng = rng if rng is not None else np.random.default_rng()
        self._name = type(generator).__name__

    # -- calling the generator, checking what it returns
    def _call(self, method: str, *args: Any) -> Any:
        try:
            return getattr(self.generator, method)(*args)
        except NotImplementedError:
            raise StatsSiteError(
                f"{self._name}.{method}() is not implemented, and the job asks for it"
            ) from None

    def _number(self, method: str, *args: Any) -> float:
        value = self._call(method, *args)
        if (
            not isinstance(value, numbers.Real)
            or isinstance(value, bool)
            or not math.isfinite(float(value))
        ):
            where = ", ".join(repr(a) for a in args)
            raise StatsSiteError(f"{self._name}.{method}({where}) returned {value!r}, not a number")
        return float(value)

    def _count(self, dataset: str, feature: str) -> int:
        value = self._call("count", dataset, feature)
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 0:
            raise StatsSiteError(
                f"{self._name}.count({dataset!r}, {feature!r}) returned {value!r}, not an "
                "integer >= 0"
            )
        return int(value)

    def features(self) -> dict[str, list[tuple[str, int]]]:
        """The numeric features of each dataset, as ``[(name, data type)]``."""
        out: dict[str, list[tuple[str, int]]] = {}
        declared = self._call("features")
        if not isinstance(declared, dict):
            raise StatsSiteError(f"{self._name}.features() must return {{dataset: [Feature]}}")
        for dataset, features in declared.items():
            out[str(dataset)] = []
            for feature in features:
                name, kind = feature
                if int(kind) in (int(t) for t in spec.NUMERIC):
                    out[str(dataset)].append((str(name), int(kind)))
        return out

    # -- the two passes
    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        """The privacy-checked answer to one request of the server."""
        stage = request.get("pass")
        if stage == FIRST:
            return self._first(spec.parse_statistic_configs(request["statistic_configs"]))
        if stage == SECOND:
            return self._second(request)
        raise StatsSiteError(f"unknown federated statistics pass {stage!r}")

    def _withhold(
        self, out: list[dict[str, str]], dataset: str, feature: str, statistic: str, reason: str
    ) -> None:
        out.append(
            {"dataset": dataset, "feature": feature, "statistic": statistic, "reason": reason}
        )

    def _too_few(self, dataset: str, feature: str) -> bool:
        return self._count(dataset, feature) < self.policy.min_count

    def _first(self, request: spec.StatsRequest) -> dict[str, Any]:
        policy = self.policy
        features = self.features()
        stats: dict[str, dict[str, dict[str, Any]]] = {}
        withheld: list[dict[str, str]] = []
        dp = policy.laplace_epsilon

        def put(statistic: str, dataset: str, feature: str, value: Any) -> None:
            stats.setdefault(statistic, {}).setdefault(dataset, {})[feature] = value

        for dataset, columns in features.items():
            for feature, _ in columns:
                count = self._count(dataset, feature)
                if count < policy.min_count:
                    self._withhold(
                        withheld,
                        dataset,
                        feature,
                        "*",
                        f"fewer than min_count={policy.min_count} records",
                    )
                    continue
                put(
                    spec.COUNT,
                    dataset,
                    feature,
                    count if dp is None else _noisy(count, dp, self.rng),
                )
                if request.wants(spec.FAILURE_COUNT):
                    failures = self._call("failure_count", dataset, feature)
                    put(
                        spec.FAILURE_COUNT,
                        dataset,
                        feature,
                        int(failures) if dp is None else _noisy(int(failures), dp, self.rng),
                    )
                wanted = [s for s in NOT_DP if request.wants(s)]
                if request.needs_moments() and spec.SUM not in wanted:
                    wanted.insert(0, spec.SUM)  # the global mean needs every site's sum
                needs_range = request.needs_range(feature)
                if dp is not None:
                    for statistic in dict.fromkeys(wanted + ([spec.MIN] if needs_range else [])):
                        self._withhold(
                            withheld,
                            dataset,
                            feature,
                            statistic,
                            f"laplace_epsilon={dp}: {statistic} has no bounded sensitivity",
                        )
                    continue
                if spec.SUM in wanted:
                    put(spec.SUM, dataset, feature, self._number("sum", dataset, feature))
                if spec.MEAN in wanted:
                    put(spec.MEAN, dataset, feature, self._number("mean", dataset, feature))
                if spec.STDDEV in wanted or spec.VAR in wanted:
                    put(spec.STDDEV, dataset, feature, self._local_stddev(dataset, feature, count))
                if spec.MIN in wanted or spec.MAX in wanted or needs_range:
                    low = self._number("min_value", dataset, feature)
                    high = self._number("max_value", dataset, feature)
                    if low > high:
                        raise StatsSiteError(
                            f"{self._name}: min_value {low} > max_value {high} for "
                            f"{dataset}/{feature}"
                        )
                    low, high = noised_extremes(low, high, policy, self.rng)
                    put(spec.MIN, dataset, feature, low)
                    put(spec.MAX, dataset, feature, high)
        return {
            "pass": FIRST,
            "features": features,
            "statistics": stats,
            "withheld": withheld,
            "policy": policy.to_json(),
        }

    def _local_stddev(self, dataset: str, feature: str, count: int) -> float | None:
        if count < 2:
            return None
        return self._number("stddev", dataset, feature)

    def _second(self, request: dict[str, Any]) -> dict[str, Any]:
        policy = self.policy
        stats: dict[str, dict[str, dict[str, Any]]] = {}
        withheld: list[dict[str, str]] = []
        dp = policy.laplace_epsilon
        features = self.features()
        moments: dict[str, dict[str, dict[str, float]]] = request.get("global") or {}
        histograms: dict[str, dict[str, dict[str, Any]]] = request.get("histogram") or {}
        for dataset, columns in features.items():
            for feature, _ in columns:
                moment = moments.get(dataset, {}).get(feature)
                hist = histograms.get(dataset, {}).get(feature)
                if moment is None and hist is None:
                    continue
                count = self._count(dataset, feature)
                if count < policy.min_count:
                    continue  # withheld in the first pass already, for the same reason
                if moment is not None:
                    if dp is not None:
                        self._withhold(
                            withheld,
                            dataset,
                            feature,
                            spec.VAR,
                            f"laplace_epsilon={dp}: var has no bounded sensitivity",
                        )
                    elif float(moment["count"]) > 1:
                        value = self._number(
                            "variance_with_mean",
                            dataset,
                            feature,
                            float(moment["mean"]),
                            float(moment["count"]),
                        )
                        stats.setdefault(spec.VAR, {}).setdefault(dataset, {})[feature] = value
                if hist is not None:
                    counts = self._histogram(dataset, feature, count, hist, withheld)
                    if counts is not None:
                        stats.setdefault(spec.HISTOGRAM, {}).setdefault(dataset, {})[feature] = (
                            counts
                        )
        return {"pass": SECOND, "statistics": stats, "withheld": withheld}

    def _histogram(
        self,
        dataset: str,
        feature: str,
        count: int,
        hist: dict[str, Any],
        withheld: list[dict[str, str]],
    ) -> list[Any] | None:
        bins = int(hist["bins"])
        low, high = (float(v) for v in hist["range"])
        if not self.policy.bins_allowed(bins, count):
            self._withhold(
                withheld,
                dataset,
                feature,
                spec.HISTOGRAM,
                f"{bins} bins are not fewer than max_bins_percent="
                f"{self.policy.max_bins_percent:g}% of the records",
            )
            return None
        result = self._call("histogram", dataset, feature, bins, low, high)
        buckets = getattr(result, "bins", result)
        if not isinstance(buckets, list | tuple) or len(buckets) != bins:
            raise StatsSiteError(
                f"{self._name}.histogram({dataset!r}, {feature!r}, {bins}, ...) must return a "
                f"Histogram of {bins} bins, got {result!r:.200}"
            )
        counts = []
        for bucket in buckets:
            value = bucket[2] if isinstance(bucket, list | tuple) else bucket
            if not isinstance(value, numbers.Real) or not 0 <= float(value) <= count:
                raise StatsSiteError(
                    f"{self._name}.histogram({dataset!r}, {feature!r}, ...) returned a bin "
                    f"count {value!r}; bin counts are numbers in [0, count]"
                )
            counts.append(float(value))
        if sum(counts) > count + 1e-9 * count:
            raise StatsSiteError(
                f"{self._name}.histogram({dataset!r}, {feature!r}, ...) counts more records "
                "than count() does"
            )
        if self.policy.laplace_epsilon is not None:
            return [float(v) for v in laplace(counts, self.policy.laplace_epsilon, self.rng)]
        # only the counts leave the site: the edges are the server's own
        return [int(v) if float(v).is_integer() else v for v in counts]


def _noisy(value: int, epsilon: float, rng: np.random.Generator) -> float:
    return float(laplace([value], epsilon, rng)[0])


def run_site(settings: str | Path) -> None:
    """The site script's body: answer the server's federated statistics requests.

    ``settings`` is the job's ``fedstats_site.json`` (``{"generator": {"path", "args"},
    "privacy": {...}}``). The site's own policy files make the job's limits stricter
    (:func:`ember.fedstats.privacy.policy_files`).
    """
    import ember.client as flare

    data = json.loads(Path(settings).read_text(encoding="utf-8"))
    flare.init()
    site = flare.get_site_name()
    config = flare.get_config()
    workspace = Path(config.get("workspace") or ".")
    job_policy = PrivacyPolicy(**data.get("privacy", {}))
    policy = effective_policy(job_policy, policy_files(site, workspace))
    generator_spec = data["generator"]
    generator = load_generator(generator_spec["path"], dict(generator_spec.get("args") or {}))
    ctx = StatsContext(site_name=site, job_id=flare.get_job_id(), workspace=workspace)
    generator.initialize(ctx)
    answerer = SiteAnswerer(generator, policy)
    try:
        while flare.is_running():
            task = flare.receive()
            if task is None:
                break
            request = task.meta.get(REQUEST)
            if not isinstance(request, dict):
                raise StatsSiteError(
                    f"{site} got a task without a federated statistics request ({REQUEST!r} "
                    "in its meta): this script answers FedStatsRecipe's controller only"
                )
            flare.send(flare.FLModel(meta={ANSWER: answerer.answer(request)}))
    finally:
        generator.finalize(ctx)
