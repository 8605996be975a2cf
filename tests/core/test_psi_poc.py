"""DhPSIRecipe in PocEnv: real processes, the server relaying over the network; each site
writes the intersection into its own job workspace."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ember.recipes import DhPSIRecipe

FIXTURES = Path(__file__).parent / "fixtures" / "psi"
SITES = ["site-1", "site-2"]


def test_psi_runs_in_pocenv_and_each_site_keeps_its_intersection(
    poc: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ember.envs.poc import PocEnv

    monkeypatch.syspath_prepend(str(FIXTURES))
    import psi_loaders

    args = {"sites": SITES, "seed": 21, "size": 2_000, "common": 640}
    recipe = DhPSIRecipe(name="poc-psi", min_clients=2, local_psi=psi_loaders.RandomIds(**args))
    run = PocEnv(clients=SITES, workspace=poc.root).deploy(recipe)
    run.get_result(timeout=240)
    assert run.get_status() == "FINISHED:COMPLETED", run.get_message()
    ids = psi_loaders.site_ids(**args)
    want = sorted(set(ids["site-1"]) & set(ids["site-2"]))
    assert len(want) == 640
    for kit in poc.clients:
        # <site kit>/jobs/<job id>/workspace/<output_path>: the file stays at the site
        path = kit.folder / "jobs" / run.get_job_id() / "workspace" / "psi" / "intersection.txt"
        assert path.read_text().splitlines() == want, kit.name
