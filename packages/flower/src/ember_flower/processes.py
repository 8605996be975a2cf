"""Flower's processes: each started under a guard that ends its whole process group when the
Ember process holding the guard's stdin closes it, exits or is killed.

``python -m ember_flower.guard CMD...`` is the guard: it starts ``CMD`` in a new process
group and waits; at EOF on its stdin it sends SIGTERM to the group, SIGKILL after
``flower.stop_timeout`` (passed as ``EMBER_FLOWER_STOP_TIMEOUT``); when ``CMD`` exits by
itself it kills what is left of the group and exits with ``CMD``'s code.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from ember.errors import EmberError

_STOP_ENV = "EMBER_FLOWER_STOP_TIMEOUT"  # ember_flower.guard reads it (not imported: run with -m)


class FlowerError(EmberError, RuntimeError):
    """A Flower process did not start, failed, or a Flower run could not be followed."""


def flower_env(home: Path) -> dict[str, str]:
    """The environment of every Flower process: its own ``FLWR_HOME``, no telemetry or update
    check (they start a network thread), and this interpreter's bin folder first on PATH
    (Flower starts ``flower-superexec`` and ``flwr-*app`` by name)."""
    env = dict(os.environ)
    bin_dir = str(Path(sys.executable).parent)
    env.update(
        FLWR_HOME=str(home),
        FLWR_TELEMETRY_ENABLED="0",
        FLWR_DISABLE_UPDATE_CHECK="1",
        PATH=os.pathsep.join([bin_dir, env.get("PATH", "")]),
        PYTHONUNBUFFERED="1",
    )
    return env


def executable(name: str) -> str:
    """The path of Flower's ``name`` command beside this interpreter."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise FlowerError(
            f"{name} is not installed beside {sys.executable}; install ember-flower (it "
            "brings flwr) into this environment"
        )
    return str(path)


def free_port() -> int:
    """A loopback port free now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Guarded:
    """``command`` running under the guard (see the module docstring), its output in ``log``."""

    def __init__(
        self,
        command: Sequence[str],
        env: dict[str, str],
        log: Path,
        stop_timeout: float,
        cwd: Path | None = None,
    ) -> None:
        self.command = list(command)
        self.log_path = log
        self.stop_timeout = stop_timeout
        log.parent.mkdir(parents=True, exist_ok=True)
        self._log: IO[bytes] = open(log, "ab")  # noqa: SIM115 (closed by stop)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ember_flower.guard", *self.command],
            stdin=subprocess.PIPE,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**env, _STOP_ENV: str(stop_timeout)},
            cwd=cwd,
        )

    def alive(self) -> bool:
        return self.process.poll() is None

    def tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text("utf-8", "replace")[-chars:].strip()
        except OSError:
            return ""

    def stop(self) -> int | None:
        """End the process group (idempotent); the guard's exit code."""
        if self.process.stdin is not None and not self.process.stdin.closed:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        try:
            code = self.process.wait(self.stop_timeout + 5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self._log.close()
        return code
