"""The built-in filters: NVFlare's ``ExcludeVars``, ``PercentilePrivacy`` and ``SVTPrivacy``
(same parameter names and semantics, deviations noted), and ``GaussianPrivacy``, a
clip-and-noise filter whose privacy is tracked by an RDP accountant. docs/privacy.md says
what each protects against and what it does not."""

from __future__ import annotations

import math
import re
import zlib
from typing import Any

import numpy as np

from ember.common.model import FLModel
from ember.filters.base import (
    Filter,
    FilterContext,
    FilterError,
    local_steps,
    model_update,
    replace_params,
    with_update,
)
from ember.filters.rdp import RDPAccountant


def _site_rng(seed: int | None, site: str) -> np.random.Generator:
    """The noise generator of one site's filter: fresh entropy, or with ``seed`` a stream
    of its own per site (the same seed at every site must not mean the same noise)."""
    if seed is None:
        return np.random.default_rng()
    return np.random.default_rng([seed, zlib.crc32(site.encode())])


def _number(
    owner: str, name: str, value: Any, low: float, high: float = math.inf, low_open: bool = False
) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok and (value > low if low_open else value >= low) and value <= high:
        return float(value)
    bound = f"{'>' if low_open else '>='} {low}" + ("" if high == math.inf else f" and <= {high}")
    raise FilterError(f"{owner}({name}=...) must be a number {bound}, got {value!r}")


class ExcludeVars(Filter):
    """Remove variables from the model: ``exclude_vars`` is a list of names (exactly those
    go) or a string, a regular expression (every name it matches, ``re.search``, goes).
    ``None`` excludes nothing. Attached as a client output filter, the excluded variables
    never leave the site."""

    def __init__(self, exclude_vars: list[str] | str | None = None) -> None:
        self.exclude_vars = exclude_vars
        self.check()

    def check(self) -> None:
        ex = self.exclude_vars
        if ex is None:
            return
        if isinstance(ex, str):
            try:
                re.compile(ex)
            except re.error as exc:
                raise FilterError(
                    f"ExcludeVars(exclude_vars={ex!r}) is not a valid regular expression: {exc}; "
                    "pass a list of names to exclude them literally"
                ) from None
        elif not (isinstance(ex, list) and all(isinstance(v, str) for v in ex)):
            raise FilterError(
                "ExcludeVars(exclude_vars=...) takes a list of variable names or a regular "
                f"expression string, got {ex!r}"
            )

    def excluded(self, name: str) -> bool:
        ex = self.exclude_vars
        if isinstance(ex, str):
            return bool(ex) and re.search(ex, name) is not None
        return ex is not None and name in ex

    def process(self, model: FLModel, ctx: FilterContext) -> FLModel:
        if model.params is None or self.exclude_vars is None:
            return model
        kept = {k: v for k, v in model.params.items() if not self.excluded(k)}
        return replace_params(model, kept)


class PercentilePrivacy(Filter):
    """ "Largest percentile to share" (Shokri and Shmatikov, CCS '15), as NVFlare: on the
    update per local step (``NUM_STEPS_CURRENT_ROUND``), every coordinate whose absolute
    value is below the ``percentile``-th percentile of all absolute values becomes 0, the
    rest are clipped to ``[-gamma, gamma]``; scalars pass unchanged. A full-weights result
    is filtered as its difference to the model the site received. No differential privacy
    guarantee: it bounds and sparsifies what is shared, it does not hide it. Unlike NVFlare
    (which then does nothing), a percentile outside 0..100 or ``gamma <= 0`` is refused."""

    def __init__(self, percentile: float = 10, gamma: float = 0.01) -> None:
        self.percentile = percentile
        self.gamma = gamma
        self.check()

    def check(self) -> None:
        _number("PercentilePrivacy", "percentile", self.percentile, 0, 100)
        _number("PercentilePrivacy", "gamma", self.gamma, 0, low_open=True)

    def process(self, model: FLModel, ctx: FilterContext) -> FLModel:
        if not model.params:
            return model
        update, base = model_update(model, ctx)
        steps = local_steps(model)
        delta_w = {name: value / steps for name, value in update.items()}
        all_abs = np.concatenate([np.abs(v.ravel()) for v in delta_w.values()])
        cutoff = np.percentile(all_abs, q=self.percentile) if all_abs.size else 0.0
        out: dict[str, Any] = {}
        for name, diff_w in delta_w.items():
            if np.ndim(diff_w) == 0:
                out[name] = diff_w * steps
                continue
            diff_w = np.where((diff_w > -cutoff) & (diff_w < cutoff), 0.0, diff_w)
            out[name] = np.clip(diff_w, -self.gamma, self.gamma) * steps
        return with_update(model, out, base)


