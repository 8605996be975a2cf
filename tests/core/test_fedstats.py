"""Federated statistics: FedStatsRecipe's global statistics against numpy and pandas on the
pooled data, the privacy rules each site applies before it sends, and the result files.

The generators live in fixtures/stats/stats_sites.py; each site holds one part of the data,
so the tests rebuild the pooled data and compare.
"""

from __future__ import annotations

import json
import math
import re
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from ember import SimEnv
from ember.client.link import TransportLink
from ember.common.messages import TaskResult
from ember.errors import RecipeArgumentError
from ember.fobs import dumps
from ember.recipes import FedStatsRecipe
from ember.statistics import (
    GLOBAL,
    DataFrameStatistics,
    NumpyStatistics,
    PrivacyPolicy,
    Statistics,
    StatsContext,
    StatsPrivacyError,
    histogram_quantiles,
)

pytest.importorskip("sklearn")
pd = pytest.importorskip("pandas")

FIXTURES = Path(__file__).parent / "fixtures" / "stats"
EXAMPLE = Path(__file__).parents[2] / "examples" / "hello-tabular-stats" / "job.py"
SITES = ["site-1", "site-2", "site-3"]
COMPLETED = "FINISHED:COMPLETED"
FAILED = "FINISHED:EXECUTION_EXCEPTION"
RTOL = 1e-12
PERCENTILES = [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0]
CONFIGS: dict[str, Any] = {
    "count": {},
    "sum": {},
    "mean": {},
    "var": {},
    "stddev": {},
    "min": {},
    "max": {},
    "histogram": {"*": {"bins": 10}, "age": {"bins": 8, "range": [0, 100]}},
    "quantile": {"*": PERCENTILES},
}
SPARSE = {"site-3": {"s6": 5}}  # site-3 keeps 5 values of s6: below min_count=10


@pytest.fixture(scope="module")
def stats_sites() -> Iterator[ModuleType]:
    """The generators' module, importable as ``stats_sites`` (the recipe bundles it)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(FIXTURES))
        import stats_sites

        yield stats_sites


def run(recipe: FedStatsRecipe, root: Path, sites: list[str] = SITES) -> tuple[Any, Path]:
    run = recipe.execute(SimEnv(clients=sites, workspace_root=str(root), progress=False))
    return run, Path(run.get_result())


@pytest.fixture(scope="module")
def diabetes(stats_sites: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One SimEnv job over the diabetes data split across 3 sites, and the pooled data."""
    recipe = FedStatsRecipe(
        name="diabetes-stats",
        sites=SITES,
        statistic_configs=CONFIGS,
        stats_generator=stats_sites.DiabetesSites(SITES, sparse=SPARSE),
    )
    job, result = run(recipe, tmp_path_factory.mktemp("diabetes"))
    assert job.get_status() == COMPLETED, job.get_message()
    outputs = recipe.outputs(result)
    frames = stats_sites.site_frames(SITES, SPARSE)
    pooled = pd.concat(list(frames.values()), ignore_index=True)
    return {
        "result": json.loads(outputs.json.read_text()),
        "privacy": json.loads(outputs.privacy.read_text()),
        "outputs": outputs,
        "frames": frames,
        "pooled": pooled,
        # each feature's records at the sites that released it (site-3 withholds s6)
        "released": {
            f: pd.concat([x[f] for x in frames.values() if x[f].count() >= 10]).dropna()
            for f in pooled.columns
        },
    }


# -- exactness


def test_global_count_sum_mean_var_and_stddev_equal_pandas_on_the_pooled_data(
    diabetes: dict[str, Any],
) -> None:
    result, pooled = diabetes["result"], diabetes["pooled"]
    assert list(result) == list(pooled.columns)
    for feature in pooled.columns:
        column = diabetes["released"][feature]
        stats = result[feature]
        assert stats["count"][GLOBAL]["all"] == len(column)
        np.testing.assert_allclose(stats["sum"][GLOBAL]["all"], np.sum(column), rtol=RTOL)
        np.testing.assert_allclose(stats["mean"][GLOBAL]["all"], column.mean(), rtol=RTOL)
        np.testing.assert_allclose(stats["var"][GLOBAL]["all"], column.var(), rtol=RTOL)
        np.testing.assert_allclose(stats["stddev"][GLOBAL]["all"], column.std(), rtol=RTOL)
        np.testing.assert_allclose(
            stats["var"][GLOBAL]["all"], np.var(column.to_numpy(), ddof=1), rtol=RTOL
        )


