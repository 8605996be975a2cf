"""``get_result(clean_up=True)`` on a PocEnv run stops the PoC system the env started and
keeps the results (NVFlare's clean_up removes the workspace; Ember's PoC system holds them)."""

from __future__ import annotations

from pathlib import Path

from ember.envs.poc import PocEnv
from ember.system import daemon
from ember.system.poc import PocWorkspace
from support.sim import INITIAL, global_model, numpy_recipe


def test_clean_up_stops_the_poc_daemons_and_keeps_the_result(tmp_path: Path) -> None:
    env = PocEnv(num_clients=2, workspace=tmp_path / "poc")
    run = env.deploy(numpy_recipe(num_rounds=1))
    ws = PocWorkspace.load(tmp_path / "poc")
    daemons = [k.folder for k in ws.participants if daemon.pid_of(k.folder) is not None]
    assert len(daemons) == 3  # the server and two clients (the admin kit runs no daemon)
    result = Path(run.get_result(timeout=240, clean_up=True))
    assert run.get_status() == "FINISHED:COMPLETED"
    assert (global_model(result) == INITIAL + 1).all()  # the result stays
    assert all(daemon.pid_of(folder) is None for folder in daemons)
