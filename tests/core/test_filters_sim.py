"""Filters in running jobs (SimEnv): what a client output filter removes never reaches the
server, in process and for external scripts; a site policy a job cannot undo; the epsilon a
privacy filter spends, per round and in the job's summary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ember.filters import ExcludeVars, GaussianPrivacy, RDPAccountant
from support.filters import MODEL, arrivals, dict_recipe, saved_model
from support.filters import wire_filters as load_wire_filters
from support.sim import round_records, run_sim

COMPLETED = "FINISHED:COMPLETED"


@pytest.fixture
def wire_filters() -> Any:
    return load_wire_filters()


@pytest.mark.parametrize("external", [False, True])
def test_a_variable_excluded_at_the_sites_never_reaches_the_server(
    tmp_path: Path, wire_filters: Any, external: bool
) -> None:
    job = dict_recipe(launch_external_process=external)
    job.add_client_output_filter(ExcludeVars(["private.stats"]))
    seen = tmp_path / "arrivals.jsonl"
    job.add_server_input_filter(wire_filters.RecordArrivals(str(seen)))
    run = run_sim(job, tmp_path)
    assert run.get_status() == COMPLETED, run.get_message()
    got = arrivals(seen)
    assert sorted((a["site"], a["task"]) for a in got) == [
        ("site-1", "train"),
        ("site-1", "train"),
        ("site-2", "train"),
        ("site-2", "train"),
    ]
    assert all(a["names"] == ["w"] for a in got)
    model = saved_model(run.get_result())
    np.testing.assert_array_equal(model["w"], MODEL["w"] + 2)
    # no site sent it: it keeps its global value, and the sites get it again each round
    np.testing.assert_array_equal(model["private.stats"], MODEL["private.stats"])


def test_a_variable_every_site_policy_removes_fails_the_job_naming_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    policy = {
        "format": 1,
        "filters": [
            {"direction": "output", "name": "ExcludeVars", "args": {"exclude_vars": ["w"]}}
        ],
    }
    for site in ("site-1", "site-2"):
        (policies / f"{site}.json").write_text(json.dumps(policy))
    monkeypatch.setenv("EMBER_PRIVACY_POLICY_DIR", str(policies))
    run = run_sim(dict_recipe(num_rounds=1), tmp_path / "plain")
    # the server cannot know a site's policy: it freed the global 'w' and says what to do
    assert run.get_status() == "FINISHED:EXECUTION_EXCEPTION"
    assert "no site sent 'w' back" in run.get_message()
    assert "exclude_vars" in run.get_message()
    run = run_sim(dict_recipe(num_rounds=2, exclude_vars="^w$"), tmp_path / "kept")
    assert run.get_status() == COMPLETED, run.get_message()
    model = saved_model(run.get_result())
    np.testing.assert_array_equal(model["w"], MODEL["w"])
    np.testing.assert_array_equal(model["private.stats"], MODEL["private.stats"] + 2)


def test_a_filter_for_some_sites_leaves_the_others_alone(tmp_path: Path, wire_filters: Any) -> None:
    job = dict_recipe(num_rounds=1)
    job.add_client_output_filter(ExcludeVars(["private.stats"]), clients=["site-2"])
    seen = tmp_path / "arrivals.jsonl"
    job.add_server_input_filter(wire_filters.RecordArrivals(str(seen)))
    run = run_sim(job, tmp_path)
    assert run.get_status() == COMPLETED, run.get_message()
    names = {a["site"]: a["names"] for a in arrivals(seen)}
    assert names == {"site-1": ["private.stats", "w"], "site-2": ["w"]}


def test_a_site_policy_excludes_what_the_jobs_own_filters_put_back(
    tmp_path: Path, wire_filters: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    policy = {
        "format": 1,
        "filters": [
            {"direction": "output", "name": "ExcludeVars", "args": {"exclude_vars": "^private\\."}}
        ],
    }
    (policies / "site-1.json").write_text(json.dumps(policy))
    monkeypatch.setenv("EMBER_PRIVACY_POLICY_DIR", str(policies))
    job = dict_recipe(num_rounds=1)
    job.add_client_output_filter(wire_filters.PutBack("private.stats"))  # tries to undo it
    seen = tmp_path / "arrivals.jsonl"
    job.add_server_input_filter(wire_filters.RecordArrivals(str(seen)))
    run = run_sim(job, tmp_path)
    assert run.get_status() == COMPLETED, run.get_message()
    names = {a["site"]: a["names"] for a in arrivals(seen)}
    # site-1's policy runs after the job's filter, closest to the wire; site-2 has none
    assert names == {"site-1": ["w"], "site-2": ["private.stats", "w"]}


def test_a_site_whose_policy_cannot_apply_to_the_jobs_workflow_refuses_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    policy = {"format": 1, "filters": [{"direction": "output", "name": "ExcludeVars"}]}
    (policies / "site-2.json").write_text(json.dumps(policy))
    monkeypatch.setenv("EMBER_PRIVACY_POLICY_DIR", str(policies))
    job = dict_recipe(num_rounds=1)
    job.job.client.site_workflow = {"target": "ember.site_workflows:TunnelSiteLink"}
    run = run_sim(job, tmp_path)
    assert run.get_status() == "FINISHED:EXECUTION_EXCEPTION"
    assert "site-2 refuses the job" in run.get_message()
    assert "TunnelSiteLink" in run.get_message()


def test_gaussian_privacy_reports_the_epsilon_spent_per_round_and_in_the_summary(
    tmp_path: Path,
) -> None:
    job = dict_recipe(num_rounds=3)
    job.add_client_output_filter(GaussianPrivacy(noise_multiplier=1.2, clip_norm=0.5, seed=5))
    run = run_sim(job, tmp_path)
    assert run.get_status() == COMPLETED, run.get_message()
    result = Path(run.get_result())
    expected = []
    for rounds in (1, 2, 3):
        accountant = RDPAccountant()
        accountant.step(noise_multiplier=1.2, sample_rate=1.0, steps=rounds)
        expected.append(accountant.get_epsilon(1e-5))
    records = round_records(result)
    for record, epsilon in zip(records, expected, strict=True):
        for site in ("site-1", "site-2"):
            assert record["site_metrics"][site]["dp_epsilon"] == pytest.approx(epsilon)
    summary = json.loads((result / "server" / "metrics_summary.json").read_text())
    assert summary["privacy_spent"]["dp_epsilon"] == {
        "by_site": {"site-1": pytest.approx(expected[-1]), "site-2": pytest.approx(expected[-1])},
        "max": pytest.approx(expected[-1]),
    }
    # the update of each site was clipped to norm 0.5 and noised: the model moved, not by 1s
    model = saved_model(result)
    assert not np.allclose(model["w"], MODEL["w"] + 3)