class SVTPrivacy(Filter):
    """The sparse vector technique, as NVFlare's ``SVTPrivacy``: on the update per local step
    clipped to ``[-gamma, gamma]``, coordinates whose absolute value plus Laplace noise
    exceeds a noisy threshold (``tau`` plus ``Lap(2 gamma / epsilon)``) are selected until a
    ``fraction`` of them is; the selected ones are shared with ``Lap(2 gamma / noise_var)``
    noise (then clipped to ``[-gamma, gamma]``), every other coordinate is shared as 0.

    It reports what it spends: ``model.metrics["svt_epsilon"]`` is the selection's
    ``epsilon + eps_2 * max(1, k / c)`` (``eps_2 = epsilon * (2c)^(2/3)``, ``c`` the number
    to share, ``k`` how many answered above the threshold) plus ``c * noise_var`` for the
    ``c`` values released (each a Laplace release of sensitivity ``2 gamma``), by basic
    composition; ``svt_epsilon_total`` adds up the rounds. This holds only for updates whose
    coordinates per step lie in ``[-gamma, gamma]`` (NVFlare adds the noise to the unclipped
    value). Deviation from NVFlare: the shared coordinates are drawn without replacement from
    those above the threshold and the ones not drawn are shared as 0 (NVFlare draws with
    replacement and leaves the undrawn ones unchanged, unnoised). ``seed`` fixes the noise
    (tests; each site draws its own stream from it)."""

    def __init__(
        self,
        fraction: float = 0.1,
        epsilon: float = 0.1,
        noise_var: float = 0.1,
        gamma: float = 1e-5,
        tau: float = 1e-6,
        seed: int | None = None,
    ) -> None:
        self.fraction = fraction
        self.epsilon = epsilon
        self.noise_var = noise_var
        self.gamma = gamma
        self.tau = tau
        self.seed = seed
        self.check()
        self._rng: np.random.Generator | None = None
        self.spent = 0.0

    def check(self) -> None:
        _number("SVTPrivacy", "fraction", self.fraction, 0, 1, low_open=True)
        _number("SVTPrivacy", "epsilon", self.epsilon, 0, low_open=True)
        _number("SVTPrivacy", "noise_var", self.noise_var, 0, low_open=True)
        _number("SVTPrivacy", "gamma", self.gamma, 0, low_open=True)
        _number("SVTPrivacy", "tau", self.tau, -math.inf)
        if self.seed is not None and not isinstance(self.seed, int):
            raise FilterError(f"SVTPrivacy(seed=...) must be an int or None, got {self.seed!r}")

    def round_epsilon(self, size: int, above: int) -> float:
        """Epsilon one application spends on ``size`` coordinates with ``above`` positive
        answers (the formula in the class doc)."""
        n_upload = min(math.ceil(size * self.fraction), size)
        eps_2 = self.epsilon * float((2.0 * n_upload) ** (2.0 / 3.0))
        return self.epsilon + eps_2 * max(1.0, above / n_upload) + n_upload * self.noise_var

    def process(self, model: FLModel, ctx: FilterContext) -> FLModel:
        if not model.params:
            return model
        rng = self._rng = self._rng or _site_rng(self.seed, ctx.site)
        update, base = model_update(model, ctx)
        steps = local_steps(model)
        names = sorted(update)
        vector = [n for n in names if np.ndim(update[n]) > 0]
        if not vector:
            return model
        delta_w = np.concatenate([update[n].ravel() / steps for n in vector])
        n_upload = int(min(math.ceil(delta_w.size * self.fraction), delta_w.size))
        threshold = self.tau + rng.laplace(scale=self.gamma * 2.0 / self.epsilon)
        eps_2 = self.epsilon * (2.0 * n_upload) ** (2.0 / 3.0)
        lambda_nu = self.gamma * 4.0 * n_upload / eps_2
        clipped = np.abs(np.clip(delta_w, -self.gamma, self.gamma))
        accepted: list[int] = []
        candidates = np.arange(delta_w.size)
        answered = 0
        while len(accepted) < n_upload and candidates.size:
            nu = rng.laplace(scale=lambda_nu, size=candidates.shape)
            above = (clipped[candidates] + nu) >= threshold
            answered += int(above.sum())
            accepted += candidates[above].tolist()
            candidates = candidates[~above]
        chosen = rng.choice(np.asarray(accepted), size=n_upload, replace=False)
        noise = rng.laplace(scale=self.gamma * 2.0 / self.noise_var, size=chosen.shape)
        shared = np.zeros_like(delta_w)
        shared[chosen] = np.clip(delta_w[chosen] + noise, -self.gamma, self.gamma)
        out: dict[str, Any] = {n: update[n] for n in names if np.ndim(update[n]) == 0}
        start = 0
        for n in vector:
            size = update[n].size
            out[n] = shared[start : start + size].reshape(update[n].shape) * steps
            start += size
        spent = self.round_epsilon(delta_w.size, answered)
        self.spent += spent
        result = with_update(model, out, base)
        result.metrics = {
            **(result.metrics or {}),
            "svt_epsilon": spent,
            "svt_epsilon_total": self.spent,
        }
        return result


