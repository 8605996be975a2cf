"""The wire format: frames, split into fragments that each travel as one gRPC message.

A **frame** is one message between two nodes: a header (kind, flags, id, source, target,
topic) and a body of any size. A frame is sent as one or more **fragments**, each at most
``net.fragment_size`` bytes::

    fragment = u8 flags (FIRST, LAST, ABORT) | u64 seq | [frame header, on FIRST] | body bytes
    header   = u8 kind | u8 flags | u64 id | u16 len(source) | u16 len(target)
               | u16 len(topic) | source | target | topic          (little-endian, UTF-8)

``seq`` is random per frame (64 bits), so fragments of many frames interleave on one stream
and a receiver (or the hub, which forwards fragments untouched) tells them apart. The hub
reads only headers; bodies are opaque bytes end to end. When a sender drops in the middle
of a frame, the hub sends its receiver an ABORT fragment for it, so nothing half-received
is kept.
"""

from __future__ import annotations

import secrets
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgpack

from ember.config import describe_setting
from ember.runtime.transport import TransportError

# frame kinds
HELLO = 1  # node -> hub: the name it wants (source); body: msgpack {"version",
#   "security", "nonce" (for the hub to sign with security clear), and with tls or clear
#   "certificate" (PEM) and "signature" (over identity.hello_statement)}
WELCOME = 2  # hub -> node: registered; body: with clear, msgpack {"certificate", "signature"
#   (over identity.welcome_statement)}, else empty
REQUEST = 3
REPLY = 4
ERROR = 5  # a failed request; body: msgpack {"type", "message", "origin"}
PING = 6  # heartbeat: any message proves the peer alive
CHALLENGE = 7  # hub -> node, first on every stream: msgpack {"version", "security", "nonce"}

KIND_NAMES = {
    1: "HELLO",
    2: "WELCOME",
    3: "REQUEST",
    4: "REPLY",
    5: "ERROR",
    6: "PING",
    7: "CHALLENGE",
}

# frame flags
NO_REPLY = 1  # a REQUEST sent with fire(): the receiver sends nothing back

# fragment flags
FIRST = 1
LAST = 2
ABORT = 4  # the rest of this frame will never come (its sender is gone): drop what came

PROTOCOL_VERSION = 2  # 2: the hub opens each stream with a CHALLENGE
MAX_NAME_BYTES = 1024  # each of source, target and topic

_FRAGMENT = struct.Struct("<BQ")
_HEADER = struct.Struct("<BBQHHH")
FRAGMENT_OVERHEAD = _FRAGMENT.size + _HEADER.size + 3 * MAX_NAME_BYTES
"""The most bytes a fragment carries besides body bytes (gRPC limits add this)."""

Body = bytes | bytearray | memoryview | Sequence[bytes | bytearray | memoryview]
"""A body: one bytes-like object, or a sequence of them sent back to back (no join)."""


class ProtocolError(TransportError):
    """A peer sent something that is not a valid frame or fragment."""


@dataclass(frozen=True, slots=True)
class Header:
    """What the hub reads of a frame (never its body)."""

    kind: int
    flags: int
    id: int
    source: str
    target: str
    topic: str

    def describe(self) -> str:
        kind = KIND_NAMES.get(self.kind, str(self.kind))
        return f"{kind} {self.topic!r} {self.source} -> {self.target} (id {self.id})"


def _utf8(text: str, what: str) -> bytes:
    data = text.encode()
    if len(data) > MAX_NAME_BYTES:
        raise TransportError(f"{what} {text[:40]!r}... is longer than {MAX_NAME_BYTES} bytes")
    return data


def encode_header(header: Header) -> bytes:
    src, tgt, top = (
        _utf8(header.source, "node name"),
        _utf8(header.target, "node name"),
        _utf8(header.topic, "topic"),
    )
    return b"".join(
        (
            _HEADER.pack(header.kind, header.flags, header.id, len(src), len(tgt), len(top)),
            src,
            tgt,
            top,
        )
    )


def parse_fragment(msg: bytes) -> tuple[int, int, memoryview]:
    """``(flags, seq, rest)`` of one fragment; ``rest`` is a view, not a copy."""
    if len(msg) < _FRAGMENT.size:
        raise ProtocolError(f"a fragment of {len(msg)} bytes is shorter than its header")
    flags, seq = _FRAGMENT.unpack_from(msg)
    return flags, seq, memoryview(msg)[_FRAGMENT.size :]


