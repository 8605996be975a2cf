"""Job processes: each runs in a session of its own, and ends with its daemon (a killed
daemon leaves no orphans behind)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path


def spawn_job_process(module: str, args: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    """``python -m module *args`` in a new session (so the daemon can end its whole process
    group: the job and its scripts), output appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", module, *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def watch_parent(parent: int, interval: float = 1.0) -> None:
    """Kill this process's group (the job process and its scripts) once ``parent`` is gone.

    A job process runs in its own session, so the daemon can end one job's whole group; the
    flip side is that a SIGKILLed daemon cannot take it along, hence this watch.
    """

    def watch() -> None:
        stop = threading.Event()
        while not stop.wait(interval):
            if os.getppid() != parent:
                os.killpg(os.getpgrp(), signal.SIGKILL)

    threading.Thread(target=watch, name="ember-lifeline", daemon=True).start()
