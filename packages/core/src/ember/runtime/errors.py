"""Why a job stops early."""

from __future__ import annotations

from ember.errors import EmberError


class JobError(EmberError, RuntimeError):
    """The job cannot go on; the message says which site and why."""


class JobAborted(JobError):
    """Someone asked the job to stop (``Run.abort()``, Ctrl-C)."""


class InsufficientClients(JobError):
    """Fewer sites are alive or answered than ``min_clients`` requires."""