def test_each_sites_count_sum_mean_and_stddev_are_its_own_data(diabetes: dict[str, Any]) -> None:
    result = diabetes["result"]
    for site, frame in diabetes["frames"].items():
        for feature in frame.columns:
            column = frame[feature].dropna()
            if len(column) < 10:
                continue
            assert result[feature]["count"][site]["all"] == len(column)
            np.testing.assert_allclose(
                result[feature]["mean"][site]["all"], column.mean(), rtol=RTOL
            )
            np.testing.assert_allclose(
                result[feature]["stddev"][site]["all"], column.std(), rtol=RTOL
            )


def test_global_histograms_equal_numpy_histogram_of_the_pooled_data(
    diabetes: dict[str, Any],
) -> None:
    result, pooled = diabetes["result"], diabetes["pooled"]
    for feature in pooled.columns:
        bins = result[feature]["histogram"][GLOBAL]["all"]
        low, high = bins[0][0], bins[-1][1]
        column = diabetes["released"][feature]
        expected, edges = np.histogram(column, bins=len(bins), range=(low, high))
        assert [b[2] for b in bins] == expected.tolist(), feature
        np.testing.assert_allclose([b[0] for b in bins], edges[:-1], rtol=RTOL)
        # every record is counted: the range came from noised extremes outside the data
        assert sum(b[2] for b in bins) == len(column)
    age = result["age"]["histogram"][GLOBAL]["all"]
    assert len(age) == 8
    assert (age[0][0], age[-1][1]) == (0.0, 100.0)  # the configured range
    for site in SITES:  # the sites' histograms share the global edges and add up to it
        assert [b[:2] for b in result["bmi"]["histogram"][site]["all"]] == [
            b[:2] for b in result["bmi"]["histogram"][GLOBAL]["all"]
        ]
    assert [b[2] for b in result["bmi"]["histogram"][GLOBAL]["all"]] == [
        sum(c)
        for c in zip(
            *[[b[2] for b in result["bmi"]["histogram"][s]["all"]] for s in SITES], strict=True
        )
    ]


def test_quantiles_are_within_one_bin_of_numpy_quantile_on_the_pooled_data(
    diabetes: dict[str, Any],
) -> None:
    """The stated tolerance: one bin width, plus half the gap between the two records numpy
    interpolates between (0 where they are equal; tiny for dense data)."""
    result, pooled = diabetes["result"], diabetes["pooled"]
    for feature in pooled.columns:
        values = np.sort(diabetes["released"][feature].to_numpy())
        bins = result[feature]["histogram"][GLOBAL]["all"]
        width = bins[0][1] - bins[0][0]
        got = result[feature]["quantile"][GLOBAL]["all"]
        assert sorted(float(p) for p in got) == PERCENTILES
        for p in PERCENTILES:
            h = p * (len(values) - 1)
            gap = values[math.ceil(h)] - values[math.floor(h)]
            expected = np.quantile(values, p)
            assert abs(got[str(p)] - expected) <= width + gap / 2 + 1e-9, (feature, p)


def test_quantiles_from_a_histogram_stay_within_the_stated_tolerance_on_random_data() -> None:
    rng = np.random.default_rng(7)
    for _ in range(200):
        values = np.sort(rng.gamma(rng.uniform(0.5, 4), 10, size=int(rng.integers(20, 500))))
        bins = int(rng.integers(2, 40))
        counts, edges = np.histogram(values, bins=bins, range=(values[0] - 1, values[-1] + 1))
        got = histogram_quantiles(counts, edges, PERCENTILES)
        for p in PERCENTILES:
            h = p * (len(values) - 1)
            gap = values[math.ceil(h)] - values[math.floor(h)]
            assert abs(got[p] - np.quantile(values, p)) <= edges[1] - edges[0] + gap / 2 + 1e-9


