"""Rényi-DP accounting of the sampled Gaussian mechanism, in numpy (no torch needed).

The sampled Gaussian mechanism adds ``N(0, (noise_multiplier * clip)^2)`` noise to a sum of
contributions clipped to L2 norm ``clip``, each contribution included with probability
``sample_rate``. Its Rényi divergence of order ``alpha`` is computed exactly as Mironov,
Talwar and Zhang, "Rényi Differential Privacy of the Sampled Gaussian Mechanism" (2019)
do, and as Opacus (``opacus.accountants.analysis.rdp``) and TensorFlow Privacy implement it:
a finite binomial sum for integer orders, a converging two-sided series for fractional
ones. RDP composes by addition over steps; :func:`epsilon` converts to ``(epsilon, delta)``
with the bound of Balle et al., "Hypothesis testing interpretations and Rényi differential
privacy" (2020), minimised over the orders -- the conversion Opacus' ``RDPAccountant`` uses,
so both give the same epsilon for the same history (``tests/pt/test_dp_accountant.py``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

#: Opacus' default orders (``RDPAccountant.DEFAULT_ALPHAS``)
DEFAULT_ALPHAS: tuple[float, ...] = tuple(
    [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64))
)


def _log_add(x: float, y: float) -> float:
    a, b = min(x, y), max(x, y)
    if a == -math.inf:
        return b
    return math.log1p(math.exp(a - b)) + b


def _log_sub(x: float, y: float) -> float:
    if y == -math.inf:
        return x
    if x == y:
        return -math.inf
    if x < y:
        raise ValueError("the result of a log-space subtraction must be positive")
    try:
        return math.log(math.expm1(x - y)) + y
    except OverflowError:  # x - y > ~709: y is negligible beside x (as Opacus does)
        return x


def _log_erfc(x: float) -> float:
    """``log(erfc(x))`` without underflow for large ``x`` (asymptotic series there)."""
    if x < 20.0:
        return math.log(math.erfc(x))
    x2 = x * x
    series = 1.0 - 1.0 / (2 * x2) + 3.0 / (4 * x2 * x2) - 15.0 / (8 * x2 * x2 * x2)
    return -x2 - math.log(x) - 0.5 * math.log(math.pi) + math.log(series)


def _log_a_int(q: float, sigma: float, alpha: int) -> float:
    log_a = -math.inf
    for i in range(alpha + 1):
        log_coef = math.log(math.comb(alpha, i)) + i * math.log(q) + (alpha - i) * math.log(1 - q)
        log_a = _log_add(log_a, log_coef + (i * i - i) / (2 * sigma**2))
    return log_a


def _log_a_frac(q: float, sigma: float, alpha: float) -> float:
    log_a0, log_a1 = -math.inf, -math.inf
    z0 = sigma**2 * math.log(1 / q - 1) + 0.5
    coef = 1.0  # the generalised binomial coefficient C(alpha, i)
    i = 0
    while True:
        log_coef = math.log(abs(coef))
        j = alpha - i
        log_t0 = log_coef + i * math.log(q) + j * math.log(1 - q)
        log_t1 = log_coef + j * math.log(q) + i * math.log(1 - q)
        log_e0 = math.log(0.5) + _log_erfc((i - z0) / (math.sqrt(2) * sigma))
        log_e1 = math.log(0.5) + _log_erfc((z0 - j) / (math.sqrt(2) * sigma))
        log_s0 = log_t0 + (i * i - i) / (2 * sigma**2) + log_e0
        log_s1 = log_t1 + (j * j - j) / (2 * sigma**2) + log_e1
        if coef > 0:
            log_a0, log_a1 = _log_add(log_a0, log_s0), _log_add(log_a1, log_s1)
        else:
            log_a0, log_a1 = _log_sub(log_a0, log_s0), _log_sub(log_a1, log_s1)
        coef *= (alpha - i) / (i + 1)
        i += 1
        if max(log_s0, log_s1) < -30:
            break
    return _log_add(log_a0, log_a1)


def rdp_step(sample_rate: float, noise_multiplier: float, alpha: float) -> float:
    """RDP of order ``alpha`` of one step of the sampled Gaussian mechanism."""
    q, sigma = float(sample_rate), float(noise_multiplier)
    if q == 0:
        return 0.0
    if sigma == 0:
        return math.inf
    if q == 1.0:
        return alpha / (2 * sigma**2)
    if math.isinf(alpha):
        return math.inf
    log_a = (
        _log_a_int(q, sigma, int(alpha))
        if float(alpha).is_integer()
        else _log_a_frac(q, sigma, alpha)
    )
    return log_a / (alpha - 1)


def rdp(
    sample_rate: float,
    noise_multiplier: float,
    steps: int,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
) -> np.ndarray[tuple[int], np.dtype[np.float64]]:
    """RDP at each order of ``alphas`` after ``steps`` steps (composition adds)."""
    return np.array([rdp_step(sample_rate, noise_multiplier, a) * steps for a in alphas])


def epsilon(
    rdp_values: np.ndarray[tuple[int], np.dtype[np.float64]],
    delta: float,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
) -> tuple[float, float]:
    """``(epsilon, best order)`` of an RDP curve at ``delta`` (Balle et al. 2020)."""
    orders = np.atleast_1d(np.asarray(alphas, dtype=np.float64))
    values = np.atleast_1d(rdp_values)
    with np.errstate(invalid="ignore", divide="ignore"):
        eps = (
            values
            - (math.log(delta) + np.log(orders)) / (orders - 1)
            + np.log((orders - 1) / orders)
        )
    if np.isnan(eps).all():
        return math.inf, math.nan
    best = int(np.nanargmin(eps))
    return float(eps[best]), float(orders[best])


class RDPAccountant:
    """The privacy spent by a sequence of sampled Gaussian mechanism steps.

    The same history model as Opacus' ``RDPAccountant``: :meth:`step` records
    ``(noise_multiplier, sample_rate)`` steps; :meth:`get_epsilon` composes them. Example::

        acc = RDPAccountant()
        for _ in range(10):
            acc.step(noise_multiplier=1.1, sample_rate=0.01)
        acc.get_epsilon(delta=1e-5)   # about 0.58
    """

    def __init__(self) -> None:
        self.history: list[tuple[float, float, int]] = []  # (noise, sample rate, steps)

    def step(self, *, noise_multiplier: float, sample_rate: float, steps: int = 1) -> None:
        if self.history and self.history[-1][:2] == (noise_multiplier, sample_rate):
            last = self.history[-1]
            self.history[-1] = (last[0], last[1], last[2] + steps)
        else:
            self.history.append((noise_multiplier, sample_rate, steps))

    def get_epsilon(self, delta: float, alphas: Sequence[float] = DEFAULT_ALPHAS) -> float:
        if not self.history:
            return 0.0
        total = sum(rdp(q, sigma, n, alphas) for sigma, q, n in self.history)
        return epsilon(np.asarray(total), delta, alphas)[0]
