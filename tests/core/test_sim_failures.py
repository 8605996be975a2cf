"""Failures in SimEnv end the job with the site and the reason, never a hang."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ember import SimEnv
from support.sim import INITIAL, global_model, numpy_recipe, round_records, run_sim

FAILED = "FINISHED:EXECUTION_EXCEPTION"


@pytest.mark.parametrize("external", [False, True])
def test_a_raising_script_fails_the_job_with_site_and_traceback(
    tmp_path: Path, external: bool
) -> None:
    recipe = numpy_recipe(train_args="--fail site-2:1", launch_external_process=external)
    run = run_sim(recipe, tmp_path)
    assert run.get_status() == FAILED
    message = run.get_message()
    assert "min_clients=2" in message
    assert "site-2" in message
    assert "RuntimeError: planned failure on site-2 in round 1" in message
    assert "Traceback" in message
    server_log = (Path(run.get_result()) / "server" / "log.txt").read_text()
    assert "site site-2 failed" in server_log
    assert "planned failure" in server_log


def test_nonzero_exit_of_a_subprocess_is_reported(tmp_path: Path) -> None:
    recipe = numpy_recipe(train_args="--exit site-1:0:3", launch_external_process=True)
    run = run_sim(recipe, tmp_path)
    assert run.get_status() == FAILED
    assert "site-1: np_client.py exited with code 3" in run.get_message()


def test_in_process_sys_exit_nonzero_is_a_failure(tmp_path: Path) -> None:
    run = run_sim(numpy_recipe(train_args="--exit site-1:0:4"), tmp_path)
    assert run.get_status() == FAILED
    assert "np_client.py exited with status 4" in run.get_message()


def test_dead_client_below_min_clients_fails_instead_of_waiting(tmp_path: Path) -> None:
    recipe = numpy_recipe(min_clients=3, train_args="--quit site-3:1")
    run = run_sim(recipe, tmp_path, num_clients=3)
    assert run.get_status() == FAILED
    assert "needs results from min_clients=3 sites" in run.get_message()
    assert "site-3" in run.get_message()
    assert [r["round"] for r in round_records(run.get_result())] == [0]


def test_dead_client_above_min_clients_lets_the_job_complete(tmp_path: Path) -> None:
    recipe = numpy_recipe(min_clients=2, train_args="--quit site-3:1")
    run = run_sim(recipe, tmp_path, num_clients=3)
    assert run.get_status() == "FINISHED:COMPLETED", run.get_message()
    records = round_records(run.get_result())
    assert [r["sites"] for r in records] == [
        ["site-1", "site-2", "site-3"],
        ["site-1", "site-2"],
        ["site-1", "site-2"],
    ]
    assert "site-3" in records[1]["failed"]
    np.testing.assert_array_equal(global_model(run.get_result()), INITIAL + 3)


def test_hung_site_is_left_out_after_the_task_timeout(tmp_path: Path) -> None:
    recipe = numpy_recipe(
        min_clients=1, num_rounds=2, train_args="--hang site-2:0", launch_external_process=True
    )
    recipe.set_config("runtime.task_timeout", 8.0)
    recipe.set_config("runtime.site_stop_timeout", 1.0)
    run = run_sim(recipe, tmp_path)
    assert run.get_status() == "FINISHED:COMPLETED", run.get_message()
    records = round_records(run.get_result())
    assert records[0]["timed_out"] == ["site-2"]
    assert records[0]["sites"] == ["site-1"]


def test_hung_site_below_min_clients_fails_with_the_timeout(tmp_path: Path) -> None:
    recipe = numpy_recipe(num_rounds=1, train_args="--hang site-2:0", launch_external_process=True)
    recipe.set_config("runtime.task_timeout", 8.0)
    recipe.set_config("runtime.site_stop_timeout", 1.0)
    run = run_sim(recipe, tmp_path)
    assert run.get_status() == FAILED
    assert "timed out: site-2" in run.get_message()


def test_abort_stops_a_running_job(tmp_path: Path) -> None:
    recipe = numpy_recipe(num_rounds=2, train_args="--hang site-2:0", launch_external_process=True)
    recipe.set_config("runtime.site_stop_timeout", 1.0)
    env = SimEnv(num_clients=2, workspace_root=str(tmp_path), wait=False, progress=False)
    run = recipe.execute(env)
    assert run.get_status() in ("SUBMITTED", "RUNNING")
    run.abort()
    assert run.get_status() == "FINISHED:ABORTED"
    assert run.get_message() == "aborted by the user"
    assert Path(run.get_result(timeout=30)).is_dir()


def test_unknown_setting_in_recipe_config_is_refused() -> None:
    from ember.config import ConfigError

    with pytest.raises(ConfigError, match=r"unknown setting 'runtime\.task_timout'"):
        numpy_recipe().set_config("runtime.task_timout", 1.0)


def test_sigterm_aborts_the_job_and_leaves_no_subprocess(tmp_path: Path) -> None:
    job = tmp_path / "job.py"
    tests = Path(__file__).parents[1]
    job.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(tests)!r})\n"
        "from ember import SimEnv\n"
        "from support.sim import numpy_recipe\n"
        "recipe = numpy_recipe(launch_external_process=True,\n"
        "                      train_args='--term-parent site-1:0 --hang site-2:0')\n"
        "recipe.set_config('runtime.site_stop_timeout', 1.0)\n"
        f"recipe.execute(SimEnv(num_clients=2, workspace_root={str(tmp_path)!r}))\n"
    )
    done = subprocess.run([sys.executable, str(job)], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "KeyboardInterrupt" in done.stderr
    meta = json.loads((tmp_path / "test-job" / "meta.json").read_text())
    assert meta["status"] == "FINISHED:ABORTED"
    assert meta["message"] == "interrupted (Ctrl-C or SIGTERM)"
    for site in ("site-1", "site-2"):
        log = (tmp_path / "test-job" / site / "log.txt").read_text()
        pid = int(re.search(r"\(pid (\d+)\)", log).group(1))  # type: ignore[union-attr]
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_diff_results_for_a_full_recipe_name_the_fix(tmp_path: Path) -> None:
    run = run_sim(numpy_recipe(train_args="--send-diff"), tmp_path)
    assert run.get_status() == FAILED
    assert "set params_transfer_type='DIFF'" in run.get_message()


def test_strangers_reaching_a_sites_script_endpoint_first_are_dropped_and_the_script_served(
    tmp_path: Path,
) -> None:
    recipe = numpy_recipe("intruder_first_client.py", num_rounds=2, launch_external_process=True)
    run = run_sim(recipe, tmp_path)
    assert run.get_status() == "FINISHED:COMPLETED", run.get_message()
    np.testing.assert_array_equal(global_model(run.get_result()), INITIAL + 2)
