"""Fuzzing the wire framing and the hub's parser (hypothesis, a bounded budget here; a longer
run: ``python benchmarks/net_fuzz.py``). Any input is either a frame or a ProtocolError,
never another exception, and a bounded reassembler never holds more than its limits."""

from __future__ import annotations

import contextlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ember.net.frames import (
    FIRST,
    LAST,
    REQUEST,
    Header,
    OutFrame,
    ProtocolError,
    Reassembler,
    parse_fragment,
    parse_header,
)

BUDGET = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LIMITS = {"max_message": 64 * 1024, "max_partial": 4, "max_partial_bytes": 128 * 1024}

names = st.text(max_size=40)
headers = st.builds(
    Header,
    st.integers(0, 255),
    st.integers(0, 255),
    st.integers(0, 2**64 - 1),
    names,
    names,
    names,
)


def receive(messages: list[bytes]) -> Reassembler:
    """Feed messages as a hub's or node's reader does; stop at the first ProtocolError."""
    reassembler = Reassembler(**LIMITS)  # type: ignore[arg-type]
    try:
        for msg in messages:
            flags, seq, rest = parse_fragment(msg)
            reassembler.feed(flags, seq, rest)
            assert reassembler.partial <= LIMITS["max_partial"]
            assert reassembler.held <= LIMITS["max_partial_bytes"]
    except ProtocolError:
        pass
    return reassembler


@BUDGET
@given(st.lists(st.binary(max_size=2048), max_size=20))
def test_random_bytes_are_fragments_or_protocol_errors(messages: list[bytes]) -> None:
    receive(messages)


@BUDGET
@given(headers, st.binary(max_size=4096), st.integers(1024, 8192), st.data())
def test_mutated_fragments_of_real_frames_are_frames_or_protocol_errors(
    header: Header, body: bytes, fragment_size: int, data: st.DataObject
) -> None:
    frame = OutFrame(header, body, fragment_size)
    parts = []
    while not frame.done:
        parts.append(bytearray(frame.next_fragment()))
    for part in parts:  # flip some bytes, cut some fragments short
        for _ in range(data.draw(st.integers(0, 3))):
            if part:
                part[data.draw(st.integers(0, len(part) - 1))] = data.draw(st.integers(0, 255))
        if part and data.draw(st.booleans()):
            del part[data.draw(st.integers(0, len(part) - 1)) :]
    receive([bytes(p) for p in parts])


@BUDGET
@given(headers, st.binary(max_size=8192))
def test_unmutated_frames_round_trip(header: Header, body: bytes) -> None:
    frame = OutFrame(header, body, 1024 + 3 * 1024 + 64)
    reassembler, got = Reassembler(**LIMITS), None  # type: ignore[arg-type]
    while not frame.done:
        got = reassembler.feed(*parse_fragment(frame.next_fragment()))
    assert got is not None
    assert got.header == header
    assert got.body() == body


@BUDGET
@given(st.binary(max_size=512))
def test_header_parser_takes_any_bytes(raw: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        parse_header(memoryview(raw))


def test_a_hello_like_first_fragment_parses() -> None:
    frame = OutFrame(Header(REQUEST, 0, 1, "a", "b", "t"), b"", 4096)
    flags, _, rest = parse_fragment(frame.next_fragment())
    assert flags == FIRST | LAST
    assert parse_header(rest)[0].topic == "t"
