"""Length-prefixed FOBS frames over a local socket (a site and its script's subprocess)."""

from __future__ import annotations

import socket
import struct
from typing import Any

from ember import fobs
from ember.errors import EmberError

_LEN = struct.Struct("<Q")


class ConnectionClosed(EmberError, ConnectionError):
    """The peer closed the connection."""


def send_frame(sock: socket.socket, obj: Any) -> None:
    """Send one object as an 8-byte length and a FOBS frame."""
    write_frame(sock, fobs.dumps(obj))


def write_frame(sock: socket.socket, data: bytes) -> None:
    """Send an already encoded FOBS frame, length first."""
    sock.sendall(_LEN.pack(len(data)))
    sock.sendall(data)


def _recv_into(sock: socket.socket, view: memoryview) -> None:
    got = 0
    while got < len(view):
        n = sock.recv_into(view[got:])
        if n == 0:
            raise ConnectionClosed("the peer closed the connection")
        got += n


def recv_frame(sock: socket.socket, max_bytes: int, ctx: fobs.Context | None = None) -> Any:
    """Receive one frame; arrays in it are writable. Frames over ``max_bytes`` are refused."""
    head = bytearray(_LEN.size)
    _recv_into(sock, memoryview(head))
    (length,) = _LEN.unpack(head)
    if length > max_bytes:
        raise fobs.FOBSError(f"frame of {length} bytes exceeds fobs.max_message_bytes={max_bytes}")
    buf = bytearray(length)
    _recv_into(sock, memoryview(buf))
    return fobs.loads(buf, ctx=ctx)
