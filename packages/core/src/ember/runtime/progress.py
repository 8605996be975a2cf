"""SimEnv's console: a live progress display at the bottom of a terminal, the sites' script
output scrolling above it, each line prefixed by its site; plain lines when stdout is not a
terminal; nothing at all with ``sim.progress = off`` (or ``SimEnv(progress=False)``).

The live display is `rich <https://rich.readthedocs.io>`_'s ``Progress`` (imported only when
there is a terminal to draw on): round m/n with a bar, sites done / training / failed in the
round, the last round's metrics, the elapsed and the estimated remaining time. Script lines
are printed through rich's console, which draws them above the display and redraws the
display below, so neither overwrites the other.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, TextIO

from ember.common.setting import ConfigError
from ember.runtime.inprocess_site import show_other_output

MODES = ("auto", "plain", "off")


def _terminal(stream: TextIO) -> TextIO:
    """The stream under the per-thread output router (``inprocess_site``), if it is one."""
    return getattr(stream, "original", stream)


class Progress:
    """Round, sites done / training / failed, metrics and times of one job; and the place
    the sites' script lines are shown (:meth:`script_line`).

    ``enabled``: False is ``off``; None or True follow ``mode`` (the ``sim.progress``
    setting): ``auto`` draws live on a terminal and writes plain lines otherwise."""

    def __init__(
        self,
        job_name: str,
        stream: TextIO | None = None,
        enabled: bool | None = None,
        mode: str = "auto",
    ) -> None:
        if mode not in MODES:
            raise ConfigError(f"setting sim.progress must be one of {MODES}, got {mode!r}")
        self.stream = _terminal(stream or sys.stdout)
        if enabled is False:
            mode = "off"
        elif mode == "auto":
            isatty = getattr(self.stream, "isatty", None)
            mode = "live" if isatty is not None and isatty() else "plain"
        self.mode = mode
        self.enabled = mode != "off"
        self.job_name = job_name
        self._lock = threading.Lock()
        self._round = 0
        self._rounds = 0
        self._expected = 0
        self._reported = 0
        self._failed_at_start = 0
        self._rounds_done = 0
        self._metrics: dict[str, float] = {}
        self._board: Any = None
        self._start = time.monotonic()
        self._rounds_from = self._start  # when the workflow's first round started
        self._live: Any = None
        self._task: Any = None
        #: the metric shown first (a workflow's ``key_metric``); others follow, 3 in all
        self.key_metric: str | None = None

    # -- what the job tells it ------------------------------------------------------------
    def watch(self, board: Any) -> None:
        """Count failed sites from this task board (``sites[...].failure``)."""
        self._board = board

    def start(self) -> None:
        """Begin drawing (live mode); the sites' lines then scroll above the display."""
        if self.mode != "live" or self._live is not None:
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as RichProgress

        console = Console(file=self.stream, highlight=False, emoji=False)
        self._live = RichProgress(
            TextColumn("[bold]{task.description}"),
            TextColumn("round"),
            MofNCompleteColumn(),
            BarColumn(bar_width=20),
            TextColumn("{task.fields[sites]}"),
            TextColumn("{task.fields[metrics]}"),
            TimeElapsedColumn(),
            TextColumn("left"),
            TimeRemainingColumn(),
            console=console,
            redirect_stdout=False,  # inprocess_site routes script output here itself
            redirect_stderr=False,
            refresh_per_second=4,
        )
        self._task = self._live.add_task(self.job_name, total=None, sites="", metrics="")
        self._live.start()
        # what other threads print (job.py's own prints, a logging handler on stderr)
        # scrolls above the display too
        show_other_output(self.print_line)

    def round_started(self, rnd: int, rounds: int, sites: int) -> None:
        with self._lock:
            if rnd == 0:  # a workflow's first round (cross-site evaluation after FedAvg)
                self._rounds_done = 0
                self._rounds_from = time.monotonic()
            self._round, self._rounds, self._expected, self._reported = rnd, rounds, sites, 0
            self._failed_at_start = self._failed()
            if self.mode == "plain":
                self._plain(f"round {rnd + 1}/{rounds} started on {sites} sites")
            self._draw()

    def result_received(self, site: str) -> None:
        with self._lock:
            self._reported += 1
            self._draw()

    def round_done(self, rnd: int, metrics: dict[str, Any]) -> None:
        with self._lock:
            self._metrics = {
                k: float(v)
                for k, v in metrics.items()
                if isinstance(v, int | float) and not isinstance(v, bool)
            }
            self._rounds_done = max(self._rounds_done, rnd + 1)
            if self.mode == "plain":
                self._plain(
                    f"round {rnd + 1}/{self._rounds} done: {self._sites_text()}"
                    + (f"  {self._metrics_text()}" if self._metrics else "")
                    + f"  [{self._times_text()}]"
                )
            self._draw()

    def finish(self, status: str) -> None:
        with self._lock:
            elapsed = time.monotonic() - self._start
            if self._live is not None:
                self._draw()
                show_other_output(None)
                self._live.stop()
                self._live.console.print(f"{self.job_name}: {status} in {elapsed:.1f}s")
                self._live = None
            elif self.mode == "plain":
                self._plain(f"{status} in {elapsed:.1f}s")

    # -- the sites' output ----------------------------------------------------------------
    def script_line(self, site: str, line: str) -> None:
        """One line of a site's script output, prefixed by the site (above the display)."""
        self.print_line(f"[{site}] {line}")

    def print_line(self, line: str) -> None:
        """A line of output that is not the display's (drawn above it in live mode)."""
        live = self._live
        if live is not None:
            from rich.text import Text

            live.console.print(Text(line), soft_wrap=True)
            return
        with self._lock:
            self.stream.write(line + "\n")
            self.stream.flush()

    # -- drawing --------------------------------------------------------------------------
    def _failed(self) -> int:
        board = self._board
        if board is None:
            return 0
        return sum(1 for s in list(board.sites.values()) if s.failure is not None)

    def _sites_text(self) -> str:
        failed = max(0, self._failed() - self._failed_at_start)
        training = max(0, self._expected - self._reported - failed)
        return f"sites {self._reported} done, {training} training, {failed} failed"

    def _metrics_text(self) -> str:
        key = self.key_metric
        items = sorted(self._metrics.items(), key=lambda kv: kv[0] != key)[:3]
        return " ".join(f"{k}={v:.4g}" for k, v in items)

    def _times_text(self) -> str:
        elapsed = time.monotonic() - self._start
        text = f"{elapsed:.1f}s elapsed"
        if self._rounds_done and self._rounds > self._rounds_done:
            per_round = (time.monotonic() - self._rounds_from) / self._rounds_done
            left = per_round * (self._rounds - self._rounds_done)
            text += f", ~{left:.0f}s left"
        return text

    def _plain(self, text: str) -> None:
        self.stream.write(f"{self.job_name}: {text}\n")
        self.stream.flush()

    def _draw(self) -> None:
        if self._live is None or self._task is None:
            return
        self._live.update(
            self._task,
            total=self._rounds or None,
            completed=self._rounds_done,
            sites=self._sites_text(),
            metrics=self._metrics_text(),
        )