# -- privacy


def test_noised_min_and_max_lie_outside_the_true_range(diabetes: dict[str, Any]) -> None:
    result = diabetes["result"]
    for site, frame in diabetes["frames"].items():
        for feature in frame.columns:
            column = frame[feature].dropna()
            if len(column) < 10:
                assert site not in result[feature]["min"]
                continue
            assert result[feature]["min"][site]["all"] < column.min()
            assert result[feature]["max"][site]["all"] > column.max()
    for feature, column in diabetes["released"].items():
        assert result[feature]["min"][GLOBAL]["all"] < column.min()
        assert result[feature]["max"][GLOBAL]["all"] > column.max()


def test_noised_extremes_are_outside_for_negative_zero_and_constant_values() -> None:
    from ember.fedstats.privacy import noised_extremes

    rng = np.random.default_rng(0)
    policy = PrivacyPolicy()
    for low, high in [(-5.0, -1.0), (0.0, 0.0), (0.0, 3.0), (-2.0, 7.5), (1e-9, 1e-9), (4.0, 4.0)]:
        for _ in range(100):
            noised_low, noised_high = noised_extremes(low, high, policy, rng)
            assert noised_low < low
            assert noised_high > high


def test_a_site_below_min_count_withholds_the_feature_and_the_result_says_which(
    diabetes: dict[str, Any],
) -> None:
    result, privacy, pooled = diabetes["result"], diabetes["privacy"], diabetes["pooled"]
    s6 = result["s6"]
    for statistic in ("count", "sum", "mean", "var", "stddev", "min", "max", "histogram"):
        assert "site-3" not in s6[statistic], statistic
        assert {"site-1", "site-2", GLOBAL} <= set(s6[statistic])
    assert privacy["withheld"] == [
        {
            "site": "site-3",
            "dataset": "all",
            "feature": "s6",
            "statistic": "*",
            "reason": "fewer than min_count=10 records",
        }
    ]
    partial = [p for p in privacy["partial_global"] if p["feature"] == "s6"]
    assert {p["statistic"] for p in partial} >= {"count", "mean", "histogram", "quantile"}
    assert all(p["sites"] == ["site-1", "site-2"] and p["of"] == SITES for p in partial)
    kept = pd.concat([diabetes["frames"][s]["s6"] for s in ("site-1", "site-2")])
    assert s6["count"][GLOBAL]["all"] == len(kept) == pooled["s6"].count() - 5
    np.testing.assert_allclose(s6["mean"][GLOBAL]["all"], kept.mean(), rtol=RTOL)
    np.testing.assert_allclose(s6["stddev"][GLOBAL]["all"], kept.std(), rtol=RTOL)


def numbers_in(tree: Any) -> Iterator[float]:
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from numbers_in(key)
            yield from numbers_in(value)
    elif isinstance(tree, list | tuple):
        for value in tree:
            yield from numbers_in(value)
    elif isinstance(tree, int | float) and not isinstance(tree, bool):
        yield float(tree)


