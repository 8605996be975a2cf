"""``Run``: a handle on a deployed job (status, result, abort)."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from ember.errors import EmberError


class Run(Protocol):
    """What ``recipe.execute(env)`` returns."""

    def get_job_id(self) -> str: ...

    def get_status(self) -> str:
        """``SUBMITTED``, ``RUNNING``, ``FINISHED:COMPLETED``, ``FINISHED:ABORTED``,
        ``FINISHED:EXECUTION_EXCEPTION`` (or ``EXPORTED``)."""
        ...

    def get_result(self, timeout: float | None = None) -> str:
        """The path of the result workspace, once the job finished."""
        ...

    def abort(self) -> None: ...


class RunTimeout(EmberError, TimeoutError):
    """The job did not finish within the timeout given to ``get_result``."""


class ExportedRun:
    """The Run of ``execute`` with ``--export``: nothing ran; the result is the job folder."""

    def __init__(self, job_dir: Path) -> None:
        self.job_dir = job_dir

    def get_job_id(self) -> str:
        return ""

    def get_status(self) -> str:
        return "EXPORTED"

    def get_result(self, timeout: float | None = None) -> str:
        return str(self.job_dir)

    def abort(self) -> None:
        """Nothing runs."""
