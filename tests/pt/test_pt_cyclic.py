"""pytorch-cyclic jobs in SimEnv: the model's path from site to site, skips and failures."""

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
from ember_pt.recipes import CyclicRecipe

SCRIPTS = Path(__file__).parent / "scripts"
SCRIPT = str(SCRIPTS / "pt_cyclic_add.py")
SITES = ["site-1", "site-2", "site-3"]
INDEX = {"site-1": 1, "site-2": 2, "site-3": 3}
MODEL = {"path": "pt_tiny.TinyNet", "args": {"width": 3}}
INITIAL = {k: v.numpy() for k, v in TinyNet(3).state_dict().items()}
NUM_VALUES = sum(v.size for v in INITIAL.values())  # adding k adds k * NUM_VALUES to the sum
INITIAL_SUM = float(sum(v.sum() for v in INITIAL.values()))


def run(tmp_path: Path, **kwargs: Any) -> Any:
    options: dict[str, Any] = {
        "name": "cyclic-job",
        "min_clients": 2,
        "num_rounds": 2,
        "model": MODEL,
        "train_script": SCRIPT,
    }
    options.update(kwargs)
    env = SimEnv(num_clients=3, workspace_root=str(tmp_path / "ws"), progress=False)
    return CyclicRecipe(**options).execute(env)