def test_nothing_a_site_sends_holds_a_raw_record_or_a_raw_extreme(
    stats_sites: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[TaskResult] = []
    original = TransportLink.submit_result

    def recording(self: TransportLink, result: TaskResult) -> bool:
        sent.append(result)
        return original(self, result)

    monkeypatch.setattr(TransportLink, "submit_result", recording)
    recipe = FedStatsRecipe(
        name="wire",
        sites=SITES,
        statistic_configs={
            **CONFIGS,
            "failure_count": {},
            "histogram": {"*": {"bins": 12}},
            "quantile": {"x": [0.5]},
        },
        stats_generator=stats_sites.GaussianSites(rows=300),
    )
    job, _ = run(recipe, tmp_path)
    assert job.get_status() == COMPLETED, job.get_message()
    assert sorted(r.site for r in sent) == sorted(SITES * 2)  # two passes, one answer each
    for result in sent:
        wire = dumps(result)  # the bytes that travel
        data = stats_sites.gaussian_columns(result.site, 300)
        raw = {float(v) for columns in data.values() for values in columns.values() for v in values}
        extremes = {
            float(f(values))
            for columns in data.values()
            for values in columns.values()
            for f in (np.min, np.max)
        }
        assert extremes <= raw
        for value in raw:
            for packed in (struct.pack(">d", value), struct.pack("<d", value)):
                assert packed not in wire, (result.site, value)
        assert raw.isdisjoint(numbers_in(result.data.meta if result.data else {}))
        # the search finds what is there: the site's sum of x travels as a float64
        answer = result.data.meta["fed_stats_answer"] if result.data else {}
        if answer["pass"] == "stats_1st":
            total = answer["statistics"]["sum"]["train"]["x"]
            assert total == pytest.approx(float(np.sum(data["train"]["x"])), rel=RTOL)
            assert struct.pack(">d", total) in wire


def test_a_site_policy_stricter_than_the_job_wins_and_a_looser_one_does_not(
    stats_sites: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    # site-1 would allow anything: the job's min_count=150 still withholds its 100-row test set
    (policies / "site-1.json").write_text(json.dumps({"min_count": 1, "max_bins_percent": 100}))
    # site-2 asks for more records than it has, and fewer bins
    (policies / "site-2.json").write_text(json.dumps({"format": 1, "min_count": 1000}))
    (policies / "site-3.json").write_text(json.dumps({"max_bins_percent": 2}))
    monkeypatch.setenv("EMBER_STATS_POLICY_DIR", str(policies))
    recipe = FedStatsRecipe(
        name="policy",
        sites=SITES,
        statistic_configs={"count": {}, "mean": {}, "histogram": {"*": {"bins": 10}}},
        stats_generator=stats_sites.GaussianSites(rows=300),
        min_count=150,
    )
    job, result = run(recipe, tmp_path / "ws")
    assert job.get_status() == COMPLETED, job.get_message()
    stats = json.loads(recipe.outputs(result).json.read_text())
    privacy = json.loads(recipe.outputs(result).privacy.read_text())
    assert privacy["policies"]["site-1"]["min_count"] == 150  # the job's, not the looser 1
    assert privacy["policies"]["site-1"]["max_bins_percent"] == 10
    assert privacy["policies"]["site-2"]["min_count"] == 1000
    assert privacy["policies"]["site-3"]["max_bins_percent"] == 2
    withheld = {
        (w["site"], w["dataset"], w["feature"], w["statistic"]) for w in privacy["withheld"]
    }
    assert ("site-1", "test", "x", "*") in withheld
    assert {("site-2", d, f, "*") for d, f in [("train", "x"), ("train", "y"), ("test", "x")]} <= (
        withheld
    )
    # site-3: 10 bins are not fewer than 2% of 300 records, so its histograms stay home
    assert ("site-3", "train", "x", "histogram") in withheld
    assert set(stats["x"]["count"]) == {"site-1", "site-3", GLOBAL}
    assert ("site-3", "test", "x", "*") in withheld  # 100 records < the job's min_count=150
    assert stats["x"]["count"][GLOBAL] == {"train": 600}
    assert set(stats["x"]["histogram"]) == {"site-1", GLOBAL}
    x = np.concatenate(
        [stats_sites.gaussian_columns(s)["train"]["x"] for s in ("site-1", "site-3")]
    )
    np.testing.assert_allclose(stats["x"]["mean"][GLOBAL]["train"], x.mean(), rtol=RTOL)


def test_a_malformed_site_policy_fails_the_job_naming_the_file(
    stats_sites: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "site-2.json").write_text(json.dumps({"min_cout": 50}))
    monkeypatch.setenv("EMBER_STATS_POLICY_DIR", str(tmp_path))
    recipe = FedStatsRecipe(
        name="bad-policy",
        sites=SITES,
        statistic_configs={"count": {}},
        stats_generator=stats_sites.GaussianSites(rows=50),
    )
    job, _ = run(recipe, tmp_path / "ws")
    assert job.get_status() == FAILED
    assert "unknown keys ['min_cout']" in job.get_message()
    assert str(tmp_path / "site-2.json") in job.get_message()


def test_site_policies_merge_to_the_strictest_limits(tmp_path: Path) -> None:
    from ember.fedstats.privacy import effective_policy, policy_files

    job = PrivacyPolicy(min_count=10, min_noise_level=0.1, max_noise_level=0.3, max_bins_percent=10)
    loose = tmp_path / "loose.json"
    loose.write_text(json.dumps({"min_count": 2, "max_bins_percent": 50, "max_noise_level": 0.2}))
    strict = tmp_path / "strict.json"
    strict.write_text(json.dumps({"min_noise_level": 0.5, "laplace_epsilon": 2.0}))
    merged = effective_policy(job, [loose, strict])
    assert merged == PrivacyPolicy(
        min_count=10,
        min_noise_level=0.5,
        max_noise_level=0.5,
        max_bins_percent=10,
        laplace_epsilon=2.0,
    )
    assert effective_policy(PrivacyPolicy(laplace_epsilon=0.5), [strict]).laplace_epsilon == 0.5
    # where a site looks: its kit's local/ folder, then $EMBER_STATS_POLICY_DIR/<site>.json
    kit = tmp_path / "site-1"
    (kit / "startup").mkdir(parents=True)
    (kit / "startup" / "kit.json").write_text("{}")
    (kit / "local").mkdir()
    (kit / "local" / "stats_policy.json").write_text("{}")
    workspace = kit / "jobs" / "abc" / "workspace"
    workspace.mkdir(parents=True)
    (tmp_path / "site-1.json").write_text("{}")
    assert policy_files("site-1", workspace, {"EMBER_STATS_POLICY_DIR": str(tmp_path)}) == [
        kit / "local" / "stats_policy.json",
        tmp_path / "site-1.json",
    ]
    assert policy_files("site-1", tmp_path / "sim" / "site-1", {}) == []
    for bad, message in [
        ({"min_count": 0}, "min_count must be an integer >= 1"),
        ({"max_bins_percent": 0}, r"max_bins_percent must be a number in \(0, 100\]"),
        ({"min_noise_level": 0.0}, "never be the raw one"),
        ({"laplace_epsilon": -1}, "laplace_epsilon must be a number > 0"),
        ({"format": 2}, "format 2 is not supported"),
    ]:
        (tmp_path / "bad.json").write_text(json.dumps(bad))
        with pytest.raises(StatsPrivacyError, match=message):
            effective_policy(job, [tmp_path / "bad.json"])


def test_laplace_noise_covers_counts_and_histograms_and_withholds_the_rest(
    stats_sites: ModuleType, tmp_path: Path
) -> None:
    from ember.fedstats.site import SiteAnswerer

    generator = stats_sites.GaussianSites(rows=300)
    generator.initialize(StatsContext("site-1", "job", tmp_path))
    answerer = SiteAnswerer(generator, PrivacyPolicy(laplace_epsilon=0.5), np.random.default_rng(1))
    configs = {"count": {}, "mean": {}, "histogram": {"*": {"bins": 5, "range": [0, 100]}}}
    first = answerer.answer({"pass": "stats_1st", "statistic_configs": configs})
    count = first["statistics"]["count"]["train"]["x"]
    assert isinstance(count, float)
    assert count != 300
    assert abs(count - 300) < 40
    assert "mean" not in first["statistics"]
    assert "sum" not in first["statistics"]
    assert {(w["feature"], w["statistic"]) for w in first["withheld"]} >= {
        ("x", "sum"),
        ("x", "mean"),
    }
    second = answerer.answer(
        {
            "pass": "stats_2nd",
            "global": {},
            "histogram": {"train": {"x": {"bins": 5, "range": [0, 100]}}},
        }
    )
    noisy = second["statistics"]["histogram"]["train"]["x"]
    exact, _ = np.histogram(generator._values("train", "x"), bins=5, range=(0, 100))
    assert len(noisy) == 5
    assert all(v >= 0 for v in noisy)
    assert noisy != exact.tolist()
    assert np.abs(np.asarray(noisy) - exact).max() < 40


# -- the result files


def test_the_result_is_nvflare_shaped_json_with_a_png_report_beside_it(
    diabetes: dict[str, Any],
) -> None:
    result, outputs = diabetes["result"], diabetes["outputs"]
    assert outputs.json.name == "stats.json"
    assert outputs.json.parent.name == "statistics"
    assert outputs.json.parent.parent.name == "server"
    for feature, stats in result.items():
        assert list(stats) == [
            "count",
            "sum",
            "mean",
            "stddev",
            "var",
            "min",
            "max",
            "histogram",
            "quantile",
        ], feature
        for by_site in stats.values():
            assert list(by_site)[-1] == GLOBAL
            assert all(set(v) == {"all"} for v in by_site.values())
    assert outputs.report.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert outputs.report.stat().st_size > 20_000
    assert outputs.privacy.name == "stats.privacy.json"
    summary = json.loads((outputs.json.parents[1] / "metrics_summary.json").read_text())
    assert summary["statistics"] == str(outputs.json)
    assert summary["report"] == str(outputs.report)


def test_quantiles_alone_get_the_finest_histogram_every_site_allows(
    stats_sites: ModuleType, tmp_path: Path
) -> None:
    recipe = FedStatsRecipe(
        name="quantiles",
        sites=SITES[:2],
        statistic_configs={"quantile": {"y": [0.5]}},
        stats_generator=stats_sites.GaussianSites(rows=300),
        max_bins_percent=5,
    )
    job, result = run(recipe, tmp_path, SITES[:2])
    assert job.get_status() == COMPLETED, job.get_message()
    stats = json.loads(recipe.outputs(result).json.read_text())
    privacy = json.loads(recipe.outputs(result).privacy.read_text())
    assert list(stats) == ["x", "y"]
    assert list(stats["y"]) == ["count", "histogram", "quantile"]
    assert len(stats["y"]["histogram"][GLOBAL]["train"]) == 14  # 14 < 5% of 300 records
    assert [h["for"] for h in privacy["histograms"] if h["feature"] == "y"] == ["quantile"]
    y = np.concatenate([stats_sites.gaussian_columns(s)["train"]["y"] for s in SITES[:2]])
    width = np.diff(stats["y"]["histogram"][GLOBAL]["train"][0][:2])[0]
    assert abs(stats["y"]["quantile"][GLOBAL]["train"]["0.5"] - np.median(y)) <= width


# -- recipe arguments


class NoHistogram(Statistics):
    def features(self) -> dict[str, Any]:
        return {}

    def count(self, dataset_name: str, feature_name: str) -> int:
        return 0

    def sum(self, dataset_name: str, feature_name: str) -> float:
        return 0.0


class HoldsAFrame(DataFrameStatistics):
    def __init__(self, frame: Any) -> None:
        super().__init__()
        self.frame = frame

    def load_data(self, ctx: StatsContext) -> dict[str, Any]:
        return {"all": self.frame}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"statistic_configs": {"mena": {}}}, "unknown statistic 'mena'; did you mean 'mean'"),
        ({"statistic_configs": {}}, "statistic_configs must be a non-empty dict"),
        ({"statistic_configs": {"mean": {"bins": 3}}}, r"statistic_configs\['mean'\] takes no"),
        (
            {"statistic_configs": {"histogram": {"*": {"bins": 0}}}},
            r"\['bins'\] must be an integer >= 1",
        ),
        ({"statistic_configs": {"histogram": {"*": {"bins": 5, "range": [3, 1]}}}}, "low < high"),
        ({"statistic_configs": {"histogram": {"*": {"bin": 5}}}}, r"unknown keys \['bin'\]"),
        ({"statistic_configs": {"histogram": {}}}, "must map features"),
        ({"statistic_configs": {"quantile": {"*": [50]}}}, "write 0.5 for the 50th percentile"),
        ({"statistic_configs": {"quantile": {"*": []}}}, "non-empty list of percentiles"),
        ({"statistic_configs": {"quantile": [0.5]}}, "must map features"),
        ({"min_count": 0}, "min_count must be an integer >= 1"),
        ({"min_noise_level": 0}, r"min_noise_level must be a number in \(0, 1\]"),
        ({"min_noise_level": 0.5, "max_noise_level": 0.2}, "above max_noise_level"),
        ({"max_bins_percent": 150}, r"max_bins_percent must be a number in \(0, 100\]"),
        ({"laplace_epsilon": 0}, "laplace_epsilon must be a number > 0"),
        ({"laplace_epsilon": 1.0}, "mean have no bounded sensitivity"),
        (
            {"laplace_epsilon": 1.0, "statistic_configs": {"histogram": {"*": {"bins": 4}}}},
            "histograms need a configured range",
        ),
        ({"sites": []}, "sites must be a non-empty list"),
        ({"sites": ["a", "a"]}, "duplicate"),
        ({"stats_output_path": "stats.csv"}, "must be a path ending in .json"),
        ({"stats_output_path": "../stats.json"}, "no '..'"),
        ({"name": "a b"}, "name must start with a letter or digit"),
        ({"stats_generator": object()}, "must be an instance of an ember.statistics.Statistics"),
        ({"stats_generator": {"path": "nowhere.Gen"}}, "cannot be imported here"),
        ({"stats_generator": {"path": "json.JSONDecoder"}}, "not a subclass of"),
        ({"stats_generator": {"klass": "x.Y"}}, r"unexpected keys \['klass'\]"),
        (
            {
                "stats_generator": NoHistogram(),
                "statistic_configs": {"histogram": {"*": {"bins": 3}}},
            },
            r"does not implement: min_value\(\), max_value\(\), histogram\(\)",
        ),
    ],
)
def test_bad_statistic_names_and_parameters_give_clear_errors(
    change: dict[str, Any], message: str
) -> None:
    arguments: dict[str, Any] = {
        "sites": SITES,
        "statistic_configs": {"count": {}, "mean": {}},
        "stats_generator": NoHistogram(),
        **change,
    }
    with pytest.raises(RecipeArgumentError, match=message):
        FedStatsRecipe(**arguments)