class GaussianPrivacy(Filter):
    """Clip the update's L2 norm (over all variables) to ``clip_norm`` and add Gaussian noise
    of standard deviation ``noise_multiplier * clip_norm`` to every coordinate: the Gaussian
    mechanism on one site's update, so each application is ``(epsilon, delta)``-DP for that
    site's whole contribution (user-level DP), and the privacy over rounds is tracked by an
    RDP accountant (:class:`ember.filters.rdp.RDPAccountant`, the same analysis as Opacus).

    ``sample_rate``: the chance that this site takes part in a round (1.0: every round;
    lower when the server samples sites, which amplifies privacy). ``delta``: the delta
    epsilon is reported at. Each round the result's metrics carry ``dp_epsilon`` (spent so
    far, at ``delta``), ``dp_delta`` and ``dp_clip_fraction`` (1 when clipped), so
    ``round_metrics.jsonl`` and ``metrics_summary.json`` record it per site and round.
    ``seed`` fixes the noise (tests only: a known seed makes the noise removable; each site
    draws its own stream from it)."""

    def __init__(
        self,
        noise_multiplier: float = 1.0,
        clip_norm: float = 1.0,
        delta: float = 1e-5,
        sample_rate: float = 1.0,
        seed: int | None = None,
    ) -> None:
        self.noise_multiplier = noise_multiplier
        self.clip_norm = clip_norm
        self.delta = delta
        self.sample_rate = sample_rate
        self.seed = seed
        self.check()
        self._rng: np.random.Generator | None = None
        self.accountant = RDPAccountant()

    def check(self) -> None:
        _number("GaussianPrivacy", "noise_multiplier", self.noise_multiplier, 0, low_open=True)
        _number("GaussianPrivacy", "clip_norm", self.clip_norm, 0, low_open=True)
        _number("GaussianPrivacy", "delta", self.delta, 0, 1, low_open=True)
        _number("GaussianPrivacy", "sample_rate", self.sample_rate, 0, 1, low_open=True)
        if self.seed is not None and not isinstance(self.seed, int):
            raise FilterError(
                f"GaussianPrivacy(seed=...) must be an int or None, got {self.seed!r}"
            )

    def process(self, model: FLModel, ctx: FilterContext) -> FLModel:
        if not model.params:
            return model
        rng = self._rng = self._rng or _site_rng(self.seed, ctx.site)
        update, base = model_update(model, ctx)
        norm = math.sqrt(sum(float(np.sum(np.square(v))) for v in update.values()))
        scale = min(1.0, self.clip_norm / norm) if norm > 0 else 1.0
        sigma = self.noise_multiplier * self.clip_norm
        noised = {
            name: value * scale + rng.normal(0.0, sigma, size=np.shape(value))
            for name, value in update.items()
        }
        self.accountant.step(noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate)
        result = with_update(model, noised, base)
        result.metrics = {
            **(result.metrics or {}),
            "dp_epsilon": self.accountant.get_epsilon(self.delta),
            "dp_delta": self.delta,
            "dp_clip_fraction": 1.0 if scale < 1.0 else 0.0,
        }
        return result
