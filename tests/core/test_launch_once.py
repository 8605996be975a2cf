"""``launch_once=False``: each task starts the site's script anew (NVFlare's ScriptRunner)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ember import SimEnv
from ember.client.session import ClientSession
from ember.common.messages import Task, TaskName, TaskResult
from ember.common.model import FLModel
from ember.job.definition import JOB_FILE, JobDefinition
from ember.recipes.validation import RecipeArgumentError
from support.sim import global_model, numpy_recipe, run_sim

FAILED = "FINISHED:EXECUTION_EXCEPTION"
COMPLETED = "FINISHED:COMPLETED"

PID_SCRIPT = """\
import os

import ember.client as flare
from ember.client import NUMPY_KEY, FLModel, ParamsType

flare.init()
folder = flare.get_config()["workspace"]
while flare.is_running():
    model = flare.receive()
    if model is None:
        break
    with open(os.path.join(folder, "pids.txt"), "a") as out:
        out.write(f"{os.getpid()} {model.current_round}\\n")
    weights = model.params[NUMPY_KEY]
    flare.send(FLModel(params_type=ParamsType.FULL, params={NUMPY_KEY: weights + 1}))
"""


def _pid_script(tmp_path: Path) -> str:
    folder = tmp_path / "script"
    folder.mkdir()
    (folder / "pid_client.py").write_text(PID_SCRIPT)
    return str(folder / "pid_client.py")


def _pids(result: str | Path, site: str) -> list[tuple[int, int]]:
    [path] = Path(result).glob(f"**/{site}/pids.txt")
    return [
        (int(pid), int(rnd))
        for pid, rnd in (line.split() for line in path.read_text().split("\n") if line)
    ]


@pytest.mark.parametrize("streamed", [False, True])
def test_a_job_with_launch_once_false_gives_the_same_global_model_as_launch_once_true(
    tmp_path: Path, streamed: bool
) -> None:
    models = {}
    for once in (True, False):
        recipe = numpy_recipe(train_args="--noise", launch_external_process=True, launch_once=once)
        if streamed:  # the results' arrays are pulled from the scripts' processes
            recipe.set_config("streaming.min_tensor_bytes", 1)
        run = run_sim(recipe, tmp_path / str(once))
        assert run.get_status() == COMPLETED, run.get_message()
        models[once] = global_model(run.get_result())
    assert models[True].dtype == models[False].dtype
    assert models[True].tobytes() == models[False].tobytes()


def test_the_script_is_started_once_per_task_with_launch_once_false(tmp_path: Path) -> None:
    script = _pid_script(tmp_path)
    recipe = numpy_recipe(script, launch_external_process=True, launch_once=False)
    run = run_sim(recipe, tmp_path / "per-task")
    assert run.get_status() == COMPLETED, run.get_message()
    every = set()
    for site in ("site-1", "site-2"):
        seen = _pids(run.get_result(), site)
        assert [rnd for _, rnd in seen] == [0, 1, 2]  # one line per task, in order
        pids = {pid for pid, _ in seen}
        assert len(pids) == 3  # a process of its own for each of the site's 3 tasks
        every |= pids
    assert len(every) == 6  # 2 sites x 3 rounds
    np.testing.assert_array_equal(
        global_model(run.get_result()), np.arange(6, dtype=np.float32).reshape(2, 3) + 3
    )


def test_the_script_is_started_once_per_job_with_launch_once_true(tmp_path: Path) -> None:
    script = _pid_script(tmp_path)
    run = run_sim(numpy_recipe(script, launch_external_process=True), tmp_path / "once")
    assert run.get_status() == COMPLETED, run.get_message()
    for site in ("site-1", "site-2"):
        seen = _pids(run.get_result(), site)
        assert [rnd for _, rnd in seen] == [0, 1, 2]
        assert len({pid for pid, _ in seen}) == 1


def test_a_script_that_crashes_in_its_second_round_fails_the_site_with_the_reason(
    tmp_path: Path,
) -> None:
    recipe = numpy_recipe(
        train_args="--fail site-2:1", launch_external_process=True, launch_once=False
    )
    run = run_sim(recipe, tmp_path)
    assert run.get_status() == FAILED
    message = run.get_message()
    assert "site-2" in message
    assert "np_client.py exited with code 1 in task train (round 1)" in message
    assert "RuntimeError: planned failure on site-2 in round 1" in message


def test_a_script_that_exits_nonzero_fails_the_site_with_its_exit_code(tmp_path: Path) -> None:
    recipe = numpy_recipe(
        train_args="--exit site-1:1:3", launch_external_process=True, launch_once=False
    )
    run = run_sim(recipe, tmp_path)
    assert run.get_status() == FAILED
    assert "site-1: np_client.py exited with code 3 in task train (round 1)" in run.get_message()


def test_a_script_that_exits_without_sending_fails_the_site_with_the_reason(
    tmp_path: Path,
) -> None:
    recipe = numpy_recipe(
        train_args="--quit site-1:2", launch_external_process=True, launch_once=False
    )
    run = run_sim(recipe, tmp_path)
    assert run.get_status() == FAILED
    message = run.get_message()
    assert "site-1: np_client.py exited without sending the result of task train (round 2)" in (
        message
    )


def test_an_abort_stops_the_process_of_the_task_in_hand(tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    recipe = numpy_recipe(
        num_rounds=2,
        train_args=f"--block site-2:0:{marks}",
        launch_external_process=True,
        launch_once=False,
    )
    recipe.set_config("runtime.site_stop_timeout", 1.0)
    env = SimEnv(num_clients=2, workspace_root=str(tmp_path / "ws"), wait=False, progress=False)
    run = recipe.execute(env)
    deadline = time.monotonic() + 30
    while not (marks / "site-2-0.started").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    pid = int((marks / "site-2-0.started").read_text())
    run.abort()
    assert run.get_status() == "FINISHED:ABORTED"
    assert Path(run.get_result(timeout=30)).is_dir()
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie until its parent reaps it: gone as far as the job is concerned
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


def test_launch_once_false_without_launch_external_process_is_refused() -> None:
    with pytest.raises(RecipeArgumentError, match="needs launch_external_process=True"):
        numpy_recipe(launch_once=False)


def test_launch_once_is_stored_in_job_json_and_old_job_files_load_with_true(
    tmp_path: Path,
) -> None:
    recipe = numpy_recipe(launch_external_process=True, launch_once=False)
    job_dir = recipe.export(tmp_path / "job")
    data = json.loads((job_dir / JOB_FILE).read_text())
    assert data["client"]["launch_once"] is False
    assert JobDefinition.from_dir(job_dir).client.launch_once is False
    del data["client"]["launch_once"]  # a job.json written before the field existed
    (job_dir / JOB_FILE).write_text(json.dumps(data))
    assert JobDefinition.from_dir(job_dir).client.launch_once is True


class _OneTaskLink:
    def __init__(self) -> None:
        self.results: list[TaskResult] = []

    def get_task(self, wait: float) -> Task | str | None:
        return Task(task_id="t1", name=TaskName.TRAIN, data=FLModel(params={}))

    def submit_result(self, result: TaskResult) -> bool:
        self.results.append(result)
        return True

    def log_metrics(self, records: Any) -> None:
        pass

    def report_failure(self, reason: str) -> None:
        pass

    def report_done(self) -> None:
        pass


@pytest.mark.parametrize("launch_once", [True, False])
def test_is_running_turns_false_after_the_one_task_is_sent_when_the_site_says_so(
    launch_once: bool,
) -> None:
    link = _OneTaskLink()
    session = ClientSession("site-1", "job", link, {"launch_once": launch_once}, 0.01)
    assert session.is_running()
    assert session.receive() is not None
    session.send(FLModel(params={}))
    assert session.is_running() is launch_once
    if not launch_once:
        start = time.monotonic()
        assert session.receive() is None
        assert time.monotonic() - start < 1
    assert len(link.results) == 1


def test_launch_once_false_in_a_poc_system_gives_the_bits_of_simenv(tmp_path: Path) -> None:
    from ember.envs.poc import PocEnv, start_workspace, stop_workspace
    from ember.system.poc import prepare

    initial = np.arange(1 << 20, dtype=np.float32).reshape(1024, 1024)  # 4 MiB: pulled
    sim = run_sim(numpy_recipe(num_rounds=2, model=initial, train_args="--noise"), tmp_path / "sim")
    assert sim.get_status() == COMPLETED, sim.get_message()
    ws = prepare(tmp_path / "poc", num_clients=2)
    start_workspace(ws)
    try:
        recipe = numpy_recipe(
            num_rounds=2,
            model=initial,
            train_args="--noise",
            launch_external_process=True,
            launch_once=False,
        )
        run = PocEnv(clients=["site-1", "site-2"], workspace=ws.root).deploy(recipe)
        result = Path(run.get_result(timeout=240))
        assert run.get_status() == COMPLETED, run.get_message()
    finally:
        stop_workspace(ws)
    assert global_model(result).tobytes() == global_model(sim.get_result()).tobytes()
