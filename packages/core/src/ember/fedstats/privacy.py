"""A site's privacy rules for federated statistics, applied at the site before it sends.

:class:`PrivacyPolicy` holds the limits. A job states its own (``FedStatsRecipe``'s
``min_count``, ``min_noise_level``, ``max_noise_level``, ``max_bins_percent``,
``laplace_epsilon``); a site may hold a stricter one of its own, which the job cannot loosen:

- ``<site folder>/local/stats_policy.json`` beside the site's startup kit (PocEnv, ProdEnv:
  the folder holding ``startup/``; ``local/`` is the operator's, outside the signed kit);
- ``$EMBER_STATS_POLICY_DIR/<site>.json`` where the site's process has that variable set
  (any env; in SimEnv, where sites have no kit, the way to give each site its own policy).

A policy file is a JSON object with any of the five limits (and optionally ``"format": 1``)::

    {"min_count": 50, "max_bins_percent": 5, "min_noise_level": 0.2,
     "max_noise_level": 0.5, "laplace_epsilon": 1.0}

The limits in force are the strictest of the job's and every file's (:meth:`stricter`). A
malformed file, or an unknown key in it, fails the site's part of the job (a typo must not
silently turn a rule off).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ember.errors import EmberError

POLICY_FILE = "stats_policy.json"
POLICY_DIR_ENV = "EMBER_STATS_POLICY_DIR"
POLICY_FORMAT = 1
#: the layout of a site's job workspace in PocEnv/ProdEnv: <site folder>/jobs/<id>/workspace,
#: the site folder holding startup/kit.json (ember.system.kit, which this layer cannot import)
_KIT_FILE = ("startup", "kit.json")


class StatsPrivacyError(EmberError, ValueError):
    """A privacy policy is malformed, or a limit is out of its range."""


@dataclass(frozen=True)
class PrivacyPolicy:
    """The privacy limits of federated statistics at one site.

    - ``min_count``: a feature with fewer records is withheld (all its statistics);
    - ``min_noise_level``, ``max_noise_level``: a released minimum (maximum) is moved outward
      by ``r * scale``, ``r`` uniform in ``[min_noise_level, max_noise_level]`` and ``scale``
      the largest of ``|min|``, ``|max|`` and ``max - min`` of the site's values;
    - ``max_bins_percent``: a histogram needs fewer bins than this percentage of the site's
      record count (NVFlare's rule), else it is withheld;
    - ``laplace_epsilon``: when set, counts and every histogram bin get Laplace noise of scale
      ``1 / laplace_epsilon``, and statistics without a bounded sensitivity (sum, mean,
      stddev, var, min, max) are withheld.
    """

    min_count: int = 10
    min_noise_level: float = 0.1
    max_noise_level: float = 0.3
    max_bins_percent: float = 10.0
    laplace_epsilon: float | None = None

    def __post_init__(self) -> None:
        problems = check_limits(asdict(self))
        if problems:
            raise StatsPrivacyError("; ".join(problems))

    def stricter(self, other: PrivacyPolicy | Mapping[str, Any]) -> PrivacyPolicy:
        """The strictest of both (``other`` may give only some limits): more records, more
        noise, fewer bins, a smaller epsilon."""
        limits = asdict(other) if isinstance(other, PrivacyPolicy) else dict(other)
        low = max(self.min_noise_level, limits.get("min_noise_level") or 0.0)
        epsilons = [e for e in (self.laplace_epsilon, limits.get("laplace_epsilon")) if e]
        return PrivacyPolicy(
            min_count=max(self.min_count, limits.get("min_count") or 0),
            min_noise_level=low,
            max_noise_level=max(self.max_noise_level, limits.get("max_noise_level") or 0.0, low),
            max_bins_percent=min(self.max_bins_percent, limits.get("max_bins_percent") or 100.0),
            laplace_epsilon=min(epsilons) if epsilons else None,
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def max_bins(self, count: float) -> int:
        """The most bins a histogram of ``count`` records may have (0: none passes)."""
        limit = count * self.max_bins_percent / 100
        return max(0, math.ceil(limit) - 1)

    def bins_allowed(self, bins: int, count: float) -> bool:
        """NVFlare's rule: fewer bins than ``max_bins_percent`` % of the record count."""
        return bins < count * self.max_bins_percent / 100


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_limits(limits: dict[str, Any]) -> list[str]:
    """What is wrong with these limits (empty: nothing). Keys absent are not checked."""
    problems = []
    if "min_count" in limits:
        value = limits["min_count"]
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            problems.append(f"min_count must be an integer >= 1, got {value!r}")
    low: Any = limits.get("min_noise_level")
    high: Any = limits.get("max_noise_level")
    for name, value in (("min_noise_level", low), ("max_noise_level", high)):
        if name in limits and (not _is_number(value) or not 0 < value <= 1):
            problems.append(
                f"{name} must be a number in (0, 1] (a noised extreme must never be the raw "
                f"one), got {value!r}"
            )
    if _is_number(low) and _is_number(high) and low > high:
        problems.append(f"min_noise_level {low!r} is above max_noise_level {high!r}")
    if "max_bins_percent" in limits:
        value = limits["max_bins_percent"]
        if not _is_number(value) or not 0 < value <= 100:
            problems.append(f"max_bins_percent must be a number in (0, 100], got {value!r}")
    if limits.get("laplace_epsilon") is not None:
        value = limits["laplace_epsilon"]
        if not _is_number(value) or value <= 0:
            problems.append(f"laplace_epsilon must be a number > 0 or None, got {value!r}")
    return problems


LIMITS = ("min_count", "min_noise_level", "max_noise_level", "max_bins_percent", "laplace_epsilon")


def read_policy_file(path: Path, base: PrivacyPolicy) -> PrivacyPolicy:
    """``base`` made stricter by the policy file at ``path``."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise StatsPrivacyError(f"site statistics policy {path} cannot be read: {exc}") from None
    if not isinstance(data, dict):
        raise StatsPrivacyError(f"site statistics policy {path} must be a JSON object")
    if data.get("format", POLICY_FORMAT) != POLICY_FORMAT:
        raise StatsPrivacyError(
            f"site statistics policy {path}: format {data.get('format')!r} is not supported "
            f"(this Ember reads format {POLICY_FORMAT})"
        )
    extra = sorted(set(data) - {*LIMITS, "format"})
    if extra:
        raise StatsPrivacyError(
            f"site statistics policy {path}: unknown keys {extra}; it takes {', '.join(LIMITS)}"
        )
    limits = {k: data[k] for k in LIMITS if k in data}
    problems = check_limits(limits)
    if problems:
        raise StatsPrivacyError(f"site statistics policy {path}: {'; '.join(problems)}")
    return base.stricter(limits)


def site_kit_folder(workspace: Path) -> Path | None:
    """The site folder (holding ``startup/``) of a job workspace in PocEnv/ProdEnv
    (``<site folder>/jobs/<job id>/workspace``), or None (SimEnv)."""
    workspace = Path(workspace).resolve()
    if workspace.name != "workspace" or workspace.parent.parent.name != "jobs":
        return None
    folder = workspace.parents[2]
    return folder if folder.joinpath(*_KIT_FILE).is_file() else None


def policy_files(site: str, workspace: Path, environ: dict[str, str] | None = None) -> list[Path]:
    """The site's own policy files that exist: its kit's ``local/stats_policy.json``, then
    ``$EMBER_STATS_POLICY_DIR/<site>.json``."""
    env = os.environ if environ is None else environ
    found = []
    folder = site_kit_folder(workspace)
    if folder is not None and (folder / "local" / POLICY_FILE).is_file():
        found.append(folder / "local" / POLICY_FILE)
    if env.get(POLICY_DIR_ENV):
        path = Path(env[POLICY_DIR_ENV]) / f"{site}.json"
        if path.is_file():
            found.append(path)
    return found


def effective_policy(job: PrivacyPolicy, files: Iterable[Path]) -> PrivacyPolicy:
    """The job's limits made stricter by each of the site's policy files."""
    policy = job
    for path in files:
        policy = read_policy_file(path, policy)
    return policy


def noised_extremes(
    low: float, high: float, policy: PrivacyPolicy, rng: np.random.Generator
) -> tuple[float, float]:
    """``low`` moved down and ``high`` moved up, each by its own ``r * scale`` (``r``
    uniform in the policy's noise levels, ``scale`` the largest of ``|low|``, ``|high|``
    and ``high - low``, 1 when all are 0): never the raw values, always outside them."""
    scale = max(abs(low), abs(high), high - low) or 1.0
    r_low, r_high = rng.uniform(policy.min_noise_level, policy.max_noise_level, size=2)
    noised_low, noised_high = low - float(r_low) * scale, high + float(r_high) * scale
    # r >= min_noise_level > 0 and scale >= |value|, so the shift is far above one ulp
    assert noised_low < low
    assert noised_high > high
    return noised_low, noised_high


def laplace(values: Any, epsilon: float, rng: np.random.Generator) -> np.ndarray:
    """``values`` plus Laplace noise of scale ``1 / epsilon`` (sensitivity 1: adding or
    removing one record changes a count, or one bin of a histogram, by 1), clipped at 0."""
    data = np.asarray(values, dtype=np.float64)
    noised = data + rng.laplace(0.0, 1.0 / epsilon, size=data.shape)
    return np.maximum(noised, 0.0)
