"""Recycled receive buffers: the memory a pulled tensor lands in, reused once its array is gone.

A process that receives a model every round would otherwise take fresh memory from the kernel
each time, which the kernel zeroes page by page on first touch. On virtual machines whose host
takes freed memory back (virtio free page reporting) every such page also faults on the host:
in the PoC benchmark that was half of a site's CPU while it downloaded, more than decrypting.

- An array from :func:`empty` is a view of a buffer the pool owns, through a ``memoryview``,
  so numpy records that array (not the buffer) as the base of every view made from it: when
  the array and all its views are garbage, the buffer goes back to the pool and the next
  tensor of the same size lands in it.
- :func:`prepare_next` (the Client API calls it when a script starts waiting for its next
  task) warms, in the background at idle priority, buffers for the next model: as many as
  the last model received had, less those back in the pool by then. It first waits until
  this process's own uploads of pooled or large arrays (the result it sent, in place or
  new arrays) are pulled, so a script
  that lets go of its model gets it recycled and nothing more; one that still holds it
  (``model = flare.receive()`` in a loop does, until the call returns) gets new buffers
  that the next model would take anyway, so its peak memory does not grow for it.
  Linux only (``SCHED_IDLE`` and ``/dev/zero``); elsewhere only recycling.
- Once a receive has taken as many buffers as the one before it, the script has its model
  and trains: what is idle then goes back to the kernel, and so does the memory of an older
  model that comes back from then on (``model = flare.receive()`` lets go of the last model
  right after the call returns). Kept, it would sit idle beside whatever the script makes
  of the new model (an ordinary script makes new arrays: 3 models instead of 2); the
  warm-up at the next wait makes it again, off the critical path. A model let go before
  its successor is received is still recycled.

The pool keeps at most ``streaming.recycle_mib`` of idle memory (the oldest goes back to the
kernel first); 0 turns both off.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import queue
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any

import numpy as np

from ember.config import get_setting

if TYPE_CHECKING:
    from numpy.typing import DTypeLike

log = logging.getLogger(__name__)

MIN_BYTES = 1 << 20
"""Smaller arrays are plain ``np.empty``: the allocator serves those from memory it has."""
_TOUCH = 8 << 20  # bytes zeroed per system call while warming (the GIL is free meanwhile)
_WARMING = hasattr(os, "SCHED_IDLE") and os.path.exists("/dev/zero")

Region = np.ndarray[Any, Any]


def _limit() -> int:
    return int(get_setting("streaming.recycle_mib")) << 20


class BufferPool:
    """Idle receive buffers, oldest first, and the arrays handed out over them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Finalizers may run in any thread at any allocation (the cyclic GC), even one that
        # holds the lock: they only append to a deque or put into a SimpleQueue (both safe
        # there), and the rest is tidied under the lock.
        # arrays gone: their memory and the receive that took it (see _receive)
        self._returned: collections.deque[tuple[Region, int]] = collections.deque()
        self._departures: queue.SimpleQueue[int] = queue.SimpleQueue()  # 1: an upload let go
        self._owners: weakref.WeakValueDictionary[int, np.ndarray[Any, Any]] = (
            weakref.WeakValueDictionary()
        )
        self._idle: list[Region] = []
        self._idle_bytes = 0
        self._taken: list[int] = []  # sizes handed out since the last prepare_next
        self._taken_bytes = 0
        self._handed = 0  # buffers handed out since the last prepare_next (all sizes)
        self._receive = 0  # prepare_next calls so far: the receive a buffer is taken for
        self._expect = 0  # buffers this receive takes before the script has its model
        self._stale_before = 0  # memory taken for an earlier receive than this is let go
        self._offered = 0  # pooled or large arrays offered for upload, and how many let go
        self._departed = 0
        self._warmer: threading.Thread | None = None
        self._stop_warming = threading.Event()
        self.reused = 0  # buffers handed out again
        self.warmed = 0  # buffers made ahead by prepare_next

    @property
    def idle_bytes(self) -> int:
        with self._lock:
            self._tidy(_limit())
            return self._idle_bytes

    def empty(self, shape: tuple[int, ...], dtype: DTypeLike) -> np.ndarray[Any, Any]:
        """A writable C-ordered array whose contents are undefined, like ``np.empty``."""
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        limit = _limit()
        if nbytes < MIN_BYTES or nbytes > limit:
            return np.empty(shape, dtype=dtype)
        warmer = self._warmer
        if warmer is not None and warmer.is_alive():  # a receive is under way:
            self._stop_warming.set()  # the warmer steps aside
            self._departures.put(0)  # (and wakes up to see it)
        with self._lock:
            self._tidy(limit)
            region = next((r for r in self._idle if r.nbytes == nbytes), None)
            if region is not None:
                self._drop(region)
                self.reused += 1
            if self._taken_bytes + nbytes <= limit:
                self._taken.append(nbytes)
                self._taken_bytes += nbytes
            self._handed += 1
            receive = self._receive
            if self._expect and self._handed >= self._expect:
                # the script has its model: nothing idle beside what it makes of it
                self._expect = 0
                self._stale_before = receive
                self._idle.clear()
                self._idle_bytes = 0
        if region is None:
            region = np.empty(nbytes, dtype=np.uint8)
        # numpy's stubs give ndarray the buffer protocol (__buffer__) only on Python 3.12+
        owner = np.frombuffer(memoryview(region), dtype=np.uint8)  # type: ignore[arg-type]
        weakref.finalize(owner, self._came_back, region, receive).atexit = False
        self._owners[id(owner)] = owner
        return owner.view(dtype).reshape(shape)

    def _came_back(self, region: Region, receive: int) -> None:
        """An array is gone (its finalizer: no lock here). The memory of an older model, back
        while the script trains, goes to the kernel at once (nothing refers to it then)."""
        if receive >= self._stale_before:
            self._returned.append((region, receive))

    def offered(self, holder: object, array: np.ndarray[Any, Any]) -> None:
        """``holder`` (an upload's item) keeps ``array`` until it is pulled: if the array is
        one of ours or a large one of the script's (a result made of new arrays),
        :meth:`prepare_next` waits for ``holder`` to be gone."""
        if array.nbytes < MIN_BYTES:
            base: Any = array
            while isinstance(base, np.ndarray):
                if self._owners.get(id(base)) is base:
                    break
                base = base.base
            else:
                return
        self._uploading()  # (keeps the queue short where nothing warms)
        with self._lock:
            self._offered += 1
        weakref.finalize(holder, self._departures.put, 1).atexit = False

    def _uploading(self) -> int:
        """Pooled or large arrays still held by uploads of this process."""
        with self._lock, contextlib.suppress(queue.Empty):
            while True:
                self._departed += self._departures.get_nowait()
        return self._offered - self._departed

    def _drop(self, region: Region) -> None:
        """Take ``region`` out of the idle list (under the lock)."""
        for i, r in enumerate(self._idle):
            if r is region:
                del self._idle[i]
                self._idle_bytes -= region.nbytes
                return

    def _tidy(self, limit: int) -> None:
        """Move returned regions to the idle list, then keep at most ``limit`` bytes idle
        (under the lock)."""
        while self._returned:
            region, receive = self._returned.popleft()
            if receive < self._stale_before:
                continue  # an older model, back while the script trains: to the kernel
            self._idle.append(region)
            self._idle_bytes += region.nbytes
        while self._idle_bytes > limit:
            self._idle_bytes -= self._idle.pop(0).nbytes

    def prepare_next(self) -> None:
        """Warm buffers for a next model like the last one received (see the module doc)."""
        with self._lock:
            taken, self._taken, self._taken_bytes = self._taken, [], 0
            self._receive += 1
            self._expect, self._handed = self._handed, 0
            running = self._warmer is not None and self._warmer.is_alive()
        if not taken or not _WARMING or running:
            return
        self._stop_warming.clear()
        self._warmer = threading.Thread(
            target=self._warm,
            args=(taken, _limit(), float(get_setting("streaming.transaction_timeout"))),
            daemon=True,
            name="ember-buffer-warmer",
        )
        self._warmer.start()

    def _warm(self, sizes: list[int], limit: int, patience: float) -> None:
        with contextlib.suppress(OSError):  # only this thread's priority changes
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        deadline = time.monotonic() + patience  # an upload waits at most that long
        while self._uploading() > 0:
            if self._stop_warming.is_set():
                return
            try:
                departed = self._departures.get(timeout=deadline - time.monotonic())
            except (queue.Empty, ValueError):  # not pulled in time: nothing to prepare
                return
            with self._lock:
                self._departed += departed
        claimed: collections.Counter[int] = collections.Counter()
        try:
            with open("/dev/zero", "rb", buffering=0) as zero:
                for nbytes in sizes:
                    with self._lock:
                        self._tidy(limit)
                        idle = sum(1 for r in self._idle if r.nbytes == nbytes)
                        if idle > claimed[nbytes]:  # recycled memory covers this one
                            claimed[nbytes] += 1
                            continue
                        if self._idle_bytes + nbytes > limit:
                            return
                    region = np.empty(nbytes, dtype=np.uint8)
                    view = memoryview(region)  # type: ignore[arg-type]  # as in empty()
                    for at in range(0, nbytes, _TOUCH):
                        if self._stop_warming.is_set():
                            return  # a receive began: it takes what is warm by now
                        zero.readinto(view[at : at + _TOUCH])
                    with self._lock:
                        self._idle.append(region)
                        self._idle_bytes += nbytes
                        self.warmed += 1
                        claimed[nbytes] += 1
        except OSError as exc:
            log.info("receive buffers not warmed: %s", exc)

    def wait_warm(self, timeout: float) -> bool:
        """Wait for a running warm-up to end; True when none is running (tests)."""
        warmer = self._warmer
        if warmer is not None:
            warmer.join(timeout)
            return not warmer.is_alive()
        return True

    def clear(self) -> int:
        """Give every idle buffer back to the kernel (and stop warming); returns the bytes."""
        self._stop_warming.set()
        self._departures.put(0)
        with self._lock:
            self._tidy(_limit())
            released = self._idle_bytes
            self._idle.clear()
            self._idle_bytes = 0
            self._taken, self._taken_bytes = [], 0
            self._expect = self._handed = 0
        return released


POOL = BufferPool()


def empty(shape: tuple[int, ...], dtype: DTypeLike) -> np.ndarray[Any, Any]:
    """A fresh or recycled writable array for a received tensor (see the module doc)."""
    return POOL.empty(shape, dtype)


def prepare_next() -> None:
    """Warm buffers for the next model received like the last one (see the module doc)."""
    POOL.prepare_next()
