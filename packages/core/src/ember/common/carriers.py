"""Carrier threads: a few OS threads that run many simulated sites' scripts.

A SimEnv job of thousands of sites does not need a thread per site: a site's script spends
nearly all its time waiting in the Client API (for its next task, for a work slot). Each
:class:`Carrier` is one OS thread that runs many scripts as greenlets; a script gives its
carrier up whenever it waits on a :class:`CooperativeCondition` (the task board's and the
work slots' conditions are), and the carrier runs another script that can go on. A parked
script keeps no thread stack, only the part of its stack in use (a few KiB, on the heap),
and a wake-up is a list append instead of a system call per thread.

What a script does between two Client API calls (training) runs on its carrier's thread
as it would on its own thread, releasing the GIL where numpy or torch do: with ``n``
carriers, up to ``n`` sites compute at once. A script that blocks elsewhere (``time.sleep``,
a socket of its own) holds up the other scripts of its carrier until it goes on; the
server's timeouts still bound how long anyone waits for it.

A worked example: two scripts on one carrier, each waiting for the other's turn::

    import threading
    from ember.common.carriers import Carrier, CooperativeCondition

    lock = threading.Lock()
    turn = CooperativeCondition(lock)
    state = {"turn": "ping", "log": []}

    def player(me, other):
        def play():
            for _ in range(3):
                with turn:
                    while state["turn"] != me:
                        turn.wait(5.0)  # parks this greenlet; the carrier runs the other
                    state["log"].append(me)
                    state["turn"] = other
                    turn.notify_all()
        return play

    carrier = Carrier("example")
    carrier.start()
    done = [threading.Event(), threading.Event()]
    carrier.spawn(player("ping", "pong"), done[0].set)
    carrier.spawn(player("pong", "ping"), done[1].set)
    assert all(d.wait(5.0) for d in done)
    carrier.close()
    assert state["log"] == ["ping", "pong"] * 3

Only waits on a :class:`CooperativeCondition` switch; every other lock or wait blocks the
carrier's thread as it blocks any thread (brief ones, under a lock another thread holds,
are harmless).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable

import greenlet

log = logging.getLogger(__name__)

_here = threading.local()  # the carrier whose thread this is, if any


def running_carrier() -> Carrier | None:
    """The carrier when the caller is one of its scripts (a greenlet it runs), else None."""
    carrier: Carrier | None = getattr(_here, "carrier", None)
    if carrier is None or greenlet.getcurrent() is carrier._loop_greenlet:
        return None
    return carrier


class _Parked:
    """A script parked in :meth:`CooperativeCondition.wait`: the condition's waiter.

    ``release()`` is what ``threading.Condition.notify`` calls on each waiter it wakes; it
    raises RuntimeError for a waiter already woken (by its timeout), which ``notify``
    skips, so the wake-up goes to the next waiter instead.
    """

    __slots__ = ("carrier", "script", "woken")

    def __init__(self, carrier: Carrier, script: greenlet.greenlet) -> None:
        self.carrier = carrier
        self.script = script
        self.woken = False

    def release(self) -> None:
        self.carrier._resume(self, True)


class Carrier:
    """One OS thread running many scripts as greenlets; :meth:`spawn` from any thread.

    The thread ends after :meth:`close` once every script it runs has returned.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        # (a greenlet to switch to or a function to start, the value its wait returns)
        self._ready: deque[tuple[greenlet.greenlet | Callable[[], None], bool]] = deque()
        self._timers: list[tuple[float, int, _Parked]] = []  # (deadline, order, parked), a heap
        self._order = itertools.count()
        self._scripts = 0  # spawned and not returned
        self._closing = False
        self._loop_greenlet: greenlet.greenlet | None = None
        self.thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def spawn(
        self, script: Callable[[], None], on_return: Callable[[], None] | None = None
    ) -> None:
        """Run ``script()`` as a greenlet of this carrier; ``on_return()`` after it returned
        or raised (an exception is logged: a script's runner catches its own)."""

        def body(_first: bool) -> None:  # the loop's first switch passes a wake-up value
            try:
                script()
            except BaseException:
                log.exception("a script on carrier %s raised", self.name)
            finally:
                with self._lock:
                    self._scripts -= 1
                    self._work.notify()
                if on_return is not None:
                    on_return()

        with self._lock:
            if self._closing:
                raise RuntimeError(f"carrier {self.name} is closed")
            self._scripts += 1
            self._ready.append((body, True))
            self._work.notify()

    def close(self) -> None:
        """Let the thread end once its scripts have returned (does not wait)."""
        with self._lock:
            self._closing = True
            self._work.notify()

    def join(self, timeout: float | None) -> bool:
        self.thread.join(timeout)
        return not self.thread.is_alive()

    # -- the scripts' side -----------------------------------------------------------------

    def park(self, parked: _Parked, timeout: float | None) -> bool:
        """Give the thread up until ``parked`` is released (True) or ``timeout`` s passed
        (False). Called by a script of this carrier, in its thread."""
        assert self._loop_greenlet is not None
        if timeout is not None:
            deadline = time.monotonic() + max(0.0, timeout)
            with self._lock:
                heapq.heappush(self._timers, (deadline, next(self._order), parked))
        return bool(self._loop_greenlet.switch())

    def _resume(self, parked: _Parked, released: bool) -> None:
        with self._lock:
            self._resume_locked(parked, released)

    def _resume_locked(self, parked: _Parked, released: bool) -> None:
        if parked.woken:
            raise RuntimeError("this waiter was woken already")
        parked.woken = True
        self._ready.append((parked.script, released))
        self._work.notify()

    # -- the thread ------------------------------------------------------------------------

    def _loop(self) -> None:
        _here.carrier = self
        self._loop_greenlet = greenlet.getcurrent()
        while True:
            with self._lock:
                while not self._ready:
                    now = time.monotonic()
                    timers = self._timers
                    while timers and (timers[0][2].woken or timers[0][0] <= now):
                        parked = heapq.heappop(timers)[2]
                        if not parked.woken:
                            self._resume_locked(parked, False)
                    if self._ready:
                        break
                    if self._closing and self._scripts == 0:
                        return
                    self._work.wait(timers[0][0] - now if timers else None)
                batch = list(self._ready)
                self._ready.clear()
            for target, value in batch:
                if not isinstance(target, greenlet.greenlet):
                    target = greenlet.greenlet(target)
                # returns when the script parks again or has returned
                target.switch(value)
                del target


class CooperativeCondition(threading.Condition):
    """A ``threading.Condition`` whose :meth:`wait`, called by a script on a carrier, parks
    that script and lets its carrier run others; called by any other thread it is
    ``threading.Condition.wait``. Notifying works the same from every thread."""

    def wait(self, timeout: float | None = None) -> bool:
        carrier = running_carrier()
        if carrier is None:
            return super().wait(timeout)
        if not self._is_owned():  # type: ignore[attr-defined]
            raise RuntimeError("cannot wait on un-acquired lock")
        parked = _Parked(carrier, greenlet.getcurrent())
        self._waiters.append(parked)  # type: ignore[attr-defined]
        saved = self._release_save()  # type: ignore[attr-defined]
        woke = False
        try:
            woke = carrier.park(parked, timeout)
            return woke
        finally:
            self._acquire_restore(saved)  # type: ignore[attr-defined]
            if not woke:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(parked)  # type: ignore[attr-defined]
