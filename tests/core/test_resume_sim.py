"""A simulation killed with SIGKILL between rounds resumes from its last checkpoint
(SimEnv(resume=True)) and ends with the same bits as a run that was never interrupted."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from ember import SimEnv
from ember.config import get_setting
from ember.runtime.checkpoint import STATE_FILE, checkpoint_folder, load_checkpoint
from support.sim import global_model, numpy_recipe, round_records

ROUNDS = 4
HANG_ROUND = 2

KILLED_RUN = """
import sys
sys.path.insert(0, {support!r})
from ember import SimEnv
from support.sim import numpy_recipe
recipe = numpy_recipe("resume_client.py", num_rounds={rounds}, key_metric="score")
recipe.execute(SimEnv(num_clients=2, workspace_root={root!r}, progress=False))
"""


def _recipe(**kwargs: object) -> object:
    return numpy_recipe("resume_client.py", num_rounds=ROUNDS, key_metric="score", **kwargs)


def _wait_for_checkpoint(server_dir: Path, rnd: int, proc: subprocess.Popen[bytes]) -> None:
    """Until workflow 0 has checkpointed round ``rnd`` (a deadline from a setting)."""
    deadline = time.monotonic() + float(get_setting("runtime.subprocess_connect_timeout"))
    folder = checkpoint_folder(server_dir, 0)
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        if (folder / STATE_FILE).exists():
            found = load_checkpoint(folder)
            if found is not None and found.round >= rnd:
                return
        time.sleep(0.02)  # polling a file another process writes: no event to wait on
    raise AssertionError(f"no checkpoint of round {rnd} in {folder}")


def test_a_killed_simulation_resumes_bit_identically_and_a_corrupt_checkpoint_names_its_file(
    tmp_path: Path,
) -> None:
    # the reference: never interrupted, with checkpoints off (none are written)
    plain = _recipe()
    plain.set_config("runtime.checkpoint", False)
    ref = Path(
        plain.execute(
            SimEnv(num_clients=2, workspace_root=str(tmp_path / "ref"), progress=False)
        ).get_result()
    )
    assert not (ref / "server" / "checkpoint").exists()

    # killed with SIGKILL while round HANG_ROUND is in flight
    root = tmp_path / "killed"
    support = str(Path(__file__).parent.parent)
    env = {**os.environ, "EMBER_TEST_HANG_ROUND": str(HANG_ROUND)}
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_RUN.format(support=support, rounds=ROUNDS, root=str(root))],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    server_dir = root / "test-job" / "server"
    try:
        _wait_for_checkpoint(server_dir, HANG_ROUND - 1, proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    found = load_checkpoint(checkpoint_folder(server_dir, 0))
    assert found is not None
    assert found.round == HANG_ROUND - 1
    assert found.state["next_round"] == HANG_ROUND

    # a copy with its model file cut short fails, naming the file
    corrupt_root = tmp_path / "corrupt"
    shutil.copytree(root, corrupt_root)
    model_file = checkpoint_folder(corrupt_root / "test-job" / "server", 0) / "model.safetensors"
    model_file.write_bytes(model_file.read_bytes()[:20])
    bad = _recipe().execute(
        SimEnv(num_clients=2, workspace_root=str(corrupt_root), progress=False, resume=True)
    )
    assert bad.get_status() == "FINISHED:EXECUTION_EXCEPTION"
    assert str(model_file) in bad.get_message()

    # as if the crash fell after round HANG_ROUND was recorded, before its checkpoint, and
    # cut a line short: the resumed run records that round once
    records = root / "test-job" / "server" / "round_metrics.jsonl"
    with records.open("a", encoding="utf-8") as f:
        f.write(json.dumps({"round": HANG_ROUND, "metrics": {}}) + "\n" + '{"round": ')

    # resumed: rounds HANG_ROUND.. only, the same final and best models as the reference
    run = _recipe().execute(
        SimEnv(num_clients=2, workspace_root=str(root), progress=False, resume=True)
    )
    assert run.get_status() == "FINISHED:COMPLETED", run.get_message()
    result = Path(run.get_result())
    np.testing.assert_array_equal(global_model(result), global_model(ref))
    assert global_model(result).tobytes() == global_model(ref).tobytes()
    assert global_model(result, "best_model").tobytes() == global_model(ref, "best_model").tobytes()
    assert [r["round"] for r in round_records(result)] == list(range(ROUNDS))
    log = (result / "server" / "log.txt").read_text()
    assert f"resumed from round {HANG_ROUND - 1}" in log
