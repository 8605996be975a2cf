"""``FedStatsRecipe``: federated statistics with privacy rules applied at each site."""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

from ember.fedstats import spec
from ember.fedstats.generator import Statistics, implements
from ember.fedstats.privacy import PrivacyPolicy, StatsPrivacyError
from ember.fedstats.report import privacy_path, report_path
from ember.fedstats.site import NOT_DP
from ember.job.definition import APP_DIR, ClientApp, JobFile
from ember.recipes.base import Recipe
from ember.recipes.components import component_spec
from ember.recipes.validation import RecipeArgumentError, check_job_name

STATS_CONTROLLER = "ember.statistics:StatsController"
SITE_SCRIPT = "fedstats_site.py"
SITE_SETTINGS = "fedstats_site.json"
#: the site script: the same bytes in every job (a site without custom code trusts its hash)
SITE_SCRIPT_SOURCE = b'''"""Federated statistics, this site's side (written by FedStatsRecipe).

It runs the job's statistics generator and answers the server through the Client API;
ember.statistics applies the privacy rules (the job's, made stricter by this site's own
policy) to everything before it is sent.
"""

from pathlib import Path

from ember.statistics import run_site

run_site(Path(__file__).with_name("fedstats_site.json"))
'''


class StatsOutputs(NamedTuple):
    """The files a federated statistics job writes (see :meth:`FedStatsRecipe.outputs`)."""

    json: Path
    privacy: Path
    report: Path


class FedStatsRecipe(Recipe):
    """Federated statistics (NVFlare's ``FedStatsRecipe``): each site computes local
    statistics of its datasets with ``stats_generator``; the server makes global ones.

    - ``statistic_configs``: which statistics, e.g. ``{"count": {}, "mean": {}, "stddev":
      {}, "histogram": {"*": {"bins": 10}, "age": {"bins": 8, "range": [0, 100]}},
      "quantile": {"*": [0.25, 0.5, 0.75]}}``; also ``sum``, ``var``, ``min``, ``max``,
      ``failure_count``. ``count`` is always computed (the privacy checks need it).
    - ``stats_generator``: an instance of a :class:`ember.statistics.Statistics` subclass
      defined in a module beside ``job.py`` (bundled into the job; its constructor arguments
      must be JSON values), or ``{"path": "module.Class", "args": {...}}``.
    - ``sites``: the sites that take part; every one must answer.
    - ``stats_output_path``: the JSON result (``.json``), relative to the server's folder of
      the result workspace; ``<stem>.privacy.json`` and the PNG report ``<stem>.png`` go
      beside it (:meth:`outputs`).
    - Privacy, enforced at each site before anything is sent: features with fewer than
      ``min_count`` records are withheld; min and max are moved outward by a random
      ``min_noise_level``..``max_noise_level`` share of the site's value scale; a histogram
      needs fewer bins than ``max_bins_percent`` % of the site's records. With
      ``laplace_epsilon`` counts and histogram bins get Laplace noise of scale
      ``1/laplace_epsilon`` (only count, failure_count, histogram and quantile may be asked
      for then, with every histogram's range configured). A site's own policy file makes
      these stricter, never looser (``docs/statistics.md``).

    Count, sum, mean, var, stddev (``ddof=1``) and histograms are exact over the records
    that passed the checks; quantiles come from the privacy-checked histogram.
    """

    framework = "numpy"

    def __init__(
        self,
        *,
        name: str = "fedstats",
        stats_output_path: str = "statistics/stats.json",
        sites: list[str],
        statistic_configs: dict[str, Any],
        stats_generator: Any,
        min_count: int = 10,
        min_noise_level: float = 0.1,
        max_noise_level: float = 0.3,
        max_bins_percent: float = 10,
        laplace_epsilon: float | None = None,
    ) -> None:
        name = check_job_name(name)
        self.stats_output_path = _check_output_path(stats_output_path)
        sites = _check_sites(sites)
        request = spec.parse_statistic_configs(statistic_configs)
        try:
            self.privacy = PrivacyPolicy(
                min_count=min_count,
                min_noise_level=min_noise_level,
                max_noise_level=max_noise_level,
                max_bins_percent=max_bins_percent,
                laplace_epsilon=laplace_epsilon,
            )
        except StatsPrivacyError as exc:
            raise RecipeArgumentError(str(exc)) from None
        if laplace_epsilon is not None:
            _check_dp(request, laplace_epsilon)
        files: dict[str, JobFile] = {}
        generator = _generator_spec(stats_generator, request, files)
        settings = {"generator": generator, "privacy": self.privacy.to_json()}
        files[f"{APP_DIR}/{SITE_SCRIPT}"] = SITE_SCRIPT_SOURCE
        files[f"{APP_DIR}/{SITE_SETTINGS}"] = (json.dumps(settings, indent=2) + "\n").encode()
        self.request = request
        self.sites = sites
        self.assemble(
            name=name,
            min_clients=len(sites),
            workflows=[
                {
                    "target": STATS_CONTROLLER,
                    "args": {
                        "statistic_configs": request.to_json(),
                        "sites": sites,
                        "output_path": self.stats_output_path,
                    },
                }
            ],
            client=ClientApp(script=f"{APP_DIR}/{SITE_SCRIPT}"),
            files=files,
        )

    def outputs(self, result: str | Path) -> StatsOutputs:
        """The JSON result, the privacy notes and the PNG report of a run whose result
        folder is ``result`` (``run.get_result()``)."""
        path = Path(self.stats_output_path)
        if not path.is_absolute():
            path = Path(result) / "server" / path
        return StatsOutputs(path, privacy_path(path), report_path(path))