def test_a_generator_whose_arguments_cannot_travel_is_refused() -> None:
    with pytest.raises(RecipeArgumentError, match="argument frame= is a DataFrame"):
        FedStatsRecipe(
            sites=SITES,
            statistic_configs={"count": {}},
            stats_generator=HoldsAFrame(pd.DataFrame({"a": [1.0]})),
        )


def test_the_recipe_carries_the_generator_by_class_and_arguments(
    stats_sites: ModuleType, tmp_path: Path
) -> None:
    recipe = FedStatsRecipe(
        sites=SITES[:2],
        statistic_configs={"count": {}},
        stats_generator=stats_sites.DiabetesSites(SITES[:2], sparse={"site-1": {"bmi": 3}}),
    )
    job = recipe.export(tmp_path / "job")
    settings = json.loads((job / "app" / "fedstats_site.json").read_text())
    assert settings["generator"] == {
        "path": "stats_sites.DiabetesSites",
        "args": {"sites": ["site-1", "site-2"], "sparse": {"site-1": {"bmi": 3}}},
    }
    assert settings["privacy"]["min_count"] == 10
    assert (job / "app" / "stats_sites.py").read_bytes() == (
        FIXTURES / "stats_sites.py"
    ).read_bytes()
    script = (job / "app" / "fedstats_site.py").read_bytes()
    assert (
        script
        == FedStatsRecipe(
            sites=["x"], statistic_configs={"count": {}}, stats_generator=NoHistogram()
        ).files["app/fedstats_site.py"]
    )
    workflow = json.loads((job / "job.json").read_text())["workflows"][0]
    assert workflow["target"] == "ember.statistics:StatsController"


