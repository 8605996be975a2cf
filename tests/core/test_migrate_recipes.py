"""``ember migrate-nvflare`` on NVFlare 2.7 jobs of every mapped recipe, then run.

One fixture folder per job under ``fixtures/nvflare_jobs/`` (``job.py`` + ``client.py``, with
NVFlare's imports, names and keyword arguments); each is migrated, checked for leftover
``nvflare`` imports and for the recipe import's Ember target, run in SimEnv (2 sites, 1-2
rounds) and checked for FINISHED:COMPLETED and one result the recipe documents.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ember.cli.main import cli
from ember.client import NUMPY_KEY

JOBS = Path(__file__).parent / "fixtures" / "nvflare_jobs"
INITIAL = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]], dtype=np.float32)


def copy_job(name: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(JOBS / name, tmp_path / name))


def migrate(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["migrate-nvflare", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output


def run_job(job: Path, tmp_path: Path, *args: str) -> Path:
    """``python job.py`` in the job folder; returns the result folder it prints."""
    proc = subprocess.run(
        [sys.executable, "job.py", "--workspace_root", str(tmp_path / "ws"), *args],
        cwd=job,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Job Status is: FINISHED:COMPLETED" in proc.stdout, proc.stdout
    line = next(x for x in proc.stdout.splitlines() if x.startswith("Result can be found in :"))
    return Path(line.split(":", 1)[1].strip())


def assert_no_nvflare(job: Path) -> None:
    for path in job.glob("*.py"):
        source = path.read_text()
        assert not re.search(r"^\s*(import|from) nvflare", source, re.MULTILINE), path
        assert "NPConstants" not in source, path
        assert "AlgorithmConstants" not in source, path


def npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def safetensors_keys(path: Path) -> set[str]:
    from safetensors.numpy import load_file

    return set(load_file(str(path)))


# -- what each recipe's run leaves behind


def unified_fedavg(result: Path) -> None:
    weights = npz(result / "server" / "models" / "global_model.npz")[NUMPY_KEY]
    np.testing.assert_allclose(weights, INITIAL + 2)  # 2 rounds, each site adds 1


def numpy_cyclic(result: Path) -> None:
    weights = npz(result / "server" / "models" / "global_model.npz")[NUMPY_KEY]
    np.testing.assert_allclose(weights, np.full((2, 2), 4.0))  # 2 rounds x 2 sites, +1 each


def pt_model(result: Path) -> None:
    path = result / "server" / "models" / "global_model.safetensors"
    assert safetensors_keys(path) == {"fc.weight", "fc.bias"}


def pt_scaffold(result: Path) -> None:
    pt_model(result)
    from safetensors.numpy import load_file

    c_global = load_file(str(result / "server" / "models" / "scaffold_c_global.safetensors"))
    assert set(c_global) == {"fc.weight", "fc.bias"}
    assert any(np.abs(v).sum() > 0 for v in c_global.values())  # the sites' c_diff arrived


def pt_swarm(result: Path) -> None:
    summary = json.loads((result / "server" / "metrics_summary.json").read_text())
    assert summary["aggregators"] == ["site-1", "site-2"]
    assert summary["final_model"] == {"site": "site-2", "round": 1}
    path = result / "site-2" / "models" / "global_model.safetensors"
    assert safetensors_keys(path) == {"fc.weight", "fc.bias"}
    assert not (result / "server" / "models").exists()


def pt_fedeval(result: Path) -> None:
    results = json.loads((result / "server" / "fed_eval" / "results.json").read_text())
    assert results["model"] == "pretrained.pt"
    assert set(results["sites"]) == {"site-1", "site-2"}
    assert results["weights"] == {"site-1": 8.0, "site-2": 16.0}
    assert results["weighted_mean"]["mse"] > 0


def sklearn_kmeans(result: Path) -> None:
    model = npz(result / "server" / "models" / "global_model.npz")
    assert model["centers"].shape == (3, 2)
    assert model["counts"].sum() == 60  # every point of both sites assigned


def sklearn_svm(result: Path) -> None:
    model = npz(result / "server" / "models" / "global_model.npz")
    assert model["support_vectors"].shape[1] == 4
    summary = json.loads((result / "server" / "metrics_summary.json").read_text())
    assert summary["final_metrics"]["accuracy"] > 0.5


def sklearn_linear(result: Path) -> None:
    model = npz(result / "server" / "models" / "global_model.npz")
    assert model["coef"].shape == (1, 4)


def fedstats(result: Path) -> None:
    stats = json.loads((result / "server" / "statistics" / "adult_stats.json").read_text())
    assert stats["age"]["count"]["Global"]["train"] == 200
    assert stats["income"]["count"]["site-1"]["train"] == 100
    assert "histogram" in stats["age"]


def fedavg_lr(result: Path) -> None:
    weights = npz(result / "server" / "models" / "global_model.npz")[NUMPY_KEY]
    assert weights.shape == (4,)  # intercept + 3 features
    assert weights[1] > 0 > weights[2]  # towards the true [0.2, 1.5, -2.0, 0.5]


def fed_task(result: Path) -> None:
    results = json.loads((result / "server" / "fed_task" / "results.json").read_text())
    assert results["task_name"] == "embed"
    assert results["sites"]["site-2"]["params"]["embedding"] == [1.0, 1.0, 1.0]
    assert results["sites"]["site-1"]["metrics"] == {"rows": 10}


def tf_model(result: Path) -> None:
    assert (result / "server" / "models" / "global_model.weights.h5").is_file()


# fixture, the extra (module) the job needs, the recipe import it must become, the check
CASES: list[tuple[str, str | None, str, Callable[[Path], None]]] = [
    ("np_unified_fedavg", None, "from ember.recipes import FedAvgRecipe", unified_fedavg),
    ("np_cyclic", None, "from ember.recipes import CyclicRecipe", numpy_cyclic),
    ("pt_fedopt", "torch", "from ember_pt.recipes import FedOptRecipe", pt_model),
    ("pt_fedprox", "torch", "from ember_pt.recipes import FedProxRecipe", pt_model),
    ("pt_scaffold", "torch", "from ember_pt.recipes import ScaffoldRecipe", pt_scaffold),
    ("pt_cyclic", "torch", "from ember_pt.recipes import CyclicRecipe", pt_model),
    ("pt_swarm", "torch", "from ember_pt.recipes import SwarmLearningRecipe", pt_swarm),
    ("pt_fedeval", "torch", "from ember_pt.recipes import FedEvalRecipe", pt_fedeval),
    (
        "sklearn_kmeans",
        "sklearn",
        "from ember_sklearn.recipes import KMeansFedAvgRecipe",
        sklearn_kmeans,
    ),
    ("sklearn_svm", "sklearn", "from ember_sklearn.recipes import SVMFedAvgRecipe", sklearn_svm),
    (
        "sklearn_fedavg",
        "sklearn",
        "from ember_sklearn.recipes import SklearnFedAvgRecipe",
        sklearn_linear,
    ),
    ("fedstats", None, "from ember.recipes import FedStatsRecipe", fedstats),
    ("fedavg_lr", None, "from ember.recipes import FedAvgLrRecipe", fedavg_lr),
    ("fed_task", None, "from ember.recipes import FedTaskRecipe", fed_task),
    ("tf_fedopt", "tensorflow", "from ember_tf.recipes import FedOptRecipe", tf_model),
    ("tf_cyclic", "tensorflow", "from ember_tf.recipes import CyclicRecipe", tf_model),
]
# the client-side names the migration must rewrite, per job
CLIENT_IMPORTS = {
    "pt_fedprox": ["from ember_pt.fedprox import PTFedProxLoss"],
    "pt_scaffold": [
        "from ember_pt.scaffold import PTScaffoldHelper, get_lr_values",
        "from ember.runtime.controllers.scaffold import SCAFFOLD_C_GLOBAL, SCAFFOLD_C_DIFF",
    ],
    "fedstats": [
        "from ember.statistics import StatsContext as FLContext",
        "from ember.statistics import (",
    ],
}
# the keyword and name rewrites the migration must report, per job
REPORTED = {
    "np_unified_fedavg": ["initial_model= -> model=", "FrameworkType.NUMPY -> NUMPY"],
    "np_cyclic": ["FrameworkType.NUMPY -> NUMPY"],
    "pt_fedopt": ["initial_model= -> model="],
    "pt_fedeval": ["eval_ckpt= -> initial_ckpt="],
    "pt_scaffold": ["AlgorithmConstants.SCAFFOLD_CTRL_DIFF -> SCAFFOLD_C_DIFF"],
}


def _param(case: tuple[str, str | None, str, Callable[[Path], None]]) -> object:
    return pytest.param(*case, id=case[0])


@pytest.mark.parametrize(("fixture", "needs", "recipe_import", "check"), [_param(c) for c in CASES])
def test_recipe_job_migrates_and_runs(
    tmp_path: Path,
    fixture: str,
    needs: str | None,
    recipe_import: str,
    check: Callable[[Path], None],
) -> None:
    if needs is not None:
        pytest.importorskip(needs)
    job = copy_job(fixture, tmp_path)
    code, out = migrate(str(job))
    assert code == 0, out
    assert "0 problem(s)" in out, out
    for text in REPORTED.get(fixture, []):
        assert text in out, out
    assert_no_nvflare(job)
    assert recipe_import in (job / "job.py").read_text()
    client = (job / "client.py").read_text()
    for line in CLIENT_IMPORTS.get(fixture, []):
        assert line in client, client
    check(run_job(job, tmp_path))


def test_cyclic_job_without_min_clients_takes_nvflares_default_of_two(tmp_path: Path) -> None:
    job = copy_job("np_cyclic", tmp_path)
    source = (job / "job.py").read_text()
    (job / "job.py").write_text(source.replace("        min_clients=args.n_clients,\n", ""))
    code, out = migrate(str(job))
    assert code == 0, out
    run_job(job, tmp_path)