def _check_output_path(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or not value.endswith(".json"):
        raise RecipeArgumentError(
            f"stats_output_path must be a path ending in .json, e.g. 'statistics/stats.json', "
            f"got {value!r}"
        )
    if not Path(value).is_absolute() and ".." in PurePosixPath(value).parts:
        raise RecipeArgumentError(
            f"stats_output_path {value!r} must stay inside the server's result folder (no '..')"
        )
    return value


def _check_sites(value: Any) -> list[str]:
    if (
        not isinstance(value, list | tuple)
        or not value
        or not all(isinstance(s, str) and s and s != "server" and "/" not in s for s in value)
    ):
        raise RecipeArgumentError(
            f"sites must be a non-empty list of site names, e.g. ['site-1', 'site-2'], got "
            f"{value!r}"
        )
    if len(set(value)) != len(value):
        raise RecipeArgumentError(f"sites has duplicate names: {list(value)!r}")
    return list(value)


def _check_dp(request: spec.StatsRequest, epsilon: float) -> None:
    refused = [s for s in NOT_DP if request.wants(s)]
    if refused:
        raise RecipeArgumentError(
            f"laplace_epsilon={epsilon} releases only count, failure_count, histogram and "
            f"quantile (they change by at most 1 when one record does); {', '.join(refused)} "
            "have no bounded sensitivity: drop them from statistic_configs or laplace_epsilon"
        )
    features = set(request.histogram) | set(request.quantile)
    unranged = sorted(f for f in features if request.needs_range(f))
    if unranged:
        raise RecipeArgumentError(
            f"laplace_epsilon={epsilon}: histograms need a configured range (the sites' "
            f"extremes are not differentially private); give statistic_configs['histogram']"
            f"[f]['range'] for {unranged}"
        )


def _needs(request: spec.StatsRequest) -> list[str]:
    """The generator methods the request calls."""
    needed = []
    if request.needs_moments():
        needed.append("sum")
    if request.wants(spec.MEAN):
        needed.append("mean")
    if request.wants(spec.STDDEV) or request.wants(spec.VAR):
        needed += ["stddev", "variance_with_mean"]
    features = set(request.histogram) | set(request.quantile)
    if (
        request.wants(spec.MIN)
        or request.wants(spec.MAX)
        or any(request.needs_range(f) for f in features)
    ):
        needed += ["min_value", "max_value"]
    if request.wants(spec.HISTOGRAM) or request.wants(spec.QUANTILE):
        needed.append("histogram")
    return needed


def _generator_spec(
    generator: Any, request: spec.StatsRequest, files: dict[str, JobFile]
) -> dict[str, Any]:
    """``{"path", "args"}`` of ``stats_generator``; bundles its module; checks it implements
    what the request needs."""
    generator_spec, cls = component_spec(
        "stats_generator", generator, Statistics, files, "ember.statistics.Statistics"
    )
    missing = [m for m in _needs(request) if not implements(cls, m)]
    if missing:
        raise RecipeArgumentError(
            f"statistic_configs asks for what {cls.__name__} does not implement: "
            f"{', '.join(f'{m}()' for m in missing)} (or derive it from "
            "ember.statistics.NumpyStatistics / DataFrameStatistics)"
        )
    return generator_spec
