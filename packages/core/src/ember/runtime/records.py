"""What a job leaves in its server folder: round metrics, the summary, TensorBoard events."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from ember.common.messages import MetricRecord
from ember.extras import require
from ember.runtime.board import Collected


def current_rss() -> int | None:
    """This process's resident memory now, in bytes (Linux; None elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class RoundRecorder:
    """Appends ``round_metrics.jsonl`` and writes ``metrics_summary.json``."""

    def __init__(self, server_dir: Path) -> None:
        self.dir = server_dir
        self.rounds: list[dict[str, Any]] = []
        self._summary: dict[str, Any] = {}

    def round(
        self,
        rnd: int,
        collected: Collected,
        metrics: dict[str, float],
        site_metrics: dict[str, dict[str, Any]],
        duration: float,
    ) -> None:
        record = {
            "round": rnd,
            "sites": collected.responded,
            "failed": collected.failed,
            "timed_out": collected.timed_out,
            "metrics": metrics,
            "site_metrics": site_metrics,
            "duration_s": round(duration, 6),
            "server_rss_bytes": current_rss(),
        }
        self.rounds.append(record)
        with open(self.dir / "round_metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record, default=float) + "\n")

    def summary(self, **fields: Any) -> None:
        self._summary.update(fields)
        self._summary["final_metrics"] = self.rounds[-1]["metrics"] if self.rounds else {}
        (self.dir / "metrics_summary.json").write_text(
            json.dumps(self._summary, indent=2, default=float), encoding="utf-8"
        )


class MetricSink:
    """Receives the values scripts log; writes TensorBoard event files when tracking is on.

    tensorboardX comes with the ``tracking`` extra; a job that asks for TensorBoard tracking
    without it fails as it starts (MissingDependencyError naming the extra), not at its first
    logged value.
    """

    def __init__(self, server_dir: Path, tracking: str | None) -> None:
        self.dir = server_dir / "tb_events"
        self.tracking = tracking
        self._writers: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._tb: Any = None
        if tracking == "tensorboard":
            self._tb = require("tensorboardX", "tracking", "TensorBoard experiment tracking")

    def add(self, records: list[MetricRecord]) -> None:
        with self._lock:
            if self.tracking != "tensorboard":
                return
            for rec in records:
                writer = self._writer(rec.site)
                if rec.kind == "scalars":
                    writer.add_scalars(rec.tag, rec.value, rec.step)
                else:
                    writer.add_scalar(rec.tag, rec.value, rec.step)

    def _writer(self, site: str) -> Any:
        writer = self._writers.get(site)
        if writer is None:
            writer = self._writers[site] = self._tb.SummaryWriter(logdir=str(self.dir / site))
        return writer

    def close(self) -> None:
        with self._lock:
            for writer in self._writers.values():
                writer.close()
            self._writers.clear()
