"""pytorch-swarm in SimEnv: sites aggregate peer to peer, the server only orchestrates."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pt_tiny import TinyNet
from safetensors.numpy import load_file

from ember import SimEnv
from ember.recipes.validation import RecipeArgumentError
from ember_pt.recipes import SwarmLearningRecipe

SCRIPTS = Path(__file__).parent / "scripts"
STEP = (1 * 1 + 2 * 2 + 3 * 3) / (1 + 2 + 3)  # site-k sends model + k with weight k


def run(tmp_path: Path, num_clients: int = 3, **kwargs: Any) -> Any:
    options: dict[str, Any] = {
        "name": "swarm-job",
        "min_clients": 2,
        "num_rounds": 3,
        "model": {"path": "pt_tiny.TinyNet", "args": {"width": 3}},
        "train_script": str(SCRIPTS / "pt_swarm_client.py"),
    }
    options.update(kwargs)
    env = SimEnv(num_clients=num_clients, workspace_root=str(tmp_path / "ws"), progress=False)
    return SwarmLearningRecipe(**options).execute(env)


def rounds(result: Path) -> list[dict[str, Any]]:
    lines = (result / "server" / "round_metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


@pytest.mark.parametrize("external", [False, True], ids=["in-process", "external-process"])
def test_sites_aggregate_and_the_last_aggregator_holds_the_model(
    tmp_path: Path, external: bool
) -> None:
    run_ = run(tmp_path, launch_external_process=external)
    assert run_.get_status() == "FINISHED:COMPLETED", run_.get_message()
    result = Path(run_.get_result())
    summary = json.loads((result / "server" / "metrics_summary.json").read_text())
    # round robin over the alive sites; the last aggregator holds the final model
    assert summary["aggregators"] == ["site-1", "site-2", "site-3"]
    assert summary["final_model"] == {"site": "site-3", "round": 2}
    initial = {k: v.numpy() for k, v in TinyNet(3).state_dict().items()}
    for site, rnd in (("site-1", 0), ("site-2", 1), ("site-3", 2)):
        saved = load_file(str(result / site / "models" / "global_model.safetensors"))
        assert set(saved) == set(initial)
        for key, value in initial.items():
            np.testing.assert_allclose(saved[key], value + STEP * (rnd + 1), rtol=1e-6)
    # the server never held a model: it saw metrics only
    assert not (result / "server" / "models").exists()
    numel = sum(v.size for v in initial.values())
    initial_sum = float(sum(v.astype(np.float64).sum() for v in initial.values()))
    for record in rounds(result):
        # every site trained on the same global model, pulled from the previous aggregator
        expected = initial_sum + STEP * record["round"] * numel
        assert sorted(record["site_metrics"]) == ["site-1", "site-2", "site-3"]
        for metrics in record["site_metrics"].values():
            assert metrics["received_sum"] == pytest.approx(expected, rel=1e-6)
        # metrics are averaged by the server with NUM_STEPS weights: (1+4+9)/6
        assert record["metrics"]["site"] == pytest.approx(STEP)


def test_random_aggregators_come_from_the_seed(tmp_path: Path) -> None:
    picked = []
    for i in range(2):
        run_ = run(tmp_path / str(i), aggregator_selection="random", seed=5, num_rounds=4)
        assert run_.get_status() == "FINISHED:COMPLETED", run_.get_message()
        summary = json.loads(
            (Path(run_.get_result()) / "server" / "metrics_summary.json").read_text()
        )
        picked.append(summary["aggregators"])
        final = summary["final_model"]["site"]
        assert final == summary["aggregators"][-1]
        saved = load_file(
            str(Path(run_.get_result()) / final / "models" / "global_model.safetensors")
        )
        expected = TinyNet(3).state_dict()["fc.bias"].numpy() + 4 * STEP
        np.testing.assert_allclose(saved["fc.bias"], expected, rtol=1e-6)
    assert picked[0] == picked[1]
    assert set(picked[0]) <= {"site-1", "site-2", "site-3"}


def test_a_script_that_sends_no_params_fails_the_job_naming_the_site(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    script = tmp_path / "app" / "no_params.py"
    script.write_text(
        "import ember.client as flare\n"
        "flare.init()\n"
        "while flare.is_running():\n"
        "    m = flare.receive()\n"
        "    if m is None:\n"
        "        break\n"
        "    flare.send(flare.FLModel(metrics={'a': 1.0}))\n"
    )
    run_ = run(tmp_path, train_script=str(script), min_clients=3)
    assert run_.get_status() == "FINISHED:EXECUTION_EXCEPTION"
    assert "must send FLModel(params=...)" in run_.get_message()
    assert "site-" in run_.get_message()


def test_a_dead_aggregator_s_round_runs_again_with_another_site(tmp_path: Path) -> None:
    app = tmp_path / "app"
    app.mkdir()
    script = (SCRIPTS / "pt_swarm_client.py").read_text()
    # site-1, the first round's aggregator, dies as its first task arrives
    script = script.replace(
        "    state = model.params\n",
        "    if k == 1:\n"
        "        raise RuntimeError('site-1 lost power')\n"
        "    state = model.params\n",
    )
    (app / "crash_client.py").write_text(script)
    run_ = run(tmp_path, train_script=str(app / "crash_client.py"), num_rounds=2)
    assert run_.get_status() == "FINISHED:COMPLETED", run_.get_message()
    result = Path(run_.get_result())
    summary = json.loads((result / "server" / "metrics_summary.json").read_text())
    assert summary["aggregators"] == ["site-3", "site-3"]  # round robin over site-2, site-3
    step = (2 * 2 + 3 * 3) / (2 + 3)
    saved = load_file(str(result / "site-3" / "models" / "global_model.safetensors"))
    expected = TinyNet(3).state_dict()["fc.weight"].numpy() + 2 * step
    np.testing.assert_allclose(saved["fc.weight"], expected, rtol=1e-6)
    first = rounds(result)[0]
    assert sorted(first["site_metrics"]) == ["site-2", "site-3"]
    log = (result / "server" / "log.txt").read_text()
    assert "aggregator site-1 failed" in log
    assert "site-1 lost power" in log


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"aggregator_selection": "best"}, "aggregator_selection"),
        ({"seed": -1}, "seed"),
        ({"model": None}, "initial model"),
        ({"num_rounds": 0}, "num_rounds"),
    ],
)
def test_argument_errors(kwargs: dict[str, Any], match: str) -> None:
    options: dict[str, Any] = {
        "min_clients": 2,
        "model": TinyNet(3),
        "train_script": str(SCRIPTS / "pt_swarm_client.py"),
    }
    options.update(kwargs)
    with pytest.raises(RecipeArgumentError, match=match):
        SwarmLearningRecipe(**options)


def test_a_swarm_resumed_after_two_rounds_ends_as_four_rounds_in_one_go(tmp_path: Path) -> None:
    def run_(rounds: int, root: str, resume: bool = False) -> Path:
        env = SimEnv(
            num_clients=3, workspace_root=str(tmp_path / root), progress=False, resume=resume
        )
        options: dict[str, Any] = {
            "name": "swarm-job",
            "min_clients": 2,
            "num_rounds": rounds,
            "model": {"path": "pt_tiny.TinyNet", "args": {"width": 3}},
            "train_script": str(SCRIPTS / "pt_swarm_client.py"),
        }
        outcome = SwarmLearningRecipe(**options).execute(env)
        assert outcome.get_status() == "FINISHED:COMPLETED", outcome.get_message()
        return Path(outcome.get_result())

    reference = run_(4, "ref")
    run_(2, "resumed")  # site-2 aggregated round 1: it holds the model round 2 starts from
    resumed = run_(4, "resumed", resume=True)  # every site's script and link start afresh
    assert "resumed from round 1" in (resumed / "server" / "log.txt").read_text()
    summary = json.loads((resumed / "server" / "metrics_summary.json").read_text())
    assert summary["aggregators"] == ["site-1", "site-2", "site-3", "site-1"]
    assert summary["final_model"] == {"site": "site-1", "round": 3}
    assert [r["round"] for r in rounds(resumed)] == [0, 1, 2, 3]
    for site in ("site-1", "site-2", "site-3"):
        saved = f"{site}/models/global_model.safetensors"
        assert (resumed / saved).read_bytes() == (reference / saved).read_bytes(), site
