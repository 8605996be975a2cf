"""Recycled receive buffers: the memory a pulled tensor lands in, reused once its array is gone.

A process that receives a model every round would otherwise take fresh memory from the kernel
each time, which the kernel zeroes page by page on first touch. On virtual machines whose host
takes freed memory back (virtio free page reporting) every such page also faults on the host:
in the PoC benchmark that was half of a site's CPU while it downloaded, more than decrypting.

- An array from :func:`empty` is a view of a buffer the pool owns, through a ``memoryview``,
  so numpy records that array (not the buffer) as the base of every view made from it: when
  the array and all its views are garbage, the buffer goes back to the pool and the next
  tensor of the same size lands in it.
- :func:`refill` (the Client API calls it once a task's model is in): buffers of the sizes
  that had to be taken fresh are made again in the background, at idle priority, and
  touched, so the next round's tensors land in warm memory even while the script still holds
  the previous model. Linux only (``SCHED_IDLE`` and ``/dev/zero``); elsewhere only recycling.

The pool keeps at most ``streaming.recycle_mib`` of idle memory (the oldest goes back to the
kernel first); 0 turns both off.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import threading
import weakref
from typing import Any

import numpy as np

from ember.config import get_setting

log = logging.getLogger(__name__)

MIN_BYTES = 1 << 20
"""Smaller arrays are plain ``np.empty``: the allocator serves those from memory it has."""
_TOUCH = 8 << 20  # bytes zeroed per system call while warming (the GIL is free meanwhile)
_WARMING = hasattr(os, "SCHED_IDLE") and os.path.exists("/dev/zero")

Region = np.ndarray[Any, Any]


def _limit() -> int:
    return int(get_setting("streaming.recycle_mib")) << 20


class BufferPool:
    """Idle receive buffers, oldest first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # regions whose arrays are gone, from finalizers that may run in any thread at any
        # allocation (the cyclic GC): a deque needs no lock, the rest is tidied under it
        self._returned: collections.deque[Region] = collections.deque()
        self._idle: list[Region] = []
        self._idle_bytes = 0
        self._missed: list[int] = []  # sizes taken fresh since the last refill
        self._missed_bytes = 0
        self._warmer: threading.Thread | None = None
        self._stop_warming = threading.Event()
        self.reused = 0  # buffers handed out again
        self.warmed = 0  # buffers made ahead by refill

    @property
    def idle_bytes(self) -> int:
        with self._lock:
            self._tidy(_limit())
            return self._idle_bytes

    def empty(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray[Any, Any]:
        """A writable C-ordered array whose contents are undefined, like ``np.empty``."""
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        limit = _limit()
        if nbytes < MIN_BYTES or nbytes > limit:
            return np.empty(shape, dtype=dtype)
        self._stop_warming.set()  # a receive is under way: the warmer steps aside
        with self._lock:
            self._tidy(limit)
            region = next((r for r in self._idle if r.nbytes == nbytes), None)
            if region is not None:
                self._drop(region)
                self.reused += 1
            elif self._missed_bytes + nbytes <= limit:
                self._missed.append(nbytes)
                self._missed_bytes += nbytes
        if region is None:
            region = np.empty(nbytes, dtype=np.uint8)
        owner = np.frombuffer(memoryview(region), dtype=np.uint8)
        weakref.finalize(owner, self._returned.append, region).atexit = False
        return owner.view(dtype).reshape(shape)

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
            region = self._returned.popleft()
            self._idle.append(region)
            self._idle_bytes += region.nbytes
        while self._idle_bytes > limit:
            self._idle_bytes -= self._idle.pop(0).nbytes

    def _add(self, region: Region) -> bool:
        """A warmed region joins the idle list if it fits under the limit."""
        with self._lock:
            limit = _limit()
            self._tidy(limit)
            if self._idle_bytes + region.nbytes > limit:
                return False
            self._idle.append(region)
            self._idle_bytes += region.nbytes
            self.warmed += 1
            return True

    def refill(self) -> None:
        """Make buffers like the ones taken fresh since the last call, in the background at
        idle priority, for the next message of the same shapes (see the module doc)."""
        with self._lock:
            sizes, self._missed, self._missed_bytes = self._missed, [], 0
            running = self._warmer is not None and self._warmer.is_alive()
        if not sizes or not _WARMING or running:
            return
        self._stop_warming.clear()
        self._warmer = threading.Thread(
            target=self._warm, args=(sizes,), daemon=True, name="ember-buffer-warmer"
        )
        self._warmer.start()

    def _warm(self, sizes: list[int]) -> None:
        with contextlib.suppress(OSError):  # only this thread's priority changes
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        done = 0
        try:
            with open("/dev/zero", "rb", buffering=0) as zero:
                for nbytes in sizes:
                    region = np.empty(nbytes, dtype=np.uint8)
                    view = memoryview(region)
                    for at in range(0, nbytes, _TOUCH):
                        if self._stop_warming.is_set():
                            self._missing(sizes[done:])  # for the next refill
                            return
                        zero.readinto(view[at : at + _TOUCH])
                    if not self._add(region):
                        return
                    done += 1
        except OSError as exc:
            log.info("receive buffers not warmed: %s", exc)

    def _missing(self, sizes: list[int]) -> None:
        with self._lock:
            self._missed[:0] = sizes
            self._missed_bytes += sum(sizes)

    def wait_warm(self, timeout: float) -> bool:
        """Wait for a running refill to end; True when none is running (tests)."""
        warmer = self._warmer
        if warmer is not None:
            warmer.join(timeout)
            return not warmer.is_alive()
        return True

    def clear(self) -> int:
        """Give every idle buffer back to the kernel (and stop warming); returns the bytes."""
        self._stop_warming.set()
        with self._lock:
            self._tidy(_limit())
            released = self._idle_bytes
            self._idle.clear()
            self._idle_bytes = 0
            self._missed, self._missed_bytes = [], 0
        return released


POOL = BufferPool()


def empty(shape: tuple[int, ...], dtype: Any) -> np.ndarray[Any, Any]:
    """A fresh or recycled writable array for a received tensor (see the module doc)."""
    return POOL.empty(shape, dtype)


def refill() -> None:
    """Warm buffers for the next message like the last one (see the module doc)."""
    POOL.refill()
