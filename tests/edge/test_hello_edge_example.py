"""examples/hello-edge, small: HTTP devices behind 4 gateways make model versions and end."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).parents[2] / "examples" / "hello-edge" / "job.py"


def test_hello_edge_simulates_its_devices_over_http_and_prints_each_versions_accuracy(
    tmp_path: Path,
) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(EXAMPLE),
            "--devices",
            "600",
            "--versions",
            "2",
            "--workspace",
            str(tmp_path / "ws"),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=EXAMPLE.parent,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "status: FINISHED:COMPLETED" in out, out
    fleet = re.search(r"devices simulated: (\d+) over (\d+) gateways", out)
    assert fleet is not None, out
    assert fleet.groups() == ("600", "4")
    accuracies = [float(a) for a in re.findall(r"model version +\d+: accuracy ([0-9.]+)", out)]
    assert len(accuracies) == 2, out
    assert accuracies[-1] > 0.5  # from 0.1 for the zero model
