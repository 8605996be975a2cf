"""``ember migrate-nvflare`` on an NVFlare 2.7 hello-tf style job (tests/core/fixtures/
nvflare_jobs/tf_fedavg): the imports become ember_tf's, the Keras script is left alone, and
the migrated job runs."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from ember.cli.main import cli

JOBS = Path(__file__).resolve().parents[1] / "core" / "fixtures" / "nvflare_jobs"
# the lines of NVFlare's Keras convention the client script must keep, verbatim
KERAS_LINES = (
    "        for k, v in input_model.params.items():\n"
    "            model.get_layer(k).set_weights(v)\n",
    "            params={layer.name: layer.get_weights() for layer in model.layers},\n",
    "        output_model = flare.FLModel(\n",
)


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


def assert_no_nvflare(job: Path) -> None:
    for path in job.glob("*.py"):
        source = path.read_text()
        assert not re.search(r"^\s*(import|from) nvflare", source, re.MULTILINE), path


def migrated(tmp_path: Path) -> Path:
    job = copy_job("tf_fedavg", tmp_path)
    code, out = migrate(str(job))
    assert code == 0, out
    return job


def check_run(job: Path, tmp_path: Path) -> None:
    result = run_job(job, tmp_path)
    # the global model loads into the script's own class
    sys.path.insert(0, str(job))
    try:
        from model import TFNet
    finally:
        sys.path.remove(str(job))
        sys.modules.pop("model", None)
    model = TFNet()
    model.build((None, 8, 8))
    model.load_weights(str(result / "server" / "models" / "global_model.weights.h5"))
    assert all(np.isfinite(w).all() for w in model.get_weights())
    # what the scripts received: NVFlare's {layer name: [numpy arrays]}, layers with weights
    records = [json.loads(x) for x in (tmp_path / "trace.jsonl").read_text().splitlines()]
    assert sorted((r["site"], r["round"]) for r in records) == [
        ("site-1", 0), ("site-1", 1), ("site-2", 0), ("site-2", 1)
    ]  # fmt: skip
    for record in records:
        assert record["params"] == {
            "dense": ["numpy.ndarray", "numpy.ndarray"],
            "dense_1": ["numpy.ndarray", "numpy.ndarray"],
        }
    rounds = [
        json.loads(x) for x in (result / "server" / "round_metrics.jsonl").read_text().splitlines()
    ]
    assert [r["round"] for r in rounds] == [0, 1]
    assert all(set(r["site_metrics"]) == {"site-1", "site-2"} for r in rounds)


def test_hello_tf_job_migrates_to_ember_tf_and_keeps_the_keras_lines(tmp_path: Path) -> None:
    job = copy_job("tf_fedavg", tmp_path)
    before = (job / "client.py").read_text()
    code, out = migrate(str(job))
    assert code == 0, out
    for text in [
        "client.py:6 import nvflare.client as flare -> import ember.client as flare",
        "job.py:6 from nvflare.app_opt.tf.recipes.fedavg import FedAvgRecipe"
        " -> from ember_tf.recipes import FedAvgRecipe",
        "job.py:7 from nvflare.recipe import SimEnv -> from ember import SimEnv",
        "changed 2 of 3 file(s); 0 problem(s)",
    ]:
        assert text in out, out
    assert_no_nvflare(job)
    client = (job / "client.py").read_text()
    # only the import line changed: NVFlare's Keras convention is Ember's too
    assert client == before.replace(
        "import nvflare.client as flare", "import ember.client as flare"
    )
    for line in KERAS_LINES:
        assert line in client
    source = (job / "job.py").read_text()
    assert "from ember_tf.recipes import FedAvgRecipe\nfrom ember import SimEnv\n" in source
    assert "        model=TFNet(),\n" in source
    assert (job / "model.py").read_text() == (JOBS / "tf_fedavg" / "model.py").read_text()


def test_migrated_hello_tf_job_runs_as_nvflare_wrote_it(tmp_path: Path) -> None:
    # TFNet's _input_shape is (None, 8, 8), batch axis first, as NVFlare's persistor builds it
    check_run(migrated(tmp_path), tmp_path)
