"""Work slots: how many simulated sites may hold a task's data and train at once."""

from __future__ import annotations

import heapq
import threading
from collections.abc import KeysView, Sequence

from ember.common.carriers import CooperativeCondition


class WorkSlots:
    """At most ``count`` sites at work at once (``SimEnv(num_threads=...)``).

    A freed slot goes to the waiting site that comes first in ``order`` (the job's site
    order), not to whichever thread wakes first. The server adds results in that same order,
    so each result is aggregated as soon as it is sent instead of waiting at its site for
    the results before it: with one slot, only one site's model is in memory besides the
    server's.

    Each waiting site sleeps on its own condition and a freed slot wakes only the site it
    goes to (a heap by rank): with 10,000 sites waiting, a release costs one wake-up, not
    10,000 threads each scanning who else waits. ``_cond`` (over the same lock) is notified
    whenever who waits or works changes, for observers.
    """

    def __init__(self, count: int, order: Sequence[str]) -> None:
        if count < 1:
            raise ValueError(f"work slots must be at least 1, got {count}")
        self._free = count
        self._rank = {site: index for index, site in enumerate(order)}
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._queue: list[tuple[int, int, str]] = []  # (rank, arrival, site), a heap
        self._arrivals = 0
        self._granted: dict[str, CooperativeCondition] = {}  # waiting site -> its wake-up
        self._given: set[str] = set()  # waiting sites a slot went to, not yet awake

    def acquire(self, site: str) -> None:
        """Wait for a slot for ``site``."""
        with self._lock:
            if self._free > 0 and not self._queue:
                self._free -= 1
                self._cond.notify_all()
                return
            turn = CooperativeCondition(self._lock)  # a carrier's script parks in it
            self._arrivals += 1
            rank = self._rank.get(site, len(self._rank))
            heapq.heappush(self._queue, (rank, self._arrivals, site))
            self._granted[site] = turn
            self._cond.notify_all()
            try:
                while site not in self._given:
                    turn.wait()
            except BaseException:
                if site in self._given:  # the slot came with the interruption: pass it on
                    self._free += 1
                else:
                    self._queue = [e for e in self._queue if e[2] != site]
                    heapq.heapify(self._queue)
                raise
            finally:
                self._given.discard(site)
                self._granted.pop(site, None)
                self._dispatch()
                self._cond.notify_all()

    @property
    def _waiting(self) -> KeysView[str]:
        """The sites waiting for a slot (for observers, under ``_cond``)."""
        return self._granted.keys()

    def release(self) -> None:
        """Give a slot back."""
        with self._lock:
            self._free += 1
            self._dispatch()
            self._cond.notify_all()

    def _dispatch(self) -> None:
        """Hand free slots to the first waiting sites in order (the lock is held)."""
        while self._free > 0 and self._queue:
            site = heapq.heappop(self._queue)[2]
            self._free -= 1
            self._given.add(site)
            self._granted[site].notify()