def test_the_recipe_is_registered_as_numpy_fedstats(fresh_plugins: None) -> None:
    from ember.plugins import get_registry

    entry = get_registry().get("recipe", "numpy-fedstats")
    assert entry.item.load() is FedStatsRecipe
    import inspect

    names = list(inspect.signature(FedStatsRecipe).parameters)
    assert names == [
        "name",
        "stats_output_path",
        "sites",
        "statistic_configs",
        "stats_generator",
        "min_count",
        "min_noise_level",
        "max_noise_level",
        "max_bins_percent",
        "laplace_epsilon",
    ]


def test_numpy_statistics_reads_nan_as_missing(tmp_path: Path) -> None:
    class Arrays(NumpyStatistics):
        def load_data(self, ctx: StatsContext) -> dict[str, Any]:
            return {"d": {"a": [1.0, np.nan, 3.0], "b": np.array([1, 2, 3]), "s": ["x", "y", "z"]}}

    generator = Arrays()
    generator.initialize(StatsContext("site-1", "job", tmp_path))
    assert [f.feature_name for f in generator.features()["d"]] == ["a", "b"]
    assert generator.count("d", "a") == 2
    assert generator.failure_count("d", "a") == 1
    assert generator.mean("d", "a") == 2.0


# -- the example and PocEnv


