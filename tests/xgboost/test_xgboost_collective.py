"""The server job's answer to XGBoost's collective (ember_xgboost.collective): each method
gives what XGBoost's InMemoryHandler gives, every rank the same reply; a missing rank, a
malformed request and a closed job are replies that say so, never a hang."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest

from ember.tunnel import TunnelCall, TunnelReply
from ember_xgboost.collective import SERVICE, FederatedCollective, read_fields, receive_buffer


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | 0x80 if value else byte)
        if not value:
            return bytes(out)


def message(**fields: int | bytes) -> bytes:
    """A protobuf message of the collective's field numbers, encoded by hand."""
    numbers = {
        "sequence_number": 1,
        "rank": 2,
        "send_buffer": 3,
        "data_type": 4,
        "op": 5,
        "root": 4,
    }
    out = b""
    for name, value in fields.items():
        number = numbers[name]
        if isinstance(value, bytes):
            out += varint(number << 3 | 2) + varint(len(value)) + value
        else:
            out += varint(number << 3) + varint(value & 0xFFFFFFFFFFFFFFFF)
    return out


def call_all(
    collective: FederatedCollective, method: str, bodies: list[bytes], timeout: float = 10
) -> list[TunnelReply]:
    replies: list[Any] = [None] * len(bodies)

    def one(rank: int) -> None:
        replies[rank] = collective.forward(
            TunnelCall("xgboost", rank + 1, SERVICE + method, bodies[rank]), timeout
        )

    threads = [threading.Thread(target=one, args=(r,)) for r in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + 5)
    return replies


def buffer_of(reply: TunnelReply) -> bytes:
    assert reply.status == 0, reply.error
    fields = read_fields(reply.body)
    assert set(fields) <= {1}
    value = fields.get(1, b"")
    assert not isinstance(value, int)
    return bytes(value)


@pytest.mark.parametrize(
    ("op", "expected"),
    [(0, np.maximum), (1, np.minimum), (2, lambda *a: a[0] + a[1] + a[2])],
    ids=["max", "min", "sum"],
)
def test_allreduce_of_doubles_gives_every_rank_the_elementwise_reduction(
    op: int, expected: Any
) -> None:
    rng = np.random.default_rng(0)
    data = [rng.normal(size=257) for _ in range(3)]
    collective = FederatedCollective(3)
    bodies = [
        message(sequence_number=0, rank=r, send_buffer=d.tobytes(), data_type=2, op=op)
        for r, d in enumerate(data)
    ]
    replies = call_all(collective, "Allreduce", bodies)
    want = expected(*data) if op == 2 else expected(expected(data[0], data[1]), data[2])
    for reply in replies:
        np.testing.assert_array_equal(np.frombuffer(buffer_of(reply)), want)


def test_bitwise_allreduce_of_integers_and_a_refused_bitwise_allreduce_of_floats() -> None:
    a, b = np.array([0b1100, 7], np.int32), np.array([0b1010, 1], np.int32)
    for op, fn in ((3, np.bitwise_and), (4, np.bitwise_or), (5, np.bitwise_xor)):
        replies = call_all(
            FederatedCollective(2),
            "Allreduce",
            [
                message(sequence_number=0, rank=r, send_buffer=x.tobytes(), data_type=6, op=op)
                for r, x in enumerate((a, b))
            ],
        )
        np.testing.assert_array_equal(np.frombuffer(buffer_of(replies[1]), np.int32), fn(a, b))
    floats = [np.ones(2).tobytes()] * 2
    replies = call_all(
        FederatedCollective(2),
        "Allreduce",
        [
            message(sequence_number=0, rank=r, send_buffer=f, data_type=2, op=3)
            for r, f in enumerate(floats)
        ],
    )
    assert all(r.status != 0 and "bitwise" in r.error for r in replies)


def test_allgather_joins_by_rank_and_broadcast_returns_the_roots_buffer() -> None:
    collective = FederatedCollective(3)
    parts = [b"aa", b"bb", b"cc"]
    # ranks arrive in any order; the join is by rank
    replies = call_all(
        collective,
        "Allgather",
        [message(sequence_number=0, rank=r, send_buffer=parts[r]) for r in (0, 1, 2)],
    )
    assert {buffer_of(r) for r in replies} == {b"aabbcc"}
    replies = call_all(
        collective,
        "AllgatherV",
        [message(sequence_number=1, rank=r, send_buffer=b"x" * (r + 1)) for r in range(3)],
    )
    assert {buffer_of(r) for r in replies} == {b"xxxxxx"}
    replies = call_all(
        collective,
        "Broadcast",
        [
            message(sequence_number=2, rank=r, send_buffer=b"root" if r == 1 else b"", root=1)
            for r in range(3)
        ],
    )
    assert {buffer_of(r) for r in replies} == {b"root"}


def test_a_rank_that_never_calls_is_named_when_the_wait_times_out() -> None:
    collective = FederatedCollective(2, ["site-1", "site-2"])
    reply = collective.forward(
        TunnelCall(
            "xgboost",
            1,
            SERVICE + "Allgather",
            message(sequence_number=0, rank=0, send_buffer=b"a"),
        ),
        0.2,
    )
    assert reply.status != 0
    assert "site-2" in reply.error
    assert "0.2 s" in reply.error


def test_closing_the_collective_answers_a_waiting_rank() -> None:
    collective = FederatedCollective(2)
    replies: list[TunnelReply] = []
    waiting = threading.Thread(
        target=lambda: replies.append(
            collective.forward(
                TunnelCall(
                    "xgboost",
                    1,
                    SERVICE + "Allgather",
                    message(sequence_number=0, rank=0, send_buffer=b"a"),
                ),
                30,
            )
        )
    )
    waiting.start()
    collective.close("the job was aborted")
    waiting.join(10)
    assert not waiting.is_alive()
    assert replies[0].status != 0
    assert replies[0].error == "the job was aborted"


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"\x0a\xff", "truncated"),
        (b"\x1a\x05ab", "runs past"),
        (message(sequence_number=0, rank=5, send_buffer=b""), "rank 5 outside"),
        (message(sequence_number=0, rank=-1, send_buffer=b""), "rank -1 outside"),
        (b"\x0d\x00\x00\x00\x00", "wire type 5"),
    ],
)
def test_a_malformed_request_is_refused_with_the_reason(body: bytes, why: str) -> None:
    reply = FederatedCollective(2).forward(TunnelCall("xgboost", 1, SERVICE + "Allreduce", body), 1)
    assert reply.status != 0
    assert why in reply.error


def test_reply_encoding_reads_back_for_empty_and_large_buffers() -> None:
    for data in (b"", b"z" * 300, bytes(range(256)) * 1000):
        assert read_fields(receive_buffer(data)).get(1, b"") == data