def parse_header(rest: memoryview) -> tuple[Header, memoryview]:
    """The frame header at the start of a FIRST fragment's ``rest``, and the body bytes after."""
    if len(rest) < _HEADER.size:
        raise ProtocolError("a first fragment is shorter than a frame header")
    kind, flags, ident, ls, lt, lp = _HEADER.unpack_from(rest)
    end = _HEADER.size + ls + lt + lp
    if end > len(rest):
        raise ProtocolError("a frame header runs past the end of its fragment")
    raw = bytes(rest[_HEADER.size : end])
    try:
        source = raw[:ls].decode()
        target = raw[ls : ls + lt].decode()
        topic = raw[ls + lt :].decode()
    except UnicodeDecodeError:
        raise ProtocolError("a frame header holds names that are not UTF-8") from None
    return Header(kind, flags, ident, source, target, topic), rest[end:]


def body_views(body: Body) -> list[memoryview]:
    parts = [body] if isinstance(body, bytes | bytearray | memoryview) else list(body)
    views = []
    for part in parts:
        view = memoryview(part)
        if view.ndim != 1 or view.itemsize != 1:
            view = view.cast("B")
        if len(view):
            views.append(view)
    return views


class OutFrame:
    """A frame being sent: it yields its fragments one at a time (each a fresh ``bytes``,
    the one copy gRPC needs), so frames on one stream interleave fragment by fragment."""

    __slots__ = ("_first", "_fragment_size", "_parts", "_seq", "done", "size")

    def __init__(self, header: Header, body: Body, fragment_size: int) -> None:
        self._seq = secrets.randbits(64)
        self._parts = body_views(body)
        self._first: bytes | None = encode_header(header)
        self._fragment_size = fragment_size
        self.size = sum(len(p) for p in self._parts)
        self.done = False

    def next_fragment(self) -> bytes:
        """The next fragment; sets ``done`` after the last one."""
        pieces: list[bytes | memoryview] = [b""]
        flags = 0
        room = self._fragment_size - _FRAGMENT.size
        if self._first is not None:
            flags |= FIRST
            pieces.append(self._first)
            room -= len(self._first)
            self._first = None
        parts = self._parts
        while parts and room > 0:
            part = parts[0]
            if len(part) <= room:
                pieces.append(part)
                room -= len(part)
                parts.pop(0)
            else:
                pieces.append(part[:room])
                parts[0] = part[room:]
                room = 0
        if not parts:
            flags |= LAST
            self.done = True
        pieces[0] = _FRAGMENT.pack(flags, self._seq)
        return b"".join(pieces)


class InFrame:
    """A received frame: its header and its body as views of the received fragments."""

    __slots__ = ("header", "parts")

    def __init__(self, header: Header, parts: list[memoryview]) -> None:
        self.header = header
        self.parts = parts

    def body(self, kind: type = bytes) -> Any:
        """The body as ``bytes``, a writable ``bytearray``, or a ``memoryview`` (no copy when
        the frame came in one fragment)."""
        parts = self.parts
        if kind is memoryview:
            if len(parts) == 1:
                return parts[0]
            return memoryview(b"".join(parts))
        if kind is bytearray:
            return bytearray(b"").join(parts)
        if len(parts) == 1:
            return bytes(parts[0])
        return b"".join(parts)


