"""``Run``: a handle on a deployed job (status, result, abort)."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from ember.errors import EmberError, RecipeArgumentError


class Run(Protocol):
    """What ``recipe.execute(env)`` returns."""

    def get_job_id(self) -> str: ...

    def get_status(self) -> str:
        """``SUBMITTED``, ``RUNNING``, ``FINISHED:COMPLETED``, ``FINISHED:ABORTED``,
        ``FINISHED:EXECUTION_EXCEPTION`` (or ``EXPORTED``)."""
        ...

    def get_result(self, timeout: float | None = None, clean_up: bool = False) -> str:
        """Wait for the job to finish; the path of its result folder.

        ``timeout``: seconds to wait at most (None or 0: no limit, NVFlare's 0.0) before
        :class:`RunTimeout`. ``clean_up``: also stop what the env started for the job (a
        PoC system's daemons); results are never deleted. NVFlare's default is True and
        removes the PoC workspace; Ember's is False, since its PoC system serves the next
        job and holds the results."""
        ...

    def abort(self) -> None: ...


class RunTimeout(EmberError, TimeoutError):
    """The job did not finish within the timeout given to ``get_result``."""


def wait_limit(timeout: float | None) -> float | None:
    """``get_result``'s timeout: None or 0 (NVFlare's "no timeout") wait without limit."""
    if timeout is None or timeout == 0:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout < 0:
        raise RecipeArgumentError(
            f"timeout must be a number of seconds >= 0 (0: no limit), got {timeout!r}"
        )
    return float(timeout)


class ExportedRun:
    """The Run of ``execute`` with ``--export``: nothing ran; the result is the job folder."""

    def __init__(self, job_dir: Path) -> None:
        self.job_dir = job_dir

    def get_job_id(self) -> str:
        return ""

    def get_status(self) -> str:
        return "EXPORTED"

    def get_result(self, timeout: float | None = None, clean_up: bool = False) -> str:
        return str(self.job_dir)

    def abort(self) -> None:
        """Nothing runs."""
