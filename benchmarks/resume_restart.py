"""How long a PoC job stands still when its server is killed (issue 23, docs/reliability.md).

A PoC system of two sites runs a 4-round numpy job; site-1 blocks once in round 2 (round 1
is checkpointed by then). The server daemon and the job's server process are killed with
SIGKILL, the daemon is started again, and the job resumes. From the daemon's logs and the
sites' job logs (timestamps, ms) it prints, per run, the seconds from the restart to:

- ``listening``: ``daemon.start`` returned (the server listens again);
- ``sites back``: the last client daemon reconnected;
- ``round 2 at the sites``: the last site received the redone round's task.

Two arms, default settings (``net.reconnect_backoff_max`` = 10 s): the server started again
at once, and after 5 s down (the client daemons' back-off has grown by then).

    python benchmarks/resume_restart.py [--reps 3]
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import signal
import statistics
import tempfile
import time
from pathlib import Path

from ember.config import reset_process_config
from ember.envs.poc import PocEnv, start_workspace, stop_workspace
from ember.recipes import NumpyFedAvgRecipe
from ember.system import daemon
from ember.system.admin import AdminClient
from ember.system.poc import prepare

SCRIPT = Path(__file__).parent.parent / "tests" / "core" / "fixtures" / "scripts" / "np_client.py"
STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


def stamps(path: Path, text: str, after: float) -> list[float]:
    """Times (epoch seconds) of the lines of ``path`` holding ``text``, from ``after`` on."""
    found = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        match = STAMP.match(line)
        if match and text in line:
            when = datetime.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            if when >= after:
                found.append(when)
    return found


def one_run(root: Path, down: float) -> tuple[float, float, float]:
    ws = prepare(root / "ws", num_clients=2)
    start_workspace(ws)
    markers = root / "markers"
    markers.mkdir()
    try:
        recipe = NumpyFedAvgRecipe(
            name="resume-bench",
            min_clients=2,
            num_rounds=4,
            model=__import__("numpy").zeros((2, 3), dtype="float32"),
            train_script=str(SCRIPT),
            train_args=f"--block-once site-1:2:{markers}",
        )
        run = PocEnv(clients=["site-1", "site-2"], workspace=ws.root).deploy(recipe)
        deadline = time.monotonic() + 120
        while not (markers / "site-1-2.started").exists():
            assert time.monotonic() < deadline, "site-1 never reached round 2"
            time.sleep(0.02)
        with AdminClient(ws.admin) as admin:
            job_pid = admin.system()["running_jobs"][run.get_job_id()]
        server_pid = daemon.pid_of(ws.server.folder)
        assert server_pid is not None
        os.kill(server_pid, signal.SIGKILL)
        os.kill(job_pid, signal.SIGKILL)
        for pid in (server_pid, job_pid):
            daemon.wait_gone(pid, 10.0)
        time.sleep(down)  # the outage being measured (not a synchronisation)
        t0 = time.time()
        daemon.start("server", ws.server.folder)
        listening = time.time() - t0
        run.get_result(timeout=120)
        assert run.get_status() == "FINISHED:COMPLETED", run.get_message()
        back = max(
            min(stamps(ws.server.folder / "log.txt", f"client {k.name} connected", t0))
            for k in ws.clients
        )
        received = max(
            min(
                stamps(
                    k.folder / "jobs" / run.get_job_id() / "workspace" / "log.txt",
                    "received task train (round 2)",
                    t0,
                )
            )
            for k in ws.clients
        )
        return listening, back - t0, received - t0
    finally:
        stop_workspace(ws)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    reset_process_config()
    for arm, down in (("restarted at once", 0.0), ("restarted after 5 s down", 5.0)):
        rows = []
        for _ in range(args.reps):
            with tempfile.TemporaryDirectory(prefix="ember-resume-") as tmp:
                rows.append(one_run(Path(tmp), down))
        for name, column in zip(
            ("listening", "sites back", "round 2 at the sites"),
            zip(*rows, strict=True),
            strict=True,
        ):
            values = ", ".join(f"{v:.2f}" for v in column)
            print(f"{arm:28} {name:22} median {statistics.median(column):.2f} s  ({values})")


if __name__ == "__main__":
    main()
