"""examples/hello-tf and examples/hello-cyclic: each job.py run as a user runs it (SimEnv, a
subprocess), with the accuracy its README promises."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def run_example(name: str, tmp_path: Path, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name / "job.py"), "--workspace-root", str(tmp_path), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "status: FINISHED:COMPLETED" in proc.stdout, proc.stdout
    return proc.stdout


def accuracy(out: str) -> float:
    found = re.search(r"test accuracy of the \w+ model after \d+ rounds: ([0-9.]+)", out)
    assert found, out
    return float(found.group(1))


def test_hello_tf_fedavg_reaches_its_readme_accuracy(tmp_path: Path) -> None:
    # the README's settings (5 rounds, 2 sites): about 7 s on 2 cores
    out = run_example("hello-tf", tmp_path)
    assert accuracy(out) >= 0.9, out
    for site in ("site-1", "site-2"):
        assert f"{site}: round 4, received model accuracy" in out
    result = tmp_path / "hello-tf" / "server" / "models"
    assert (result / "global_model.weights.h5").is_file()
    assert (result / "best_model.weights.h5").is_file()


def test_hello_cyclic_passes_the_model_site_to_site(tmp_path: Path) -> None:
    # 2 rounds instead of the README's 3; every visit of the cycle is in order
    out = run_example("hello-cyclic", tmp_path, "--num-rounds", "2")
    assert accuracy(out) >= 0.9, out
    assert out.count("round 0: site-1 -> site-2") == 1
    assert out.count("round 1: site-1 -> site-2") == 1
    assert "site-2: round 1, position 1: received model accuracy" in out
