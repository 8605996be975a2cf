"""The server's job store: job metadata in SQLite, job content and results in folders.

``<server workspace>/jobs.db`` and ``<server workspace>/jobs/<id>/{job,workspace}``. The store
survives restarts: a job that was running when the server died is resumed on start (from its
last round checkpoint, see :mod:`ember.system.server`), or marked failed.
"""

from __future__ import annotations

import builtins
import json
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SUBMITTED = "SUBMITTED"
RUNNING = "RUNNING"
COMPLETED = "FINISHED:COMPLETED"
ABORTED = "FINISHED:ABORTED"
FAILED = "FINISHED:EXECUTION_EXCEPTION"
FINISHED = (COMPLETED, ABORTED, FAILED)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT '',
    submitter TEXT NOT NULL,
    submitter_org TEXT NOT NULL DEFAULT '',
    submitter_role TEXT NOT NULL DEFAULT '',
    sites TEXT NOT NULL,
    min_clients INTEGER NOT NULL,
    submitted_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    resumed TEXT NOT NULL DEFAULT '',
    restarts INTEGER NOT NULL DEFAULT 0
)
"""


_SELECT = (
    "SELECT id, name, status, message, submitter, sites, min_clients, submitted_at, "
    "started_at, finished_at, submitter_org, submitter_role, resumed, restarts FROM jobs"
)


@dataclass
class JobRecord:
    """One job as the store knows it."""

    id: str
    name: str
    status: str
    message: str
    submitter: str
    sites: list[str]
    min_clients: int
    submitted_at: float
    started_at: float | None = None
    finished_at: float | None = None
    submitter_org: str = ""
    submitter_role: str = ""
    resumed: str = ""  # "resumed from round N" once a server restart resumed the job
    restarts: int = 0  # how many server restarts the job went through
    extra: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if k != "extra"}
        return {**data, **self.extra}


class JobStore:
    """Thread-safe access to the jobs of one server."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.root / "jobs.db", check_same_thread=False)
        with self._lock, self._db:
            self._db.execute(_SCHEMA)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(jobs)")}
            for column in ("submitter_org", "submitter_role", "resumed"):  # an older store
                if column not in columns:
                    self._db.execute(
                        f"ALTER TABLE jobs ADD COLUMN {column} TEXT NOT NULL DEFAULT ''"
                    )
            if "restarts" not in columns:
                self._db.execute("ALTER TABLE jobs ADD COLUMN restarts INTEGER NOT NULL DEFAULT 0")

    def job_dir(self, job_id: str) -> Path:
        return self.root / "jobs" / job_id / "job"

    def workspace(self, job_id: str) -> Path:
        return self.root / "jobs" / job_id / "workspace"

    def add(
        self,
        name: str,
        submitter: str,
        sites: list[str],
        min_clients: int,
        submitter_org: str = "",
        submitter_role: str = "",
    ) -> JobRecord:
        job = JobRecord(
            id=uuid.uuid4().hex[:12],
            name=name,
            status=SUBMITTED,
            message="",
            submitter=submitter,
            sites=list(sites),
            min_clients=min_clients,
            submitted_at=time.time(),
            submitter_org=submitter_org,
            submitter_role=submitter_role,
        )
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO jobs (id, name, status, message, submitter, submitter_org, "
                "submitter_role, sites, min_clients, submitted_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job.id,
                    job.name,
                    job.status,
                    job.message,
                    job.submitter,
                    job.submitter_org,
                    job.submitter_role,
                    json.dumps(job.sites),
                    job.min_clients,
                    job.submitted_at,
                ),
            )
        return job

    def get(self, job_id: str) -> JobRecord | None:
        with self._lock:
            row = self._db.execute(
                _SELECT + " WHERE id = ?",
                (job_id,),
            ).fetchone()
        return _record(row) if row else None

    def list(self, status: str | None = None) -> list[JobRecord]:
        query = _SELECT
        args: tuple[Any, ...] = ()
        if status is not None:
            query += " WHERE status = ?"
            args = (status,)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY submitted_at", args).fetchall()
        return [_record(r) for r in rows]

    def set_status(self, job_id: str, status: str, message: str = "") -> None:
        now = time.time()
        with self._lock, self._db:
            if status == RUNNING:
                self._db.execute(
                    "UPDATE jobs SET status = ?, message = ?, started_at = ? WHERE id = ?",
                    (status, message, now, job_id),
                )
            elif status in FINISHED:
                # a finished job stays finished (a late report does not revive it)
                self._db.execute(
                    "UPDATE jobs SET status = ?, message = ?, finished_at = ? "
                    "WHERE id = ? AND status NOT IN (?, ?, ?)",
                    (status, message, now, job_id, *FINISHED),
                )
            else:
                self._db.execute(
                    "UPDATE jobs SET status = ?, message = ? WHERE id = ?",
                    (status, message, job_id),
                )

    def set_sites(self, job_id: str, sites: builtins.list[str]) -> None:
        """The sites a job runs on (decided when it starts, for jobs that named none)."""
        with self._lock, self._db:
            self._db.execute("UPDATE jobs SET sites = ? WHERE id = ?", (json.dumps(sites), job_id))

    def set_resumed(self, job_id: str, note: str) -> None:
        """A server restart resumes the job: ``note`` says from where; one more restart."""
        with self._lock, self._db:
            self._db.execute(
                "UPDATE jobs SET resumed = ?, restarts = restarts + 1 WHERE id = ?",
                (note, job_id),
            )

    def fail_unfinished(self, reason: str) -> builtins.list[str]:
        """Mark jobs left RUNNING (the server stopped under them) failed."""
        running = [j.id for j in self.list(RUNNING)]
        for job_id in running:
            self.set_status(job_id, FAILED, reason)
        return running

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _record(row: tuple[Any, ...]) -> JobRecord:
    return JobRecord(
        id=row[0],
        name=row[1],
        status=row[2],
        message=row[3],
        submitter=row[4],
        sites=json.loads(row[5]),
        min_clients=int(row[6]),
        submitted_at=float(row[7]),
        started_at=row[8],
        finished_at=row[9],
        submitter_org=row[10],
        submitter_role=row[11],
        resumed=row[12],
        restarts=int(row[13]),
    )
