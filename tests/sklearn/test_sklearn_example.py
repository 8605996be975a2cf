"""examples/hello-sklearn runs and prints the figures its README promises."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).parents[2] / "examples" / "hello-sklearn" / "job.py"


def test_hello_sklearn_prints_centralised_and_federated_figures(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), "--workspace-root", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    figures = r"centralised accuracy ([\d.]+)\s+federated accuracy ([\d.]+)"
    linear = re.search(r"\[linear\] " + figures, out)
    assert linear, out
    centralised, federated = float(linear[1]), float(linear[2])
    assert centralised > 0.9
    assert abs(federated - centralised) <= 0.02  # within 2 points
    ari = re.search(r"adjusted Rand index, federated vs centralised KMeans: ([\d.]+)", out)
    assert ari, out
    assert float(ari[1]) > 0.9
    svm = re.search(r"\[svm\] " + figures, out)
    assert svm, out
    assert float(svm[2]) > 0.9
    for name in ("linear", "kmeans", "svm"):
        models = tmp_path / f"hello-sklearn-{name}" / "server" / "models"
        assert (models / "global_model.npz").is_file()
        assert (models / "global_model.json").is_file()
