"""examples/hello-he: HE FedAvg of hello-pt's digits MLP reaches hello-pt's accuracy."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("tenseal")

EXAMPLE = Path(__file__).parents[2] / "examples" / "hello-he" / "job.py"


def test_hello_he_decrypted_global_model_reaches_90_percent(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), "--workspace-root", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    assert "the server holds 4 of 4 layers encrypted" in done.stdout
    found = re.search(r"decrypted global model after 5 rounds: ([\d.]+)", done.stdout)
    assert found, done.stdout
    assert float(found[1]) >= 0.9
