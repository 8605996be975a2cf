"""XGBoost's federated collective answered in the server's job process: an
:class:`ember.tunnel.Upstream` that serves the four methods of XGBoost's ``Federated`` gRPC
service (``Allgather``, ``AllgatherV``, ``Allreduce``, ``Broadcast``) itself.

Each site's XGBoost communicator still speaks XGBoost's own protocol to its site's tunnel
endpoint, and every call still travels as one Ember request; only the last hop changes:
instead of replaying the call on XGBoost's federated server (a child process listening on
``0.0.0.0`` behind mutual TLS, reached through a second gRPC client), the server's job
process computes the collective where the call arrives. That removes a gRPC hop, two TLS
legs and a process from every call (``benchmarks/xgboost_hist.py`` measures both), and
leaves no port open at all. ``xgb_options={"collective": "xgboost"}`` keeps XGBoost's
server (docs/xgboost.md).

The semantics are XGBoost's ``InMemoryHandler`` (src/collective/in_memory_handler.cc):
calls are matched by ``sequence_number``, an operation completes when every rank has
called, and every rank gets the same ``receive_buffer``: Allgather and AllgatherV join the
ranks' buffers in rank order, Broadcast returns the root's, Allreduce reduces elementwise
(max and min as ``std::max``/``std::min``, sum, bitwise and/or/xor for integers). Sums are
taken in rank order; XGBoost's server takes them in arrival order, which for two ranks
gives the same bits and for more is not deterministic.

Requests are decoded from protobuf's wire format by :func:`read_fields` (four messages of
at most five scalar fields; no generated classes, so ``protobuf`` is not a dependency).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ember.config import describe_timeout
from ember.tunnel import TunnelCall, TunnelReply

SERVICE = "/xgboost.collective.federated.Federated/"
# DataType of XGBoost's federated.proto (the order of ArrayInterfaceHandler::Type)
DTYPES: dict[int, Any] = {
    0: np.float16,
    1: np.float32,
    2: np.float64,
    4: np.int8,
    5: np.int16,
    6: np.int32,
    7: np.int64,
    8: np.uint8,
    9: np.uint16,
    10: np.uint32,
    11: np.uint64,
}
MAX, MIN, SUM, BITWISE_AND, BITWISE_OR, BITWISE_XOR = range(6)
_INVALID_ARGUMENT, _DEADLINE_EXCEEDED, _UNAVAILABLE = 3, 4, 14


class WireError(ValueError):
    """A request that is not the protobuf message its method names."""


def read_fields(data: bytes) -> dict[int, int | memoryview]:
    """The fields of one protobuf message holding only varints and byte strings (the last
    value of a repeated field number wins, as protobuf does for scalars); byte strings are
    views into ``data``, not copies."""
    fields: dict[int, int | memoryview] = {}
    view, pos, end = memoryview(data), 0, len(data)

    def varint() -> int:
        nonlocal pos
        value = shift = 0
        while True:
            if pos >= end or shift > 63:
                raise WireError("truncated or overlong varint")
            byte = view[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value
            shift += 7

    while pos < end:
        key = varint()
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            fields[number] = varint()
        elif wire_type == 2:
            size = varint()
            if size > end - pos:
                raise WireError("a length-delimited field runs past the message")
            fields[number] = view[pos : pos + size]
            pos += size
        else:
            raise WireError(f"unexpected wire type {wire_type} for field {number}")
    return fields


def reply_head(size: int) -> bytes:
    """The start of ``{Allgather,AllgatherV,Allreduce,Broadcast}Reply(receive_buffer=...)``
    for a buffer of ``size`` bytes (field 1, length-delimited); the buffer follows it."""
    head = bytearray(b"\x0a")
    while True:
        byte = size & 0x7F
        size >>= 7
        head.append(byte | 0x80 if size else byte)
        if not size:
            return bytes(head)


def receive_buffer(*parts: bytes | memoryview) -> bytes:
    """The reply holding ``parts`` joined, in one copy."""
    return b"".join([reply_head(sum(len(p) for p in parts)), *parts])


def _signed32(value: int) -> int:
    value &= 0xFFFFFFFFFFFFFFFF  # proto3 int32 travels as a 64-bit two's-complement varint
    return value - (1 << 64) if value >= 1 << 63 else value


@dataclass
class _Operation:
    method: str
    buffers: dict[int, memoryview] = field(default_factory=dict)
    params: tuple[int, int] = (0, 0)
    result: bytes | None = None
    error: str | None = None
    replied: int = 0


class FederatedCollective:
    """The collective of ``world_size`` ranks (an :class:`~ember.tunnel.Upstream`)."""

    def __init__(self, world_size: int, sites: list[str] | None = None) -> None:
        self.world_size = world_size
        self.sites = sites or [f"rank {r}" for r in range(world_size)]
        self._ops: dict[int, _Operation] = {}
        self._cond = threading.Condition()
        self._closed: str | None = None

    def forward(self, call: TunnelCall, timeout: float) -> TunnelReply:
        method = call.method.removeprefix(SERVICE)
        if method not in ("Allgather", "AllgatherV", "Allreduce", "Broadcast"):
            return TunnelReply(status=12, error=f"UNIMPLEMENTED: {call.method}")  # 12: gRPC's
        try:
            fields = read_fields(call.body)
            seq = int(fields.get(1, 0))
            rank = _signed32(int(fields.get(2, 0)))
            buffer = fields.get(3, memoryview(b""))
            if not isinstance(buffer, memoryview):
                raise WireError("send_buffer is not a byte string")
            params = (int(fields.get(4, 0)), int(fields.get(5, 0)))
            if method == "Broadcast":
                params = (_signed32(int(fields.get(4, 0))), 0)
            if not 0 <= rank < self.world_size:
                raise WireError(f"rank {rank} outside a world of {self.world_size}")
        except (WireError, TypeError) as exc:
            return TunnelReply(status=_INVALID_ARGUMENT, error=f"bad {method} request: {exc}")
        if self.world_size == 1:
            return TunnelReply(status=0, body=receive_buffer(buffer))
        return self._join(method, seq, rank, buffer, params, timeout)

    def _join(
        self,
        method: str,
        seq: int,
        rank: int,
        buffer: memoryview,
        params: tuple[int, int],
        timeout: float,
    ) -> TunnelReply:
        with self._cond:
            if self._closed is not None:
                return TunnelReply(status=_UNAVAILABLE, error=self._closed)
            op = self._ops.setdefault(seq, _Operation(method, params=params))
            if op.method != method or op.params != params:
                op.error = (
                    f"ranks disagree on collective {seq}: {op.method}{op.params} and "
                    f"{method}{params} from {self.sites[rank]}"
                )
            elif rank in op.buffers:
                op.error = f"{self.sites[rank]} called collective {seq} twice"
            else:
                op.buffers[rank] = buffer
            if len(op.buffers) == self.world_size and op.error is None:
                try:
                    op.result = self._compute(op)
                except ValueError as exc:
                    op.error = str(exc)
                op.buffers.clear()  # the inputs are no longer needed
            if op.error is None and op.result is None:
                done = self._cond.wait_for(
                    lambda: op.result is not None or op.error is not None or bool(self._closed),
                    timeout,
                )
                if not done:
                    missing = sorted(set(range(self.world_size)) - set(op.buffers))
                    names = ", ".join(self.sites[r] for r in missing)
                    op.error = (
                        f"collective {seq} ({method}) waited {describe_timeout(timeout)} for "
                        f"{names}"
                    )
            else:
                self._cond.notify_all()
            op.replied += 1
            if op.error is not None or op.replied >= self.world_size:
                self._ops.pop(seq, None)
            if op.error is not None:
                self._cond.notify_all()
                return TunnelReply(status=_DEADLINE_EXCEEDED, error=op.error)
            if self._closed is not None and op.result is None:
                return TunnelReply(status=_UNAVAILABLE, error=self._closed)
            assert op.result is not None
            return TunnelReply(status=0, body=op.result)

    def _compute(self, op: _Operation) -> bytes:
        """The encoded reply of a complete operation."""
        ranks = range(self.world_size)
        if op.method in ("Allgather", "AllgatherV"):
            sizes = {len(op.buffers[r]) for r in ranks}
            if op.method == "Allgather" and len(sizes) > 1:
                raise ValueError(f"Allgather buffers differ in size across ranks: {sorted(sizes)}")
            return receive_buffer(*(op.buffers[r] for r in ranks))
        if op.method == "Broadcast":
            root = op.params[0]
            if not 0 <= root < self.world_size:
                raise ValueError(f"Broadcast root {root} outside a world of {self.world_size}")
            return receive_buffer(op.buffers[root])
        data_type, operation = op.params
        dtype = DTYPES.get(data_type)
        if dtype is None:
            raise ValueError(f"Allreduce of an unsupported data type ({data_type})")
        arrays = [np.frombuffer(op.buffers[r], dtype=dtype) for r in ranks]
        if len({a.size for a in arrays}) > 1:
            raise ValueError("Allreduce buffers differ in size across ranks")
        first, rest = arrays[0], arrays[1:]
        # one pass over the inputs into a fresh array, then one copy into the reply's bytes
        # (gRPC sends only bytes): no zero-filled buffer, no copy of rank 0's input first
        if operation == SUM:
            out = np.add(first, rest[0]) if rest else first.copy()
            for other in rest[1:]:
                np.add(out, other, out=out)
        elif operation == MAX:  # std::max(a, b): a < b ? b : a
            out = first.copy()
            for other in rest:
                np.copyto(out, other, where=out < other)
        elif operation == MIN:  # std::min(a, b): b < a ? b : a
            out = first.copy()
            for other in rest:
                np.copyto(out, other, where=other < out)
        elif operation in (BITWISE_AND, BITWISE_OR, BITWISE_XOR):
            if not np.issubdtype(first.dtype, np.integer):
                raise ValueError("bitwise Allreduce of floating-point data")
            ufunc = {BITWISE_AND: np.bitwise_and, BITWISE_OR: np.bitwise_or}.get(
                operation, np.bitwise_xor
            )
            out = first.copy()
            for other in rest:
                ufunc(out, other, out=out)
        else:
            raise ValueError(f"unknown Allreduce operation {operation}")
        return b"".join([reply_head(out.nbytes), out.data])

    def close(self, reason: str = "the XGBoost collective closed: the job ended") -> None:
        """Fail every waiting call with ``reason``."""
        with self._cond:
            self._closed = reason
            self._cond.notify_all()