def test_hello_tabular_stats_prints_the_global_statistics_and_its_files(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), "--workspace-root", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    json_path = tmp_path / "hello-tabular-stats" / "server" / "statistics" / "diabetes_stats.json"
    assert f"statistics: {json_path}" in out
    assert f"report: {json_path.with_suffix('.png')}" in out
    assert json_path.is_file()
    assert json_path.with_suffix(".png").is_file()
    result = json.loads(json_path.read_text())
    assert result["bmi"]["count"][GLOBAL]["diabetes"] == 442
    bmi = re.search(r"^bmi +442 +([\d.]+) +([\d.]+) ", out, re.MULTILINE)
    assert bmi, out
    assert float(bmi[1]) == pytest.approx(result["bmi"]["mean"][GLOBAL]["diabetes"], abs=5e-4)


@pytest.fixture(scope="module")
def poc2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from ember.envs.poc import start_workspace, stop_workspace
    from ember.system.poc import prepare

    ws = prepare(tmp_path_factory.mktemp("poc") / "ws", num_clients=2)
    # site-2's operator allows fewer bins than the job asks for, in its kit's local/ folder
    (ws.root / "site-2" / "local").mkdir()
    (ws.root / "site-2" / "local" / "stats_policy.json").write_text(
        json.dumps({"max_bins_percent": 2})
    )
    start_workspace(ws)
    try:
        yield ws
    finally:
        stop_workspace(ws)


