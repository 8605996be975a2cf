"""``ember migrate-nvflare``: NVFlare 2.7 hello-numpy style jobs rewritten, then run in SimEnv."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ember.cli.main import cli
from ember.client import NUMPY_KEY

JOBS = Path(__file__).parent / "fixtures" / "nvflare_jobs"
EMBER = Path(sys.executable).parent / "ember"
INITIAL = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]], dtype=np.float32)


def copy_job(name: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(JOBS / name, tmp_path / name))


def migrate(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["migrate-nvflare", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output


def run_job(job: Path, tmp_path: Path, *args: str) -> Path:
    """``python job.py`` in the job folder; returns the result folder it prints."""
    env = {**os.environ, "NVF_TRACE": str(tmp_path / "trace.jsonl")}
    proc = subprocess.run(
        [sys.executable, "job.py", "--workspace_root", str(tmp_path / "ws"), *args],
        cwd=job,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Job Status is: FINISHED:COMPLETED" in proc.stdout, proc.stdout
    line = next(x for x in proc.stdout.splitlines() if x.startswith("Result can be found in :"))
    return Path(line.split(":", 1)[1].strip())


def global_model(result: Path) -> np.ndarray:
    with np.load(result / "server" / "models" / "global_model.npz") as data:
        return data[NUMPY_KEY]


def assert_no_nvflare(job: Path) -> None:
    for path in job.glob("*.py"):
        source = path.read_text()
        assert "import nvflare" not in source, path
        assert "from nvflare" not in source, path
        assert "NPConstants" not in source


def test_full_transfer_job_migrates_and_runs(tmp_path: Path) -> None:
    job = copy_job("numpy_full", tmp_path)
    code, out = migrate(str(job))
    assert code == 0, out
    expected = [
        "client.py:8 import nvflare.client as flare -> import ember.client as flare",
        "client.py:9 from nvflare.app_common.np.constants import NPConstants"
        " -> from ember.client import NUMPY_KEY",
        "client.py:10 from nvflare.client.tracking import SummaryWriter"
        " -> from ember.client.tracking import SummaryWriter",
        "NPConstants.NUMPY_KEY -> NUMPY_KEY",
        "job.py:6 from nvflare.app_common.np.recipes import NumpyFedAvgRecipe"
        " -> from ember.recipes import NumpyFedAvgRecipe",
        "from nvflare.recipe import SimEnv, add_experiment_tracking -> from ember import SimEnv;"
        " from ember.recipes import add_experiment_tracking",
        "initial_model= -> model=",
    ]
    for text in expected:
        assert text in out, out
    assert "0 problem(s)" in out
    assert_no_nvflare(job)
    client = (job / "client.py").read_text()
    assert "# metrics go to the server's TensorBoard" in client
    assert "    # Initialize FLARE\n    flare.init()" in client
    assert "model=np.array" in (job / "job.py").read_text()
    assert "# The model starts at" in (job / "job.py").read_text()

    result = run_job(job, tmp_path, "--num_rounds", "3")
    np.testing.assert_allclose(global_model(result), INITIAL + 3)
    records = [json.loads(x) for x in (tmp_path / "trace.jsonl").read_text().splitlines()]
    assert {tuple(r["system_info"]) for r in records} == {("job_id", "site_name")}
    assert sorted({r["round"] for r in records}) == [0, 1, 2]
    assert (result / "server" / "tb_events").is_dir()


def test_diff_transfer_job_through_installed_script(tmp_path: Path) -> None:
    job = copy_job("numpy_diff", tmp_path)
    proc = subprocess.run(
        [str(EMBER), "migrate-nvflare", str(job)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (
        "job.py:7 from nvflare.client.config import TransferType"
        " -> from ember.client import TransferType" in proc.stdout
    )
    assert "from nvflare.app_common.np.recipes.fedavg import NumpyFedAvgRecipe" in proc.stdout
    assert_no_nvflare(job)
    assert (
        "params_transfer_type=TransferType.DIFF,  # send model differences"
        in (job / "job.py").read_text()
    )
    result = run_job(job, tmp_path, "--num_rounds", "2")
    np.testing.assert_allclose(global_model(result), INITIAL + 2)


def test_cross_site_eval_job(tmp_path: Path) -> None:
    job = copy_job("numpy_cse", tmp_path)
    code, out = migrate(str(job), "--format", "json")
    assert code == 0, out
    report = json.loads(out)
    assert report["ok"] is True
    changes = {
        (Path(f["path"]).name, c["old"], c["new"]) for f in report["files"] for c in f["changes"]
    }
    assert ("client.py", "from nvflare.apis.fl_constant import FLMetaKey",
            "from ember.client import MetaKey") in changes  # fmt: skip
    assert ("client.py", "FLMetaKey.NUM_STEPS_CURRENT_ROUND",
            "MetaKey.NUM_STEPS_CURRENT_ROUND") in changes  # fmt: skip
    assert_no_nvflare(job)
    result = run_job(job, tmp_path)
    np.testing.assert_allclose(global_model(result), INITIAL + 2)
    assert (result / "server" / "cross_site_eval" / "cross_val_results.json").is_file()


def test_unmappable_name_is_reported_and_fails(tmp_path: Path) -> None:
    script = tmp_path / "job.py"
    source = "from nvflare.recipe import PocEnv, SimEnv\n\nenv = PocEnv()\n"
    script.write_text(source)
    code, out = migrate(str(script))
    assert code == 1
    assert "job.py:1 unmapped: nvflare.recipe.PocEnv: Ember has no PocEnv yet" in out
    rewritten = script.read_text()
    assert "from ember import SimEnv" in rewritten
    assert "from nvflare.recipe import PocEnv" in rewritten  # left for the user to port


@pytest.mark.parametrize(
    ("source", "name", "reason"),
    [
        ("import nvflare.client as flare\nflare.bogus()\n", "flare.bogus", "has no bogus"),
        (
            "from nvflare.app_common.np.recipes import NumpyFedAvgRecipe\n"
            "NumpyFedAvgRecipe(min_clients=2, train_script='c.py', aggregator=None)\n",
            "NumpyFedAvgRecipe(aggregator=...)",
            "has no parameter 'aggregator'",
        ),
        ("from nvflare.client.tracking import MLflowWriter\n", "MLflowWriter", "TensorBoard"),
    ],
)
def test_other_unmapped(tmp_path: Path, source: str, name: str, reason: str) -> None:
    script = tmp_path / "s.py"
    script.write_text(source)
    code, out = migrate(str(script))
    assert code == 1
    line = next(x for x in out.splitlines() if "unmapped:" in x)
    assert name in line
    assert reason in line


def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    job = copy_job("numpy_full", tmp_path)
    before = {p.name: p.read_text() for p in job.glob("*.py")}
    code, out = migrate(str(job), "--dry-run")
    assert code == 0
    assert "initial_model= -> model=" in out
    assert "would change 2 of 2 file(s)" in out
    assert {p.name: p.read_text() for p in job.glob("*.py")} == before


def test_syntax_error_is_reported(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import nvflare.client as flare\ndef broken(:\n")
    code, out = migrate(str(tmp_path))
    assert code == 1
    assert "bad.py: error: syntax error at line 2" in out
    assert "Traceback" not in out
    assert bad.read_text().startswith("import nvflare.client")


def test_plain_import_and_aliases(tmp_path: Path) -> None:
    script = tmp_path / "s.py"
    script.write_text(
        "import nvflare.client\n"
        "from nvflare.client import FLModel as M  # the model\n"
        "nvflare.client.init()\n"
        "m = M(params_type=nvflare.client.ParamsType.FULL)\n"
    )
    code, out = migrate(str(script))
    assert code == 0, out
    assert script.read_text() == (
        "import ember.client\n"
        "from ember.client import FLModel as M  # the model\n"
        "ember.client.init()\n"
        "m = M(params_type=ember.client.ParamsType.FULL)\n"
    )
