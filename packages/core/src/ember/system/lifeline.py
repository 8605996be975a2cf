"""Job processes end with their daemon: a killed daemon leaves no orphans behind."""

from __future__ import annotations

import os
import signal
import threading


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