def test_fedstats_runs_in_pocenv_with_the_sites_kit_policy(
    stats_sites: ModuleType, poc2: Any
) -> None:
    from ember.envs.poc import PocEnv

    sites = ["site-1", "site-2"]
    recipe = FedStatsRecipe(
        name="poc-stats",
        sites=sites,
        statistic_configs={"count": {}, "mean": {}, "stddev": {}, "histogram": {"*": {"bins": 10}}},
        stats_generator=stats_sites.DiabetesSites(sites),
    )
    job = PocEnv(clients=sites, workspace=poc2.root).deploy(recipe)
    result = Path(job.get_result(timeout=240))
    assert job.get_status() == COMPLETED, job.get_message()
    stats = json.loads(recipe.outputs(result).json.read_text())
    privacy = json.loads(recipe.outputs(result).privacy.read_text())
    pooled = pd.concat(list(stats_sites.site_frames(sites).values()), ignore_index=True)
    for feature in pooled.columns:
        assert stats[feature]["count"][GLOBAL]["all"] == pooled[feature].count()
        np.testing.assert_allclose(
            stats[feature]["mean"][GLOBAL]["all"], pooled[feature].mean(), rtol=RTOL
        )
        np.testing.assert_allclose(
            stats[feature]["stddev"][GLOBAL]["all"], pooled[feature].std(), rtol=RTOL
        )
        # 10 bins are not fewer than 2% of site-2's 221 records: its histograms stayed home
        assert set(stats[feature]["histogram"]) == {"site-1", GLOBAL}
    assert privacy["policies"]["site-2"]["max_bins_percent"] == 2
    assert privacy["policies"]["site-1"]["max_bins_percent"] == 10
    assert recipe.outputs(result).report.is_file()
