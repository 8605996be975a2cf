"""The guard of every Flower process (see :mod:`ember_flower.processes`): ``python -m
ember_flower.guard CMD...`` runs ``CMD`` in a new process group; at EOF on stdin it sends
the group SIGTERM, then SIGKILL after ``EMBER_FLOWER_STOP_TIMEOUT`` seconds; when ``CMD``
exits by itself it kills what is left of the group and exits with ``CMD``'s code (128 +
the signal when a signal ended it). Imports nothing of Ember (it starts fast)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time

STOP_ENV = "EMBER_FLOWER_STOP_TIMEOUT"


def _become_subreaper() -> None:
    """On Linux, orphans of the command's tree (Flower starts its ServerApp in a session of
    its own) become the guard's children instead of init's, so the guard can end them."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER


def _descendants() -> list[int]:
    """The guard's descendants, from /proc (empty where there is none)."""
    children: dict[int, list[int]] = {}
    with contextlib.suppress(OSError):
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/stat", encoding="ascii", errors="replace") as stat:
                    ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(name))
    found, todo = [], [os.getpid()]
    while todo:
        for pid in children.get(todo.pop(), []):
            found.append(pid)
            todo.append(pid)
    return found


def _signal_all(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
    for pid in _descendants():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _kill_until_gone(pgid: int, grace: float) -> None:
    """SIGKILL the group and every descendant until none is left (a process can start a
    child between one sweep of /proc and its own death: the next sweep ends that child),
    reaping the orphans that became the guard's children; bounded by ``grace``."""
    deadline = time.monotonic() + max(grace, 1.0)
    while True:
        _signal_all(pgid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0] != 0:
                pass
        if not _descendants() or time.monotonic() > deadline:
            return
        time.sleep(0.005)  # the kernel finishes the SIGKILLs; then sweep again


def _end_all(pgid: int, child: subprocess.Popen[bytes], grace: float) -> None:
    _signal_all(pgid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        child.wait(grace)
    _kill_until_gone(pgid, grace)


def main(argv: list[str] | None = None) -> None:
    command = list(sys.argv[1:] if argv is None else argv)
    grace = float(os.environ.pop(STOP_ENV, "10"))
    _become_subreaper()
    child = subprocess.Popen(command, stdin=subprocess.DEVNULL, start_new_session=True)

    def watch_stdin() -> None:
        sys.stdin.buffer.read()  # returns at EOF: the Ember process closed it or is gone
        _end_all(child.pid, child, grace)

    threading.Thread(target=watch_stdin, daemon=True).start()
    code = child.wait()
    _kill_until_gone(child.pid, grace)  # what the command left behind
    os._exit(code if code >= 0 else 128 - code)


if __name__ == "__main__":
    main()
