"""Start, stop and query the daemons of a workspace: ``python -m ember.system.daemon KIND
FOLDER READY_FD`` runs one; :func:`start` launches it detached with a PID file.

A daemon tells its starter it is up through a pipe (the server once it listens, a client
once it is connected), so starting waits on an event, not on a guess. Stopping sends SIGTERM
to the daemon's process group (its job processes included) and SIGKILL after
``system.stop_timeout``.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ember.config import describe_setting, get_setting
from ember.errors import EmberError

PID_FILE = "daemon.pid"
LOG_FILE = "daemon.log"
_children: dict[int, subprocess.Popen[bytes]] = {}  # daemons this process started: reaped here


class DaemonError(EmberError, RuntimeError):
    """A daemon did not start or stop as asked; the message says why (with its log tail)."""


def _tail(path: Path, lines: int = 15) -> str:
    if not path.is_file():
        return "(no log)"
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


def permanent(exc: Exception) -> bool:
    """Whether a connect error will not pass by waiting: a TLS or identity refusal, a
    security mismatch (a name still held by a dying connection passes, as does an
    unreachable hub or a timeout)."""
    kind = getattr(exc, "kind", "unreachable")
    if kind == "refused" and "already connected" in str(exc):
        return False
    return kind in ("tls", "refused", "security")


def serve(kind: str, folder: Path, ready_fd: int | None) -> None:
    """Run a daemon in this process until SIGTERM/SIGINT."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    daemon: Any
    if kind == "server":
        from ember.system.server import ServerDaemon

        daemon = ServerDaemon(folder)
        daemon.start()
    elif kind == "client":
        from ember.net import ConnectError
        from ember.system.client import ClientDaemon

        daemon = ClientDaemon(folder)
        tries, refused = int(get_setting("system.start_refused_tries")), 0
        backoff, most = 1.0, max(1.0, float(get_setting("net.reconnect_backoff_max")))
        while True:  # the server may not be up yet: keep dialing until it is, or we stop
            try:
                daemon.start(float(get_setting("system.start_timeout")))
                break
            except ConnectError as exc:
                if permanent(exc):
                    refused += 1
                    if refused >= tries:
                        print(
                            f"giving up after {refused} tries (system.start_refused_tries): "
                            f"the hub refuses this site for good: {exc}",
                            file=sys.stderr,
                            flush=True,
                        )
                        sys.exit(3)
                print(f"not connected yet: {exc}", flush=True)
                if stop.wait(backoff):
                    return
                backoff = min(2 * backoff, most)
    else:
        raise DaemonError(f"unknown daemon kind {kind!r}")
    if ready_fd is not None:
        os.write(ready_fd, b"ready\n")
        os.close(ready_fd)
    print(f"{kind} daemon up (pid {os.getpid()})", flush=True)
    stop.wait()
    daemon.stop()


def pid_of(folder: Path) -> int | None:
    """The daemon's PID if its PID file names a live process."""
    path = Path(folder) / PID_FILE
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    child = _children.get(pid)
    if child is not None and child.poll() is not None:  # ours, and dead (reaped now)
        del _children[pid]
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


def start(kind: str, folder: Path, timeout: float | None = None) -> int:
    """Launch the daemon of ``folder`` detached; returns its PID once it is up."""
    folder = Path(folder)
    if (pid := pid_of(folder)) is not None:
        return pid
    timeout = float(get_setting("system.start_timeout")) if timeout is None else timeout
    read_fd, write_fd = os.pipe()
    log = folder / LOG_FILE
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ember.system.daemon", kind, str(folder), str(write_fd)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            pass_fds=(write_fd,),
            start_new_session=True,
        )
    os.close(write_fd)
    _children[proc.pid] = proc
    (folder / PID_FILE).write_text(f"{proc.pid}\n")
    try:
        ready, _, _ = select.select([read_fd], [], [], timeout)
        data = os.read(read_fd, 64) if ready else b""
    finally:
        os.close(read_fd)
    if data.startswith(b"ready"):
        return proc.pid
    if ready:  # the pipe closed: the daemon died
        code = proc.wait()
        raise DaemonError(
            f"the {kind} daemon in {folder} exited (code {code}) while starting:\n{_tail(log)}"
        )
    _kill_group(proc.pid, 0.0)
    raise DaemonError(
        f"the {kind} daemon in {folder} was not up within "
        f"{describe_setting('system.start_timeout', timeout)}:"
        f"\n{_tail(log)}"
    )


def wait_gone(pid: int, timeout: float) -> bool:
    """Wait for a process that is not our child to end (pidfd where Linux has it)."""
    deadline = time.monotonic() + timeout
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        fd = None
    if fd is not None:
        try:
            ready, _, _ = select.select([fd], [], [], max(0.0, timeout))
            return bool(ready)
        finally:
            os.close(fd)
    while time.monotonic() < deadline:  # no pidfd: poll the PID
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def _kill_group(pid: int, grace: float) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    if not (grace and wait_gone(pid, grace)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        wait_gone(pid, 5.0)
    child = _children.pop(pid, None)
    if child is not None:  # started by this process: reap it (no zombie left behind)
        child.wait(5.0)


def stop(folder: Path, timeout: float | None = None) -> bool:
    """Stop the daemon of ``folder`` (and its job processes); False if none ran."""
    folder = Path(folder)
    pid = pid_of(folder)
    (folder / PID_FILE).unlink(missing_ok=True)
    if pid is None:
        return False
    _kill_group(pid, float(get_setting("system.stop_timeout")) if timeout is None else timeout)
    return True


def main() -> None:
    kind, folder = sys.argv[1], Path(sys.argv[2])
    ready_fd = int(sys.argv[3]) if len(sys.argv) > 3 else None
    serve(kind, folder, ready_fd)


if __name__ == "__main__":
    main()