def records(result: Path) -> list[dict[str, Any]]:
    lines = (result / "server" / "round_metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def summary(result: Path) -> dict[str, Any]:
    return json.loads((result / "server" / "metrics_summary.json").read_text())  # type: ignore[no-any-return]


def check_chain(result: Path, trained: list[list[str]], orders: list[list[str]]) -> None:
    """Each round's sites trained in ``trained`` order, each receiving what the previous
    site (of this round or the last one) sent; the saved model is initial + every index."""
    rounds = records(result)
    assert [r["round"] for r in rounds] == list(range(len(trained)))
    total = 0
    for rnd, (record, sites, order) in enumerate(zip(rounds, trained, orders, strict=True)):
        assert record["sites"] == sites
        assert list(record["site_metrics"]) == sites
        for site in sites:
            got = record["site_metrics"][site]
            assert got["received_sum"] == INITIAL_SUM + total * NUM_VALUES, (rnd, site)
            assert got["position"] == order.index(site)
            assert got["round"] == rnd
            total += INDEX[site]
        # the round's metrics are its last site's
        assert record["metrics"] == {
            k: float(v) for k, v in record["site_metrics"][sites[-1]].items()
        }
    saved = load_file(str(result / "server" / "models" / "global_model.safetensors"))
    assert set(saved) == set(INITIAL)
    for key, value in INITIAL.items():
        np.testing.assert_array_equal(saved[key], value + np.float32(total))


@pytest.mark.parametrize("external", [False, True], ids=["in-process", "external-process"])
def test_fixed_order_visits_the_sites_in_job_order(tmp_path: Path, external: bool) -> None:
    run_ = run(tmp_path, launch_external_process=external)
    assert run_.get_status() == "FINISHED:COMPLETED", run_.get_message()
    result = Path(run_.get_result())
    check_chain(result, [SITES, SITES], [SITES, SITES])
    info = summary(result)
    assert info["orders"] == [SITES, SITES]
    assert info["order"] == "fixed"
    assert info["seed"] is None
    assert info["rounds_completed"] == 2
    # every round's model is initial + 1 + 2 + 3: after two rounds + 12
    saved = load_file(str(result / "server" / "models" / "global_model.safetensors"))
    np.testing.assert_array_equal(saved["fc.bias"], INITIAL["fc.bias"] + 12)


@pytest.mark.parametrize("seed", [3, None])
def test_random_order_is_a_new_seeded_permutation_each_round(
    tmp_path: Path, seed: int | None
) -> None:
    run_ = run(tmp_path, order="random", seed=seed)
    assert run_.get_status() == "FINISHED:COMPLETED", run_.get_message()
    result = Path(run_.get_result())
    info = summary(result)
    assert info["order"] == "random"
    if seed is not None:
        assert info["seed"] == seed
    assert isinstance(info["seed"], int)
    # documented rule: np.random.default_rng(seed).permutation over the alive sites per round
    rng = np.random.default_rng(info["seed"])
    expected = [[SITES[i] for i in rng.permutation(3)] for _ in range(2)]
    if seed == 3:
        assert expected == [["site-3", "site-2", "site-1"], ["site-1", "site-3", "site-2"]]
    assert info["orders"] == expected
    check_chain(result, expected, expected)


def test_a_failing_site_is_skipped_while_min_clients_remain(tmp_path: Path) -> None:
    run_ = run(tmp_path, min_clients=2, num_rounds=3, train_args="--fail site-2:1")
    assert run_.get_status() == "FINISHED:COMPLETED", run_.get_message()
    result = Path(run_.get_result())
    # round 1: site-2 raises, the model goes from site-1 straight to site-3; round 2's
    # order holds only the sites still alive
    survivors = ["site-1", "site-3"]
    check_chain(result, [SITES, survivors, survivors], [SITES, SITES, survivors])
    assert summary(result)["orders"] == [SITES, SITES, survivors]
    rounds = records(result)
    assert list(rounds[1]["failed"]) == ["site-2"]
    assert "RuntimeError: planned failure on site-2 in round 1" in rounds[1]["failed"]["site-2"]
    assert rounds[0]["failed"] == rounds[2]["failed"] == {}
    log = (result / "server" / "log.txt").read_text()
    assert "round 1: skipping site-2 (RuntimeError: planned failure on site-2 in round 1)" in log
    saved = load_file(str(result / "server" / "models" / "global_model.safetensors"))
    np.testing.assert_array_equal(saved["fc.weight"], INITIAL["fc.weight"] + 6 + 4 + 4)


def test_a_failing_site_below_min_clients_fails_the_job(tmp_path: Path) -> None:
    run_ = run(tmp_path, min_clients=3, train_args="--fail site-2:1")
    assert run_.get_status() == "FINISHED:EXECUTION_EXCEPTION"
    message = run_.get_message()
    assert "cyclic round 1 needs min_clients=3 sites able to train, only 2 remain" in message
    assert "site-2: RuntimeError: planned failure on site-2 in round 1" in message
    result = Path(run_.get_result())
    assert [r["round"] for r in records(result)] == [0]
    # round 0's model was saved before the failure
    saved = load_file(str(result / "server" / "models" / "global_model.safetensors"))
    np.testing.assert_array_equal(saved["fc.bias"], INITIAL["fc.bias"] + 6)


def test_export_writes_the_cyclic_workflow(tmp_path: Path) -> None:
    recipe = CyclicRecipe(
        min_clients=2, model=TinyNet(3), train_script=SCRIPT, order="random", seed=5
    )
    recipe.export(tmp_path / "job")
    job = json.loads((tmp_path / "job" / "job.json").read_text())
    (workflow,) = job["workflows"]
    assert workflow["target"] == "ember.controllers:CyclicController"
    args = workflow["args"]
    assert (args["order"], args["seed"], args["num_rounds"], args["min_clients"]) == (
        "random",
        5,
        2,
        2,
    )
    assert args["task_meta"] == {"model_class": {"path": "pt_tiny.TinyNet", "args": {}}}
    assert args["persistor"]["target"] == "ember_pt.persistor:TorchPersistor"
    assert (tmp_path / "job" / args["persistor"]["args"]["initial_file"]).is_file()
    assert job["client"]["params_format"] == "pytorch"
    assert job["meta"] == {"recipe": "CyclicRecipe", "framework": "pytorch"}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"order": "sideways"}, r"order must be one of \['fixed', 'random'\]"),
        ({"order": "random", "seed": -1}, "seed must be an integer >= 0"),
        ({"order": "random", "seed": "7"}, "seed must be an integer >= 0"),
        ({"seed": 3}, "seed only applies to order='random'"),
        ({"num_rounds": 0}, "num_rounds must be an integer >= 1"),
        ({"min_clients": 0}, "min_clients must be an integer >= 1"),
        ({"name": "no spaces"}, "name must start with a letter or digit"),
        ({"model": None}, "give the initial model"),
        ({"model": [1.0, 2.0]}, "model must be a torch.nn.Module instance"),
        ({"model": {"path": "NoDots"}}, "model given by path"),
        ({"initial_ckpt": "weights.npz"}, "must be a path ending in .pt or .pth or .safetensors"),
        ({"initial_ckpt": "missing.pt"}, "does not exist"),
        ({"train_script": "missing.py"}, "train_script 'missing.py' does not exist"),
        ({"train_args": ["--x"]}, "train_args must be a string"),
        ({"launch_external_process": "yes"}, "launch_external_process must be True or False"),
    ],
)
def test_argument_errors(kwargs: dict[str, Any], match: str) -> None:
    options: dict[str, Any] = {"min_clients": 2, "model": MODEL, "train_script": SCRIPT}
    options.update(kwargs)
    with pytest.raises(RecipeArgumentError, match=match):
        CyclicRecipe(**options)
