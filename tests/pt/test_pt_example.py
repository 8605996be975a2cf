"""examples/hello-pt trains a digits MLP to over 90% test accuracy in 5 rounds."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).parents[2] / "examples" / "hello-pt" / "job.py"


def test_hello_pt_reaches_90_percent(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), "--workspace-root", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    found = re.search(r"test accuracy of the global model after 5 rounds: ([\d.]+)", done.stdout)
    assert found, done.stdout
    assert float(found[1]) >= 0.9
    assert (tmp_path / "hello-pt" / "server" / "models" / "global_model.safetensors").is_file()
