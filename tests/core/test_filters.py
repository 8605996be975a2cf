"""Filters: each built-in checked against its definition on fixed inputs, the chain's order
and selection, the job spec, a site's privacy policy file, and the errors bad input gets."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from ember.common.model import FLModel, MetaKey, ParamsType
from ember.filters import (
    ExcludeVars,
    Filter,
    FilterContext,
    FilterError,
    GaussianPrivacy,
    PercentilePrivacy,
    RDPAccountant,
    SVTPrivacy,
)
from ember.filters.builtin import _site_rng
from ember.filters.chain import FilterChain, build_filter, check_spec
from ember.filters.policy import read_policy, site_policy
from support.sim import numpy_recipe

OUT = FilterContext("client", "output", "train", "site-1")


def full(params: dict[str, np.ndarray], **meta: object) -> FLModel:
    return FLModel(params_type=ParamsType.FULL, params=params, meta=dict(meta))


def diff(params: dict[str, np.ndarray], **meta: object) -> FLModel:
    return FLModel(params_type=ParamsType.DIFF, params=params, meta=dict(meta))


def test_exclude_vars_drops_listed_names_or_those_a_regex_matches() -> None:
    model = full({"fc.weight": np.ones(2), "fc.bias": np.ones(1), "bn.bias": np.ones(1)})
    assert set(ExcludeVars(["fc.bias"]).process(model, OUT).params or {}) == {
        "fc.weight",
        "bn.bias",
    }
    assert set(ExcludeVars(r"\.bias$").process(model, OUT).params or {}) == {"fc.weight"}
    assert ExcludeVars(None).process(model, OUT) is model
    assert set(model.params or {}) == {"fc.weight", "fc.bias", "bn.bias"}  # not changed in place


def test_percentile_privacy_zeroes_small_update_coordinates_and_clips_the_rest() -> None:
    received = full({"w": np.zeros(5, dtype=np.float32), "n": np.float32(3)})
    # per local step (2 steps) the update is [0.05, -0.1, 0.3, -2.0, 0.0]
    result = full(
        {"w": np.array([0.1, -0.2, 0.6, -4.0, 0.0], dtype=np.float32), "n": np.float32(5)},
        **{MetaKey.NUM_STEPS_CURRENT_ROUND: 2},
    )
    ctx = FilterContext("client", "output", "train", "site-1", received=received)
    out = PercentilePrivacy(percentile=50, gamma=0.25).process(result, ctx)
    # |update| = [0.05, 0.1, 0.3, 2.0, 0.0, 1.0 (scalar n: 2/2)]: the 50th percentile is 0.2;
    # below it -> 0, the rest clipped to +-0.25, times the 2 steps; the scalar passes unchanged
    per_step = np.array([0.05, -0.1, 0.3, -2.0, 0.0])
    cutoff = np.percentile(np.abs(np.append(per_step, 1.0)), 50)
    expected = np.where(np.abs(per_step) < cutoff, 0.0, np.clip(per_step, -0.25, 0.25)) * 2
    np.testing.assert_allclose((out.params or {})["w"], expected, rtol=1e-6)
    assert (out.params or {})["w"].dtype == np.float32
    assert float((out.params or {})["n"]) == pytest.approx(5.0)


def test_svt_privacy_shares_a_fraction_noised_and_clipped_and_reports_its_epsilon() -> None:
    update = np.linspace(-1e-4, 1e-4, 40).astype(np.float64)
    svt = SVTPrivacy(fraction=0.25, epsilon=0.1, noise_var=0.5, gamma=1e-4, tau=1e-6, seed=3)
    out = svt.process(diff({"w": update}), OUT)
    shared = (out.params or {})["w"]
    assert 0 < np.count_nonzero(shared) <= 10  # ceil(0.25 * 40) values, the rest 0
    assert np.all(np.abs(shared) <= 1e-4)  # clipped to gamma (one local step)
    metrics = out.metrics or {}
    c = 10
    eps_2 = 0.1 * (2 * c) ** (2 / 3)
    # at least c positive answers: epsilon + eps_2 * max(1, k / c) + c * noise_var
    assert metrics["svt_epsilon"] >= 0.1 + eps_2 + c * 0.5 - 1e-9
    assert metrics["svt_epsilon_total"] == metrics["svt_epsilon"]
    again = svt.process(diff({"w": update}), OUT).metrics or {}
    assert again["svt_epsilon_total"] == pytest.approx(metrics["svt_epsilon"] * 2, rel=0.5)
    assert again["svt_epsilon_total"] == pytest.approx(
        metrics["svt_epsilon"] + again["svt_epsilon"]
    )


def test_svt_privacy_with_one_seed_draws_other_noise_at_each_site() -> None:
    update = {"w": np.linspace(-1e-4, 1e-4, 40)}
    one = SVTPrivacy(fraction=0.5, gamma=1e-4, seed=3).process(diff(update), OUT)
    same = SVTPrivacy(fraction=0.5, gamma=1e-4, seed=3).process(diff(update), OUT)
    other_site = FilterContext("client", "output", "train", "site-2")
    other = SVTPrivacy(fraction=0.5, gamma=1e-4, seed=3).process(diff(update), other_site)
    np.testing.assert_array_equal((one.params or {})["w"], (same.params or {})["w"])
    assert not np.array_equal((one.params or {})["w"], (other.params or {})["w"])


def test_gaussian_privacy_clips_the_update_norm_adds_known_noise_and_accounts_rdp() -> None:
    received = full({"a": np.zeros(3, dtype=np.float32), "b": np.ones(2, dtype=np.float32)})
    result = full(
        {
            "a": np.array([3.0, 0.0, 0.0], dtype=np.float32),
            "b": np.array([1.0, 5.0], dtype=np.float32),  # update [0, 4]
        }
    )
    ctx = FilterContext("client", "output", "train", "site-1", received=received)
    dp = GaussianPrivacy(noise_multiplier=0.8, clip_norm=1.0, delta=1e-5, seed=11)
    out = dp.process(result, ctx)
    # the update [3, 0, 0 | 0, 4] has norm 5: scaled to norm 1, then N(0, 0.8^2) noise
    rng = _site_rng(11, "site-1")
    noise_a, noise_b = rng.normal(0, 0.8, size=3), rng.normal(0, 0.8, size=2)
    params = out.params or {}
    np.testing.assert_allclose(params["a"], np.array([0.6, 0, 0]) + noise_a, rtol=1e-5)
    np.testing.assert_allclose(params["b"], 1 + np.array([0, 0.8]) + noise_b, rtol=1e-5)
    assert params["a"].dtype == np.float32
    metrics = out.metrics or {}
    assert metrics["dp_clip_fraction"] == 1.0
    assert metrics["dp_delta"] == 1e-5
    for _ in range(4):
        metrics = dp.process(result, ctx).metrics or {}
    accountant = RDPAccountant()
    accountant.step(noise_multiplier=0.8, sample_rate=1.0, steps=5)
    assert metrics["dp_epsilon"] == pytest.approx(accountant.get_epsilon(1e-5))


def test_the_rdp_accountant_matches_the_closed_form_of_the_full_batch_gaussian() -> None:
    # with sample rate 1, T steps of noise sigma have RDP T * alpha / (2 sigma^2); the bound
    # minimised over a dense grid of orders is the same number the accountant gives
    sigma, steps, delta = 1.3, 20, 1e-5
    acc = RDPAccountant()
    acc.step(noise_multiplier=sigma, sample_rate=1.0, steps=steps)
    eps = acc.get_epsilon(delta)
    alphas = np.array([1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)), float)
    closed = (
        steps * alphas / (2 * sigma**2)
        - (math.log(delta) + np.log(alphas)) / (alphas - 1)
        + np.log((alphas - 1) / alphas)
    )
    assert eps == pytest.approx(float(closed.min()), rel=1e-12)
    # sampling amplifies: the same steps at a 1 % sample rate cost far less
    sampled = RDPAccountant()
    sampled.step(noise_multiplier=sigma, sample_rate=0.01, steps=steps)
    assert sampled.get_epsilon(delta) < eps / 10


class _Tag(Filter):
    def __init__(self, tag: str) -> None:
        self.tag = tag

    def process(self, model: FLModel, ctx: FilterContext) -> FLModel:
        model.meta.setdefault("order", []).append(self.tag)
        return model


def _spec(tag: str, direction: str, **extra: object) -> dict[str, object]:
    return {
        "side": "client",
        "direction": direction,
        "path": f"{__name__}._Tag",
        "args": {"tag": tag},
        **extra,
    }


def test_a_site_policy_runs_last_on_the_way_out_and_first_on_the_way_in() -> None:
    specs = [
        _spec("policy-out", "output", origin="site"),
        _spec("job-out", "output"),
        _spec("policy-in", "input", origin="site"),
        _spec("job-in", "input"),
    ]
    chain = FilterChain("client", specs)
    out = chain.apply("output", "train", "site-1", FLModel(params={}))
    assert out is not None
    assert out.meta["order"] == ["job-out", "policy-out"]
    got = chain.apply("input", "train", "site-1", FLModel(params={}))
    assert got is not None
    assert got.meta["order"] == ["policy-in", "job-in"]


def test_filters_apply_only_to_their_tasks_and_sites() -> None:
    chain = FilterChain("client", [_spec("t", "output", tasks=["train"], clients=["site-2"])])
    for task, site, applied in [
        ("train", "site-2", True),
        ("validate", "site-2", False),
        ("train", "site-1", False),
    ]:
        out = chain.apply("output", task, site, FLModel(params={}))
        assert out is not None
        assert ("order" in out.meta) is applied


def test_a_recipe_records_each_filter_as_a_spec_in_the_job(tmp_path: Path) -> None:
    recipe = numpy_recipe()
    recipe.add_client_output_filter(ExcludeVars(["b"]), tasks=["train"])
    recipe.add_server_input_filter(PercentilePrivacy(percentile=20, gamma=0.1), clients="site-1")
    job = json.loads((recipe.export(tmp_path / "job") / "job.json").read_text())
    assert job["filters"] == [
        {
            "side": "client",
            "direction": "output",
            "path": "ember.filters.builtin.ExcludeVars",
            "args": {"exclude_vars": ["b"]},
            "tasks": ["train"],
            "clients": None,
        },
        {
            "side": "server",
            "direction": "input",
            "path": "ember.filters.builtin.PercentilePrivacy",
            "args": {"percentile": 20, "gamma": 0.1},
            "tasks": None,
            "clients": ["site-1"],
        },
    ]


class _NotJson(Filter):
    def __init__(self, value: object) -> None:
        self.value = value


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda r: r.add_client_output_filter(ExcludeVars), "write ExcludeVars(...)"),
        (lambda r: r.add_client_output_filter("ExcludeVars"), "got str"),
        (lambda r: r.add_client_output_filter(ExcludeVars(), tasks=""), "tasks= takes a list"),
        (lambda r: r.add_server_input_filter(_NotJson({1, 2})), "argument value= is a set"),
    ],
)
def test_a_recipe_refuses_what_is_not_a_filter_it_can_send(make, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(FilterError, match=message):
        make(numpy_recipe())


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: ExcludeVars(5), "takes a list of variable names or a regular expression"),
        (lambda: ExcludeVars("("), "is not a valid regular expression"),
        (lambda: PercentilePrivacy(percentile=150), r"percentile=...\) must be a number >= 0"),
        (lambda: PercentilePrivacy(gamma=0), r"gamma=...\) must be a number > 0"),
        (lambda: SVTPrivacy(fraction=0), r"fraction=...\) must be a number > 0 and <= 1"),
        (lambda: SVTPrivacy(epsilon=float("nan")), "epsilon"),
        (lambda: GaussianPrivacy(delta=2), r"delta=...\) must be a number > 0 and <= 1"),
        (lambda: GaussianPrivacy(noise_multiplier=-1), "noise_multiplier"),
        (lambda: GaussianPrivacy(seed="x"), r"seed=...\) must be an int"),  # type: ignore[arg-type]
    ],
)
def test_bad_filter_arguments_name_the_argument_and_the_bound(make, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(FilterError, match=message):
        make()


def test_a_spec_names_its_unknown_keys_and_bad_values() -> None:
    with pytest.raises(FilterError, match=r"unknown keys \['when'\]"):
        check_spec({"side": "client", "direction": "output", "name": "ExcludeVars", "when": 1})
    with pytest.raises(FilterError, match="direction must be one of"):
        check_spec({"side": "client", "direction": "sideways", "name": "ExcludeVars"})
    with pytest.raises(FilterError, match="exactly one of them"):
        check_spec({"side": "client", "direction": "output"})
    spec = check_spec({"side": "client", "direction": "output", "name": "NoSuchFilter"})
    with pytest.raises(FilterError, match="NoSuchFilter"):
        build_filter(spec)
    spec = check_spec({"side": "client", "direction": "output", "path": "json.JSONDecoder"})
    with pytest.raises(FilterError, match=r"not a subclass of ember\.filters\.Filter"):
        build_filter(spec)


def test_a_site_policy_file_names_registered_filters(tmp_path: Path) -> None:
    site = tmp_path / "site-1"
    (site / "local").mkdir(parents=True)
    (site / "local" / "privacy.json").write_text(
        json.dumps(
            {
                "format": 1,
                "filters": [
                    {"direction": "output", "name": "ExcludeVars", "args": {"exclude_vars": "^p"}},
                    {"direction": "output", "name": "GaussianPrivacy", "tasks": ["train"]},
                ],
            }
        )
    )
    specs = site_policy("site-1", site, environ={})
    assert [(s["name"], s["origin"], s["tasks"]) for s in specs] == [
        ("ExcludeVars", "site", None),
        ("GaussianPrivacy", "site", ["train"]),
    ]
    chain = FilterChain("client", specs)
    model = full({"p.secret": np.ones(2), "w": np.ones(2)})
    out = chain.apply("output", "validate", "site-1", model)
    assert out is not None
    assert set(out.params or {}) == {"w"}
    # the same file by $EMBER_PRIVACY_POLICY_DIR/<site>.json (SimEnv)
    by_env = site_policy("site-1", None, environ={"EMBER_PRIVACY_POLICY_DIR": str(site / "local")})
    assert by_env == []  # the file there is privacy.json, not site-1.json
    (site / "local" / "site-1.json").write_text((site / "local" / "privacy.json").read_text())
    by_env = site_policy("site-1", None, environ={"EMBER_PRIVACY_POLICY_DIR": str(site / "local")})
    assert by_env == specs


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "cannot be read"),
        (json.dumps({"filters": []}), '"format": 1'),
        (json.dumps({"format": 1, "filters": [], "extra": 1}), r"unknown keys \['extra'\]"),
        (
            json.dumps(
                {
                    "format": 1,
                    "filters": [{"direction": "output", "name": "ExcludeVars", "side": "server"}],
                }
            ),
            "run at the site",
        ),
        (
            json.dumps(
                {
                    "format": 1,
                    "filters": [
                        {"direction": "output", "name": "ExcludeVars", "clients": ["site-2"]}
                    ],
                }
            ),
            "drop 'clients'",
        ),
        (
            json.dumps(
                {
                    "format": 1,
                    "filters": [
                        {"direction": "output", "name": "SVTPrivacy", "args": {"fraction": 3}}
                    ],
                }
            ),
            "filter 0: .*fraction",
        ),
    ],
)
def test_a_bad_site_policy_is_refused_naming_the_file(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "privacy.json"
    path.write_text(content)
    with pytest.raises(FilterError, match=message) as caught:
        read_policy(path)
    assert str(path) in str(caught.value)


def test_a_job_whose_site_workflow_bypasses_filters_refuses_client_filters() -> None:
    recipe = numpy_recipe()
    recipe.job.client.site_workflow = {"target": "ember.site_workflows:SwarmSiteLink"}
    with pytest.raises(FilterError, match="SwarmSiteLink sends data where filters cannot apply"):
        recipe.add_client_output_filter(ExcludeVars(["w"]))
    recipe.add_server_input_filter(ExcludeVars(["w"]))  # the server's own: fine