class Reassembler:
    """Collects the fragments of frames arriving on one stream into :class:`InFrame` s.

    Bounded: a frame whose body would pass ``max_message`` bytes, more than ``max_partial``
    unfinished frames, more than ``max_partial_bytes`` bytes held for them, or an unfinished
    frame older than ``partial_timeout`` seconds (checked as fragments arrive and by
    :meth:`expire`) is a :class:`ProtocolError` (the connection is closed), found before
    the fragment is kept. :meth:`clear` drops everything held (the connection closed).
    """

    def __init__(
        self,
        max_message: int | None = None,
        max_partial: int | None = None,
        max_partial_bytes: int | None = None,
        partial_timeout: float | None = None,
    ) -> None:
        self._partial: dict[int, InFrame] = {}
        self._sizes: dict[int, int] = {}
        self._started: dict[int, float] = {}
        self.held = 0  # body bytes held for unfinished frames
        self.max_message = max_message
        self.max_partial = max_partial
        self.max_partial_bytes = max_partial_bytes
        self.partial_timeout = partial_timeout

    @classmethod
    def from_settings(cls, settings: Any) -> Reassembler:
        """One bounded by ``settings`` (:class:`~ember.net.settings.NetSettings`)."""
        return cls(
            settings.max_message_bytes,
            settings.max_partial_messages,
            settings.max_partial_bytes,
            settings.partial_message_timeout,
        )

    @property
    def partial(self) -> int:
        """How many frames are unfinished."""
        return len(self._partial)

    def clear(self) -> None:
        """Drop every unfinished frame (their views of the received fragments go)."""
        self._partial.clear()
        self._sizes.clear()
        self._started.clear()
        self.held = 0

    def _forget(self, seq: int) -> None:
        self._partial.pop(seq, None)
        self._started.pop(seq, None)
        self.held -= self._sizes.pop(seq, 0)

    def expire(self, now: float | None = None) -> None:
        """Raise ProtocolError if an unfinished frame is older than ``partial_timeout``."""
        if self.partial_timeout is None or not self._started:
            return
        now = time.monotonic() if now is None else now
        oldest = min(self._started.values())
        if now - oldest > self.partial_timeout:
            self.clear()
            raise ProtocolError(
                "a fragmented message was not finished within "
                + describe_setting("net.partial_message_timeout", self.partial_timeout)
            )

    def _check_size(self, size: int, grow: int) -> None:
        if self.max_message is not None and size > self.max_message:
            self.clear()
            raise ProtocolError(
                f"a message of more than {self.max_message} bytes was refused "
                f"(net.max_message_bytes={self.max_message}; large models travel in chunks, "
                f"raise it only for large inline messages)"
            )
        if self.max_partial_bytes is not None and self.held + grow > self.max_partial_bytes:
            self.clear()
            raise ProtocolError(
                f"unfinished messages on one connection passed {self.max_partial_bytes} bytes "
                f"(net.max_partial_bytes)"
            )

    def feed(
        self,
        flags: int,
        seq: int,
        rest: memoryview,
        first: tuple[Header, memoryview] | None = None,
    ) -> InFrame | None:
        """Add one fragment (``first``: its parsed header, when the caller parsed it
        already); returns the frame it completes, if any."""
        if flags & ABORT:
            self._forget(seq)
            return None
        if flags & FIRST:
            header, body = first if first is not None else parse_header(rest)
            self._check_size(len(body), 0 if flags & LAST else len(body))
            frame = InFrame(header, [body] if len(body) else [])
            if flags & LAST:
                return frame
            if seq in self._partial:
                raise ProtocolError(f"fragment sequence {seq} started twice")
            if self.max_partial is not None and len(self._partial) >= self.max_partial:
                self.clear()
                raise ProtocolError(
                    f"more than {self.max_partial} unfinished messages on one connection "
                    f"(net.max_partial_messages)"
                )
            self.expire()
            self._partial[seq] = frame
            self._sizes[seq] = len(body)
            self.held += len(body)
            self._started[seq] = time.monotonic()
            return None
        frame = self._partial.get(seq)  # type: ignore[assignment]
        if frame is None:
            raise ProtocolError(f"a fragment continues sequence {seq}, which never started")
        size = self._sizes[seq] + len(rest)
        self._check_size(size, 0 if flags & LAST else len(rest))
        if flags & LAST:
            self._forget(seq)
            if len(rest):
                frame.parts.append(rest)
            return frame
        self.expire()
        if len(rest):
            frame.parts.append(rest)
        self._sizes[seq] = size
        self.held += len(rest)
        return None


def abort_fragment(seq: int) -> bytes:
    """The fragment that tells a receiver frame ``seq`` will never be completed."""
    return _FRAGMENT.pack(ABORT, seq)


def error_body(exc: BaseException, origin: str) -> bytes:
    """An ERROR frame's body: the exception's type name and message."""
    body: bytes = msgpack.packb(  # msgpack has no type hints
        {"type": type(exc).__name__, "message": str(exc), "origin": origin}, use_bin_type=True
    )
    return body


def parse_error(body: bytes | memoryview) -> dict[str, str]:
    try:
        info = msgpack.unpackb(body, raw=False)
        if isinstance(info, dict):
            return {k: str(v) for k, v in info.items()}
    except Exception:  # a malformed error body still reports something
        pass
    return {"type": "TransportError", "message": "malformed error reply", "origin": "handler"}
