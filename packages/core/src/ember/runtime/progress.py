"""A live progress line on a terminal; silent when output is not a TTY."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, TextIO


class Progress:
    """Round, sites reported and the last metrics, redrawn in place on a terminal."""

    def __init__(
        self, job_name: str, stream: TextIO | None = None, enabled: bool | None = None
    ) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.job_name = job_name
        self._lock = threading.Lock()
        self._round = 0
        self._rounds = 0
        self._expected = 0
        self._reported = 0
        self._metrics: dict[str, float] = {}
        self._start = time.monotonic()

    def round_started(self, rnd: int, rounds: int, sites: int) -> None:
        with self._lock:
            self._round, self._rounds, self._expected, self._reported = rnd, rounds, sites, 0
            self._draw()

    def result_received(self, site: str) -> None:
        with self._lock:
            self._reported += 1
            self._draw()

    def round_done(self, rnd: int, metrics: dict[str, Any]) -> None:
        with self._lock:
            self._metrics = {k: v for k, v in metrics.items() if isinstance(v, int | float)}
            self._draw()

    def finish(self, status: str) -> None:
        if self.enabled:
            with self._lock:
                self._draw()
                self.stream.write(f"  {status}\n")
                self.stream.flush()

    def _draw(self) -> None:
        if not self.enabled:
            return
        metrics = " ".join(f"{k}={v:.4g}" for k, v in list(self._metrics.items())[:4])
        line = (
            f"\r{self.job_name}: round {self._round + 1}/{self._rounds}  "
            f"sites {self._reported}/{self._expected}  {metrics}  "
            f"[{time.monotonic() - self._start:.1f}s]"
        )
        self.stream.write(line.ljust(100)[:160])
        self.stream.flush()
