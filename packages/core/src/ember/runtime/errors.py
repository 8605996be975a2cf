"""Why a job stops early."""

from __future__ import annotations


class JobError(RuntimeError):
    """The job cannot go on; the message says which site and why."""


class JobAborted(JobError):
    """Someone asked the job to stop (``Run.abort()``, Ctrl-C)."""


class InsufficientClients(JobError):
    """Fewer sites are alive or answered than ``min_clients`` requires."""
