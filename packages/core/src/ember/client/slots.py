"""Work slots: how many simulated sites may hold a task's data and train at once."""

from __future__ import annotations

import threading
from collections.abc import Sequence


class WorkSlots:
    """At most ``count`` sites at work at once (``SimEnv(num_threads=...)``).

    A freed slot goes to the waiting site that comes first in ``order`` (the job's site
    order), not to whichever thread wakes first. The server adds results in that same order,
    so each result is aggregated as soon as it is sent instead of waiting at its site for
    the results before it: with one slot, only one site's model is in memory besides the
    server's.
    """

    def __init__(self, count: int, order: Sequence[str]) -> None:
        if count < 1:
            raise ValueError(f"work slots must be at least 1, got {count}")
        self._free = count
        self._rank = {site: index for index, site in enumerate(order)}
        self._waiting: set[str] = set()
        self._cond = threading.Condition()

    def acquire(self, site: str) -> None:
        """Wait for a slot for ``site``."""
        rank = self._rank.get(site, len(self._rank))
        with self._cond:
            self._waiting.add(site)
            self._cond.notify_all()  # (lets an observer see who waits)
            try:
                while not (
                    self._free > 0
                    and rank == min(self._rank.get(s, len(self._rank)) for s in self._waiting)
                ):
                    self._cond.wait()
                self._free -= 1
            finally:
                self._waiting.discard(site)
                self._cond.notify_all()

    def release(self) -> None:
        """Give a slot back."""
        with self._cond:
            self._free += 1
            self._cond.notify_all()
