"""ETFedBuffRecipe in PocEnv (server and site processes): each site process exports every
model version once, and the job gives SimEnv's model."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("ember_pt")
if importlib.util.find_spec("executorch") is None:
    pytest.skip("ExecuTorch is not installed: ember-edge[et]", allow_module_level=True)

from edge_et_digits import et_recipe as _recipe  # noqa: E402

from ember import SimEnv  # noqa: E402
from ember.envs.poc import PocEnv  # noqa: E402
from ember.system.poc import PocWorkspace  # noqa: E402
from support.sim import round_records  # noqa: E402

COMPLETED = "FINISHED:COMPLETED"


def _model(result: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return dict(load_file(str(result / "server" / "models" / "global_model.safetensors")))


def test_an_et_job_in_pocenv_exports_each_version_once_per_site_and_matches_simenv(
    poc: PocWorkspace, tmp_path: Path
) -> None:
    from ember_edge.executorch import forget_exports

    forget_exports()
    sim = _recipe().execute(SimEnv(num_clients=2, workspace_root=str(tmp_path), progress=False))
    assert sim.get_status() == COMPLETED, sim.get_message()
    run = PocEnv(clients=["site-1", "site-2"], workspace=poc.root).deploy(_recipe())
    result = Path(run.get_result(timeout=240))
    assert run.get_status() == COMPLETED, run.get_message()
    records = round_records(result)
    assert [r["round"] for r in records] == [1, 2, 3]
    # a process per site: each exports versions 0, 1 and 2 itself, once
    stats = records[-1]["site_metrics"]
    assert {site: s["pte_exports"] for site, s in stats.items()} == {"site-1": 3, "site-2": 3}
    expected, got = _model(Path(sim.get_result())), _model(result)
    assert expected.keys() == got.keys()
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], rtol=0, atol=1e-6)
    assert records[-1]["metrics"]["accuracy"] >= 0.8
