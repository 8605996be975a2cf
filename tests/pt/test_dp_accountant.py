"""Core's numpy RDP accountant (ember.filters.rdp) gives Opacus' epsilon for the same history.

Both compute the Rényi DP of the sampled Gaussian mechanism (Mironov et al. 2019) and convert
it with Balle et al. 2020; core has no torch or scipy, so it is checked here, in the package
whose ``dp`` extra installs Opacus. Tolerance: relative 1e-9 on epsilon (the largest gap seen
over 480 settings of noise 0.3-10, sample rate 1e-5-1, steps 1-10,000 was 8e-12), and on each
order's RDP relative 1e-9 or absolute 1e-12 (an order's RDP of ~1e-15 is rounding noise).
"""

from __future__ import annotations

import math
import warnings

import pytest

pytest.importorskip("opacus")

from opacus.accountants import RDPAccountant as OpacusAccountant
from opacus.accountants.analysis.rdp import compute_rdp

from ember.filters.rdp import DEFAULT_ALPHAS, RDPAccountant, rdp

REL = 1e-9

FRACTIONAL_ORDERS = [1.01, 1.25, 1.5, 2.5, 3.3, 7.75, 10.5, 12.5]
INTEGER_ORDERS = [2, 3, 4, 8, 16, 32, 64, 128]

# (noise multiplier, sample rate, steps)
SETTINGS = [
    pytest.param(1.1, 0.01, 1000, id="typical-dp-sgd"),
    pytest.param(1.0, 1.0, 10, id="full-batch"),
    pytest.param(4.0, 1.0, 1, id="full-batch-one-step"),
    pytest.param(0.8, 1e-4, 10_000, id="tiny-rate"),
    pytest.param(2.0, 1e-5, 100, id="tinier-rate"),
    pytest.param(0.5, 0.3, 50, id="little-noise-large-rate"),
    pytest.param(10.0, 0.9, 3, id="much-noise"),
    pytest.param(1.6552734375, 1 / 14, 70, id="hello-dp"),
]


def opacus_epsilon(
    history: list[tuple[float, float, int]], delta: float, alphas: list[float]
) -> float:
    accountant = OpacusAccountant()
    for noise, rate, steps in history:
        for _ in range(steps):  # as Opacus' optimizer hook does, one step at a time
            accountant.step(noise_multiplier=noise, sample_rate=rate)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "optimal order is the largest alpha"
        return float(accountant.get_epsilon(delta=delta, alphas=alphas))


def core_epsilon(
    history: list[tuple[float, float, int]], delta: float, alphas: list[float]
) -> float:
    accountant = RDPAccountant()
    for noise, rate, steps in history:
        accountant.step(noise_multiplier=noise, sample_rate=rate, steps=steps)
    return accountant.get_epsilon(delta, alphas)


@pytest.mark.parametrize(("noise", "rate", "steps"), SETTINGS)
@pytest.mark.parametrize("delta", [1e-5, 1e-3])
def test_epsilon_equals_opacus_at_the_default_orders(
    noise: float, rate: float, steps: int, delta: float
) -> None:
    history = [(noise, rate, steps)]
    alphas = list(DEFAULT_ALPHAS)
    assert alphas == OpacusAccountant.DEFAULT_ALPHAS
    expected = opacus_epsilon(history, delta, alphas)
    assert 0 < expected < math.inf
    assert core_epsilon(history, delta, alphas) == pytest.approx(expected, rel=REL)


@pytest.mark.parametrize(("noise", "rate", "steps"), SETTINGS)
@pytest.mark.parametrize(
    "orders", [FRACTIONAL_ORDERS, INTEGER_ORDERS], ids=["fractional", "integer"]
)
def test_epsilon_equals_opacus_at_fractional_and_integer_orders(
    noise: float, rate: float, steps: int, orders: list[float]
) -> None:
    history = [(noise, rate, steps)]
    expected = opacus_epsilon(history, 1e-5, orders)
    assert core_epsilon(history, 1e-5, orders) == pytest.approx(expected, rel=REL)


@pytest.mark.parametrize(("noise", "rate", "steps"), SETTINGS)
def test_each_orders_rdp_equals_opacus(noise: float, rate: float, steps: int) -> None:
    orders = FRACTIONAL_ORDERS + INTEGER_ORDERS
    expected = compute_rdp(q=rate, noise_multiplier=noise, steps=steps, orders=orders)
    got = rdp(rate, noise, steps, orders)
    for order, mine, theirs in zip(orders, got, expected, strict=True):
        assert mine == pytest.approx(theirs, rel=REL, abs=1e-12), f"order {order}"


def test_a_history_of_changing_noise_and_rate_composes_as_opacus_does() -> None:
    history = [(1.0, 0.01, 300), (2.0, 0.05, 40), (1.0, 0.01, 200), (0.7, 1.0, 2)]
    alphas = list(DEFAULT_ALPHAS)
    expected = opacus_epsilon(history, 1e-5, alphas)
    assert core_epsilon(history, 1e-5, alphas) == pytest.approx(expected, rel=REL)


def test_more_steps_spend_more_epsilon_and_none_spend_nothing() -> None:
    assert RDPAccountant().get_epsilon(1e-5) == 0.0
    spent = [core_epsilon([(1.1, 0.01, n)], 1e-5, list(DEFAULT_ALPHAS)) for n in (1, 10, 100)]
    assert spent == sorted(spent)
    assert len(set(spent)) == 3


@pytest.mark.parametrize(
    ("noise", "rate", "orders"),
    [
        pytest.param(0.1, 0.01, list(DEFAULT_ALPHAS), id="default-orders-noise-0.1"),
        pytest.param(1.1, 0.01, [2, 8, 32, 63.5], id="order-63.5-noise-1.1"),
    ],
)
def test_epsilon_equals_opacus_when_the_noise_is_small_for_the_order(
    noise: float, rate: float, orders: list[float]
) -> None:
    history = [(noise, rate, 10)]
    expected = opacus_epsilon(history, 1e-5, orders)
    assert core_epsilon(history, 1e-5, orders) == pytest.approx(expected, rel=REL)
