"""One stream's outgoing queue: whole frames, cut into fragments as the stream sends."""

from __future__ import annotations

import collections
import threading
from collections.abc import Iterator

from ember.net.frames import OutFrame


class _Control:
    """A control fragment of the hub's own (not counted against the forward limit)."""

    __slots__ = ("msg",)

    def __init__(self, msg: bytes) -> None:
        self.msg = msg


class Outbox:
    """What one gRPC stream has to send.

    Frames (:class:`OutFrame`) are cut into fragments only when the stream is ready to send
    them, taking turns fragment by fragment, so a ping or a small reply never waits behind a
    large body. Forwarded fragments (the hub passing them on) are queued as they are, and
    a sender waits while more than ``max_forward`` such bytes are queued (the receiver's
    pace reaches the sender through gRPC's flow control).
    """

    def __init__(self, max_forward: int) -> None:
        self._cond = threading.Condition()
        self._queue: collections.deque[OutFrame | bytes | _Control] = collections.deque()
        self._forward_bytes = 0
        self._max_forward = max_forward
        self.closed = False
        self._finishing = False

    def put_frame(self, frame: OutFrame) -> bool:
        """Queue a frame; False if the stream is closed (or finishing)."""
        with self._cond:
            if self.closed or self._finishing:
                return False
            self._queue.append(frame)
            self._cond.notify_all()
            return True

    def put_fragment(self, msg: bytes) -> bool:
        """Queue a forwarded fragment, waiting while too much is queued already; False if the
        stream is (or gets) closed."""
        with self._cond:
            while not self.closed and self._forward_bytes > self._max_forward:
                self._cond.wait()
            if self.closed or self._finishing:
                return False
            self._queue.append(msg)
            self._forward_bytes += len(msg)
            self._cond.notify_all()
            return True

    def put_frame_fragment(self, msg: bytes) -> bool:
        """Queue a small control fragment without waiting (not counted as forwarded)."""
        with self._cond:
            if self.closed or self._finishing:
                return False
            self._queue.append(_Control(msg))
            self._cond.notify_all()
            return True

    def finish(self) -> None:
        """Send what is queued, then end the stream; nothing new is taken."""
        with self._cond:
            self._finishing = True
            self._cond.notify_all()

    def close(self) -> None:
        """Stop the stream: what is still queued is dropped; waiting senders return False."""
        with self._cond:
            self.closed = True
            self._queue.clear()
            self._forward_bytes = 0
            self._cond.notify_all()

    def __iter__(self) -> Iterator[bytes]:
        """The messages to send, until closed (gRPC consumes this in its own thread)."""
        while True:
            with self._cond:
                while not self._queue and not self.closed and not self._finishing:
                    self._cond.wait()
                if self.closed or not self._queue:
                    return
                item = self._queue.popleft()
                if isinstance(item, bytes):
                    self._forward_bytes -= len(item)
                    self._cond.notify_all()
            if isinstance(item, bytes):
                yield item
                continue
            if isinstance(item, _Control):
                yield item.msg
                continue
            msg = item.next_fragment()  # the copy, outside the lock
            if not item.done:
                with self._cond:
                    self._queue.append(item)
            yield msg
