"""pytorch-fedeval jobs in SimEnv: every site's metric on one model, results.json, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from pt_tiny import TinyNet

from ember import SimEnv
from ember.recipes.validation import RecipeArgumentError
from ember_pt.recipes import FedEvalRecipe

SCRIPTS = Path(__file__).parent / "scripts"
SCRIPT = str(SCRIPTS / "pt_fedeval_score.py")
SITES = ["site-1", "site-2", "site-3"]


def trained_net() -> TinyNet:
    """TinyNet with weights that are not the constructor's (sum 2 * 15 + 1.25 = 31.25)."""
    net = TinyNet(3)
    with torch.no_grad():
        net.fc.weight.mul_(2.0)
        net.fc.bias.copy_(torch.tensor([0.25, 1.0]))
    return net


WEIGHT_SUM = 31.25


def run(tmp_path: Path, model_name: str, fail: str = "", **kwargs: Any) -> Any:
    options: dict[str, Any] = {
        "name": "fedeval-job",
        "min_clients": 3,
        "eval_script": SCRIPT,
        "eval_args": f"--model-name {model_name}" + (f" --fail {fail}" if fail else ""),
    }
    options.update(kwargs)
    env = SimEnv(num_clients=3, workspace_root=str(tmp_path / "ws"), progress=False)
    return FedEvalRecipe(**options).execute(env)


def check_results(result: Path, model_name: str, sites: list[str]) -> dict[str, Any]:
    """Site-k's score is k x the sum of the weights, its weight k."""
    results = json.loads((result / "server" / "fed_eval" / "results.json").read_text())
    index = {site: int(site.rsplit("-", 1)[1]) for site in sites}
    assert results["model"] == model_name
    assert list(results["sites"]) == sites
    for site, k in index.items():
        assert results["sites"][site] == {
            "score": pytest.approx(WEIGHT_SUM * k, rel=1e-12),
            "site_index": k,
            "note": f"evaluated by {site}",
        }
    assert results["weights"] == {site: float(k) for site, k in index.items()}
    ks = list(index.values())
    # the string metric "note" is kept per site but not averaged
    assert results["mean"] == {
        "score": pytest.approx(WEIGHT_SUM * sum(ks) / len(ks), rel=1e-12),
        "site_index": pytest.approx(sum(ks) / len(ks)),
    }
    assert results["weighted_mean"] == {
        "score": pytest.approx(WEIGHT_SUM * sum(k * k for k in ks) / sum(ks), rel=1e-12),
        "site_index": pytest.approx(sum(k * k for k in ks) / sum(ks)),
    }
    # recorded as round 0 and in the summary too
    (record,) = [
        json.loads(line)
        for line in (result / "server" / "round_metrics.jsonl").read_text().splitlines()
    ]
    assert record["round"] == 0
    assert record["sites"] == sites
    assert record["site_metrics"] == results["sites"]
    assert record["metrics"] == results["weighted_mean"]
    info = json.loads((result / "server" / "metrics_summary.json").read_text())
    assert info["model"] == model_name
    assert info["evaluated_sites"] == sites
    assert info["final_metrics"] == results["weighted_mean"]
    return results  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("suffix", "relative", "external"),
    [(".pt", True, False), (".safetensors", False, False), (".pth", True, True)],
    ids=["pt-bundled", "safetensors-absolute", "pth-external-process"],
)
def test_each_site_evaluates_the_checkpoint(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    suffix: str,
    relative: bool,
    external: bool,
) -> None:
    state = trained_net().state_dict()
    path = tmp_path / f"trained{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save({"model": state, "epoch": 7}, path)
    monkeypatch.chdir(tmp_path)
    run_ = run(
        tmp_path,
        path.name,
        # the class is only named: the weights are the checkpoint's
        model={"path": "pt_tiny.TinyNet", "args": {"width": 3}},
        initial_ckpt=path.name if relative else str(path),
        launch_external_process=external,
    )
    assert run_.get_status() == "FINISHED:COMPLETED", run_.get_message()
    result = Path(run_.get_result())
    check_results(result, path.name, SITES)
    assert (result / "job" / "app" / "ckpt" / path.name).is_file() == relative


