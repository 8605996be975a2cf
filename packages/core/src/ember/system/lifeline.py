"""Job processes: each runs in a session of its own, and ends with its daemon (a killed
daemon leaves no orphans behind). A daemon keeps one spare ahead of its next job
(:class:`JobProcessStarter`), its imports done, so a job does not wait for them."""

from __future__ import annotations

import contextlib
import json
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


class JobProcessStarter:
    """Starts one daemon's job processes (all of one ``module``).

    With ``warm`` (``system.warm_job_processes``), one spare process
    (:mod:`ember.system.warm_start`) waits ahead of the next job, its imports of ``module``
    done: a job takes it (its arguments and log file go down the spare's stdin) instead of
    paying a new interpreter's start-up and imports, about half a second of CPU. The next
    spare starts once the process it replaced ends, so it never competes with that job for
    the CPU. A spare that died (or cannot be told its job) is replaced by a process started
    as ``python -m module``; so is every job process without ``warm``. Spares, like job
    processes, run in sessions of their own and end with their daemon.
    """

    def __init__(self, module: str, warm: bool) -> None:
        self.module = module
        self.warm = warm
        self._lock = threading.Lock()
        self._spare: subprocess.Popen[bytes] | None = None
        self._closed = False
        if warm:
            self._refill()

    def start(self, args: list[str], log_path: Path) -> subprocess.Popen[bytes]:
        """The job process for ``args``, its output appended to ``log_path``."""
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            spare, self._spare = self._spare, None
        proc = self._hand_over(spare, args, log_path) if spare is not None else None
        if proc is None:
            proc = spawn_job_process(self.module, args, log_path)
        if self.warm:
            threading.Thread(
                target=self._refill_after, args=(proc,), name="ember-spare", daemon=True
            ).start()
        return proc

    def close(self) -> None:
        """No more jobs: the spare, if any, ends (its stdin closes without a job)."""
        with self._lock:
            self._closed = True
            spare, self._spare = self._spare, None
        if spare is not None:
            self._discard(spare)

    def _hand_over(
        self, spare: subprocess.Popen[bytes], args: list[str], log_path: Path
    ) -> subprocess.Popen[bytes] | None:
        if spare.poll() is not None or spare.stdin is None:
            return None  # it died (killed, or its imports failed): a fresh process instead
        order = json.dumps({"args": args, "log": str(log_path)}).encode() + b"\n"
        try:
            spare.stdin.write(order)
            spare.stdin.close()
        except OSError:  # it died just now
            self._discard(spare)
            return None
        return spare

    def _refill(self) -> None:
        with self._lock:
            if self._closed or self._spare is not None:
                return
            self._spare = subprocess.Popen(
                [sys.executable, "-m", "ember.system.warm_start", self.module],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )

    def _refill_after(self, proc: subprocess.Popen[bytes]) -> None:
        proc.wait()
        self._refill()

    @staticmethod
    def _discard(spare: subprocess.Popen[bytes]) -> None:
        """End a spare that has no job (nothing of it to clean up) and reap it."""
        with contextlib.suppress(OSError):
            if spare.stdin is not None:
                spare.stdin.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(spare.pid, signal.SIGKILL)
        spare.wait()


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
