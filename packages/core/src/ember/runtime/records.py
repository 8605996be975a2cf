"""What a job leaves in its server folder: round metrics, the summary, experiment tracking."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ember.client.tracking import check_record
from ember.common.messages import MetricRecord
from ember.filters.base import SPENT_EPSILON_KEYS
from ember.job.definition import JobDefinition
from ember.runtime.board import Collected
from ember.runtime.process_memory import current_rss
from ember.runtime.trackers import (
    GLOBAL_RUN,
    TRACKERS,
    RunInfo,
    Tracker,
    job_params,
    numeric,
    site_params,
    tracking_specs,
)


class RoundRecorder:
    """Appends ``round_metrics.jsonl`` and writes ``metrics_summary.json``; ``on_round`` (the
    job's :class:`MetricSink`) gets each round's metrics too."""

    def __init__(
        self,
        server_dir: Path,
        on_round: Callable[[int, dict[str, Any], dict[str, dict[str, Any]]], None] | None = None,
    ) -> None:
        self.dir = server_dir
        self.on_round = on_round
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
        if self.on_round is not None:
            self.on_round(rnd, metrics, site_metrics)

    def resume(self, last_round: int) -> None:
        """A job resumed from round ``last_round``'s checkpoint: keep what the file records
        of rounds up to it and drop later ones (a round recorded just before the crash, but
        not checkpointed, runs again and is recorded once), so ``rounds`` and the summary
        cover the whole job."""
        path = self.dir / "round_metrics.jsonl"
        if not path.is_file():
            return
        kept: list[dict[str, Any]] = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except ValueError:  # a line the crash cut short
                continue
            rnd = record.get("round") if isinstance(record, dict) else None
            if isinstance(rnd, int) and rnd <= last_round:
                kept.append(record)
        part = path.with_name(path.name + ".part")
        part.write_text("".join(json.dumps(r, default=float) + "\n" for r in kept), "utf-8")
        os.replace(part, path)
        self.rounds = kept

    def summary(self, **fields: Any) -> None:
        self._summary.update(fields)
        self._summary["final_metrics"] = self.rounds[-1]["metrics"] if self.rounds else {}
        spent = privacy_spent(self.rounds)
        if spent:
            self._summary["privacy_spent"] = spent
        (self.dir / "metrics_summary.json").write_text(
            json.dumps(self._summary, indent=2, default=float), encoding="utf-8"
        )


def privacy_spent(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The epsilon each site last reported (``SPENT_EPSILON_KEYS``) and the largest: what
    the job cost each site's privacy (an average over sites would hide the worst)."""
    last: dict[str, dict[str, float]] = {}
    for record in rounds:
        for site, reported in record["site_metrics"].items():
            for key in SPENT_EPSILON_KEYS:
                value = reported.get(key)
                if isinstance(value, int | float) and not isinstance(value, bool):
                    last.setdefault(key, {})[site] = float(value)
    return {
        key: {"by_site": dict(sorted(by_site.items())), "max": max(by_site.values())}
        for key, by_site in last.items()
    }


class MetricSink:
    """Receives the values scripts log and each round's metrics; writes them with the job's
    trackers (``ember.runtime.trackers``): TensorBoard, MLflow, Weights & Biases.

    ``side`` says which specs are this sink's: the server's (``server_side``, under the server
    folder) or a site's (``client_side``, under that site's folder). Each library is imported
    as the sink is made, so a job that asks for a tracker whose extra is missing fails as it
    starts (MissingDependencyError naming the extra), not at its first logged value. A value
    a tracker cannot write is logged as a warning; it never fails the job.
    """

    def __init__(
        self,
        folder: Path,
        tracking: Any,
        *,
        side: str = "server",
        job: JobDefinition | None = None,
        job_id: str = "",
        sites: list[str] | None = None,
        log: logging.Logger | None = None,
    ) -> None:
        self.folder = folder
        self.side = side
        self.log = log or logging.getLogger(__name__)
        specs = [
            s
            for s in tracking_specs(tracking)
            if (s.server_side if side == "server" else s.client_side)
        ]
        info = RunInfo(job_id=job_id)
        if job is not None:
            info.job_name = job.name
            info.site_params = {site: site_params(job, site) for site in sites or []}
            if side == "server":
                info.params = job_params(job, job_id, sites or [])
        self._lock = threading.Lock()
        self._closed = False
        self._warned: set[str] = set()
        self.trackers: list[Tracker] = []
        try:
            for spec in specs:
                self.trackers.append(TRACKERS[spec.type](folder, spec.config, info))
            if side == "server":
                for tracker in self.trackers:
                    tracker.run(GLOBAL_RUN)  # the job's parameters, from the start
        except BaseException:
            self.close(ok=False)
            raise

    @property
    def tracking(self) -> bool:
        """Whether any tracker writes here."""
        return bool(self.trackers)

    def add(self, records: list[MetricRecord]) -> None:
        """Write what a site's scripts logged into that site's runs."""
        with self._lock:
            if not self.trackers or self._closed:
                return
            for rec in records:
                try:
                    kind, tag, value = check_record(rec.kind, rec.tag, rec.value)
                    step = None if rec.step is None else int(rec.step)
                except (TypeError, ValueError) as exc:
                    self._warn(f"record:{rec.site}", f"ignored a value {rec.site} logged: {exc}")
                    continue
                for tracker in self.trackers:
                    self._write(tracker, tracker.record, rec.site, kind, tag, value, step)

    def round(
        self, rnd: int, metrics: dict[str, Any], site_metrics: dict[str, dict[str, Any]]
    ) -> None:
        """Round ``rnd``'s aggregated metrics and each site's, into the global run."""
        values = numeric(metrics)
        for site, reported in site_metrics.items():
            values.update({f"{site}/{k}": v for k, v in numeric(reported or {}).items()})
        with self._lock:
            if not self.trackers or self._closed or not values:
                return
            for tracker in self.trackers:
                self._write(tracker, tracker.round, rnd, values)

    def close(self, ok: bool = True) -> None:
        """Keep the final model with the global run (server side), then end every run."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            models = self.folder / "models"
            files = sorted(p for p in models.iterdir() if p.is_file()) if models.is_dir() else []
            for tracker in self.trackers:
                if self.side == "server" and files:
                    self._write(tracker, tracker.artifacts, GLOBAL_RUN, files, "model")
                tracker.close(ok)
            self.trackers.clear()

    def _write(self, tracker: Tracker, write: Callable[..., None], *args: Any) -> None:
        try:
            write(*args)
        except Exception as exc:
            name = type(tracker).__name__
            self._warn(name, f"{name} could not write a value: {type(exc).__name__}: {exc}")

    def _warn(self, key: str, message: str) -> None:
        if key not in self._warned:  # once per site or tracker: a loop would flood the log
            self._warned.add(key)
            self.log.warning("%s (further ones are not logged)", message)