def test_a_module_instance_is_evaluated_with_its_weights(tmp_path: Path) -> None:
    run_ = run(tmp_path, "TinyNet", model=trained_net())
    assert run_.get_status() == "FINISHED:COMPLETED", run_.get_message()
    check_results(Path(run_.get_result()), "TinyNet", SITES)


def test_a_failing_site_is_left_out_above_min_clients(tmp_path: Path) -> None:
    run_ = run(tmp_path, "TinyNet", fail="site-2", model=trained_net(), min_clients=2)
    assert run_.get_status() == "FINISHED:COMPLETED", run_.get_message()
    results = check_results(Path(run_.get_result()), "TinyNet", ["site-1", "site-3"])
    assert list(results["failed"]) == ["site-2"]
    assert "RuntimeError: planned failure on site-2" in results["failed"]["site-2"]


def test_a_failing_site_below_min_clients_fails_the_job(tmp_path: Path) -> None:
    run_ = run(tmp_path, "TinyNet", fail="site-2", model=trained_net(), min_clients=3)
    assert run_.get_status() == "FINISHED:EXECUTION_EXCEPTION"
    message = run_.get_message()
    assert "task 'validate' needs results from min_clients=3 sites" in message
    assert "site-2: RuntimeError: planned failure on site-2" in message


def test_export_writes_the_fed_eval_workflow(tmp_path: Path) -> None:
    recipe = FedEvalRecipe(min_clients=2, model=trained_net(), eval_script=SCRIPT)
    recipe.export(tmp_path / "job")
    job = json.loads((tmp_path / "job" / "job.json").read_text())
    (workflow,) = job["workflows"]
    assert workflow["target"] == "ember.controllers:FedEvalController"
    args = workflow["args"]
    assert args["model_name"] == "TinyNet"
    assert args["min_clients"] == 2
    assert args["task_meta"] == {"model_class": {"path": "pt_tiny.TinyNet", "args": {}}}
    assert (tmp_path / "job" / args["persistor"]["args"]["initial_file"]).is_file()
    assert job["client"]["params_format"] == "pytorch"
    assert job["meta"] == {"recipe": "FedEvalRecipe", "framework": "pytorch"}


def test_registered_recipes_load_without_importing_torch() -> None:
    code = (
        "import sys\n"
        "from ember.plugins import get_registry\n"
        "reg = get_registry()\n"
        "c = reg.get('recipe', 'pytorch-cyclic').item.load()\n"
        "e = reg.get('recipe', 'pytorch-fedeval').item.load()\n"
        "import ember.controllers\n"
        "print(c.__name__, e.__name__, 'torch' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.split() == ["CyclicRecipe", "FedEvalRecipe", "False"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"model": None}, "FedEvalRecipe evaluates trained weights: give initial_ckpt="),
        (
            {"model": {"path": "pt_tiny.TinyNet", "args": {"width": 3}}},
            "a model given by path has no weights to evaluate",
        ),
        ({"model": [1.0, 2.0]}, "model must be a torch.nn.Module instance"),
        ({"initial_ckpt": "missing.pt"}, "initial_ckpt 'missing.pt' does not exist"),
        ({"initial_ckpt": "w.npz"}, "initial_ckpt must be a path ending in .pt or .pth"),
        ({"eval_script": "missing.py"}, "eval_script 'missing.py' does not exist"),
        ({"eval_script": ""}, "eval_script must be a non-empty string"),
        ({"eval_args": ["--x"]}, "eval_args must be a string of arguments"),
        ({"min_clients": 0}, "min_clients must be an integer >= 1"),
        ({"name": "a/b"}, "name must start with a letter or digit"),
        ({"command": ""}, "command must be a non-empty string"),
    ],
)
def test_argument_errors(kwargs: dict[str, Any], match: str) -> None:
    options: dict[str, Any] = {"min_clients": 2, "model": TinyNet(3), "eval_script": SCRIPT}
    options.update(kwargs)
    with pytest.raises(RecipeArgumentError, match=match):
        FedEvalRecipe(**options)
