"""Lean site workspaces in SimEnv: one shared sites log for many sites, a site's folder
only when something is written there, carriers sized to the CPUs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ember import SimEnv
from ember.errors import RecipeArgumentError
from ember.runtime.sim_backends import usable_cpus
from support.sim import INITIAL, global_model, numpy_recipe, run_sim

COMPLETED = "FINISHED:COMPLETED"
SITES = [f"site-{i}" for i in range(1, 5)]


def run_four_sites(tmp_path: Path, script: str, shared_site_logs: int, num_rounds: int) -> Path:
    """A 4-site job of ``script`` with ``sim.shared_site_logs`` set; its finished workspace."""
    recipe = numpy_recipe(script, min_clients=4, num_rounds=num_rounds)
    recipe.set_config("sim.shared_site_logs", shared_site_logs)
    run = run_sim(recipe, tmp_path, num_clients=4)
    assert run.get_status() == COMPLETED, run.get_message()
    return Path(run.get_result())


def test_sites_beyond_shared_site_logs_write_one_sites_log_and_make_no_folders(
    tmp_path: Path,
) -> None:
    result = run_four_sites(tmp_path, "chatty_client.py", shared_site_logs=2, num_rounds=2)
    assert not any((result / site).exists() for site in SITES)
    text = (result / "sites" / "log.txt").read_text(encoding="utf-8").splitlines()
    records = [
        json.loads(line)
        for line in (result / "sites" / "log.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    assert len(records) == len(text)
    for site in SITES:
        own = [line for line in text if f".{site}" in line.split(": ", 1)[0]]
        # the site's own records and its script's printed lines, whole, each naming the site
        assert any(f"{site}: received task train (round 1)" in line for line in own)
        printed = [line for line in own if f".{site}.stdout: " in line]
        assert len(printed) == 2 * 15
        messages = [line.split(".stdout: ", 1)[1] for line in printed]
        assert all(m.startswith(f"{site} round ") and m.endswith(" end") for m in messages)
        assert any(r["logger"].endswith(f".{site}") for r in records)
    server_log = (result / "server" / "log.txt").read_text(encoding="utf-8")
    assert "4 sites write their logs to sites/log.txt (sim.shared_site_logs)" in server_log


def test_a_script_that_asks_for_its_config_finds_its_workspace_folder(tmp_path: Path) -> None:
    result = run_four_sites(tmp_path, "workspace_client.py", shared_site_logs=2, num_rounds=2)
    assert (result / "site-1" / "notes.txt").read_text().splitlines() == ["round 0", "round 1"]
    assert not any((result / site).exists() for site in SITES[1:])
    np.testing.assert_array_equal(global_model(result), INITIAL + 2)


def test_up_to_shared_site_logs_sites_each_keep_their_own_log_folder(tmp_path: Path) -> None:
    result = run_four_sites(tmp_path, "np_client.py", shared_site_logs=4, num_rounds=1)
    assert not (result / "sites").exists()
    for site in SITES:
        log = (result / site / "log.txt").read_text(encoding="utf-8")
        assert f"{site}: received task train (round 0)" in log
        assert (result / site / "log.jsonl").is_file()


def test_sites_that_stream_their_logs_keep_a_log_per_site(tmp_path: Path) -> None:
    recipe = numpy_recipe("chatty_client.py", min_clients=3, num_rounds=1)
    recipe.set_config("sim.shared_site_logs", 1)
    recipe.set_config("logs.stream", True)
    run = run_sim(recipe, tmp_path, num_clients=3)
    assert run.get_status() == COMPLETED, run.get_message()
    result = Path(run.get_result())
    assert not (result / "sites").exists()
    for site in SITES[:3]:
        streamed = result / "server" / "site_logs" / site / "log.txt"
        assert f"{site}: received task train (round 0)" in streamed.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", ["sites", "job", "server"])
def test_a_site_named_after_a_workspace_folder_is_refused_by_name(name: str) -> None:
    with pytest.raises(RecipeArgumentError, match=f"'{name}'"):
        SimEnv(clients=["site-1", name])


def test_carriers_are_as_many_as_the_cpus_unless_sim_carrier_threads_says(tmp_path: Path) -> None:
    recipe = numpy_recipe("np_client.py", min_clients=6, num_rounds=1)
    recipe.set_config("sim.script_threads", 2)
    run = run_sim(recipe, tmp_path / "auto", num_clients=6)
    assert run.get_status() == COMPLETED, run.get_message()
    log = (Path(run.get_result()) / "server" / "log.txt").read_text(encoding="utf-8")
    assert f"6 sites' scripts run on {min(6, usable_cpus())} carrier threads" in log

    recipe.set_config("sim.carrier_threads", 3)
    run = run_sim(recipe, tmp_path / "three", num_clients=6)
    assert run.get_status() == COMPLETED, run.get_message()
    log = (Path(run.get_result()) / "server" / "log.txt").read_text(encoding="utf-8")
    assert "6 sites' scripts run on 3 carrier threads" in log
