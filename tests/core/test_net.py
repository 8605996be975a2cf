"""ember.net over real gRPC on loopback with mutual TLS: routing, errors, large bodies,
admission (certificates and authorize), callbacks, spoofing."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from core.test_net_kit import network, pki  # noqa: F401  (pki: a fixture)
from ember.net import ConnectError, RemoteError, TransportError, UnknownTopicError
from ember.net.frames import REQUEST, Header, OutFrame

pytestmark = pytest.mark.timeout(90)

MIB = 1 << 20


def echo(sender: str, body: bytes) -> bytes:
    return sender.encode() + b":" + body


def test_import_does_not_import_grpc() -> None:
    code = "import sys, ember.net; assert 'grpc' not in sys.modules, 'grpc imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_request_reply_both_ways_and_with_the_hub(pki) -> None:  # noqa: F811
    with network(pki) as net:
        hub = net.hub()
        connected: list[str] = []
        seen = threading.Event()

        def on_connect(name: str) -> None:
            connected.append(name)
            if len(connected) == 2:
                seen.set()

        hub.on_connect = on_connect
        a, b = net.node("site-1", hub), net.node("site-2", hub)
        for node in (a, b):
            node.register_handler("echo", echo)
        hub.local.register_handler("echo", echo)
        assert seen.wait(5)
        assert sorted(connected) == hub.connected() == ["site-1", "site-2"]

        assert a.request("site-2", "echo", b"hi", 5) == b"site-1:hi"
        assert b.request("site-1", "echo", b"yo", 5) == b"site-2:yo"
        assert a.request("server", "echo", b"up", 5) == b"site-1:up"
        assert hub.local.request("site-2", "echo", b"down", 5) == b"server:down"
        assert a.request("site-1", "echo", b"self", 5) == b"site-1:self"


def test_concurrent_requests_share_one_stream(pki) -> None:  # noqa: F811
    with network(pki) as net:
        hub = net.hub()
        a, b = net.node("site-1", hub), net.node("site-2", hub)
        together = threading.Barrier(8, timeout=10)

        def slow(sender: str, body: bytes) -> bytes:
            together.wait()  # only returns once 8 handlers run at the same time
            return body[::-1]

        b.register_handler("rev", slow)
        bodies = [f"request-{i}".encode() * (i + 1) for i in range(32)]
        with ThreadPoolExecutor(16) as pool:
            replies = list(pool.map(lambda body: a.request("site-2", "rev", body, 20), bodies))
        assert replies == [body[::-1] for body in bodies]


def test_handler_may_request_the_caller(pki) -> None:  # noqa: F811
    with network(pki) as net:
        hub = net.hub()
        a, b = net.node("site-1", hub), net.node("site-2", hub)
        a.register_handler("chunk", lambda sender, body: b"piece-" + body)
        b.register_handler(
            "pull",
            lambda sender, body: b"+".join(
                b.request(sender, "chunk", bytes([48 + i]), 5) for i in range(3)
            ),
        )
        assert a.request("site-2", "pull", b"", 5) == b"piece-0+piece-1+piece-2"


def test_errors_come_back_with_the_remote_type_and_message(pki) -> None:  # noqa: F811
    with network(pki) as net:
        hub = net.hub()
        a, b = net.node("site-1", hub), net.node("site-2", hub)

        def boom(sender: str, body: bytes) -> bytes:
            raise ValueError(f"bad body {body!r}")

        b.register_handler("boom", boom)
        hub.local.register_handler("boom", boom)
        with pytest.raises(RemoteError, match=r"ValueError: bad body b'x'") as info:
            a.request("site-2", "boom", b"x", 5)
        assert isinstance(info.value, TransportError)
        assert (info.value.remote_type, info.value.remote_message) == (
            "ValueError",
            "bad body b'x'",
        )
        with pytest.raises(TransportError, match="server failed handling 'boom'"):
            a.request("server", "boom", b"x", 5)
        with pytest.raises(UnknownTopicError, match="site-2 has no handler for topic 'nope'"):
            a.request("site-2", "nope", b"", 5)
        b.register_handler("text", lambda sender, body: "not bytes")
        with pytest.raises(RemoteError, match="returned str, not bytes"):
            a.request("site-2", "text", b"", 5)
        # the stream survives errors
        b.register_handler("echo", echo)
        assert a.request("site-2", "echo", b"ok", 5) == b"site-1:ok"


def test_unknown_target_fails_fast(pki) -> None:  # noqa: F811
    with network(pki) as net:
        hub = net.hub()
        a = net.node("site-1", hub)
        started = time.monotonic()
        with pytest.raises(TransportError, match="site-9 is not connected"):
            a.request("site-9", "echo", b"", 30)
        with pytest.raises(TransportError, match="site-9 is not connected"):
            hub.local.request("site-9", "echo", b"", 30)
        assert time.monotonic() - started < 5


def test_no_reply_in_time_is_a_timeout_naming_target_and_topic(pki) -> None:  # noqa: F811
    with network(pki) as net:
        hub = net.hub()
        a, b = net.node("site-1", hub), net.node("site-2", hub)
        release = threading.Event()
        b.register_handler("wait", lambda sender, body: b"late" if release.wait(10) else b"")
        with pytest.raises(TimeoutError, match=r"no reply from site-2 to 'wait' within 0.2 s"):
            a.request("site-2", "wait", b"", 0.2)
        release.set()
        b.register_handler("echo", echo)
        assert a.request("site-2", "echo", b"next", 5) == b"site-1:next"  # late reply ignored


def test_fire_runs_the_handler_without_a_reply(pki) -> None:  # noqa: F811
    with network(pki) as net:
        hub = net.hub()
        a, b = net.node("site-1", hub), net.node("site-2", hub)
        got: list[tuple[str, bytes]] = []
        done = threading.Event()
        b.register_handler("note", lambda sender, body: got.append((sender, body)) or done.set())
        a.fire("site-2", "note", b"hello")
        assert done.wait(5)
        assert got == [("site-1", b"hello")]


def test_50_mib_body_in_fragments_is_bit_exact(pki) -> None:  # noqa: F811
    # gRPC refuses messages above ~fragment size here: only fragments get through
    with network(pki, net__fragment_size=MIB) as net:
        hub = net.hub()
        a, b = net.node("site-1", hub), net.node("site-2", hub)
        body = np.random.default_rng(7).integers(0, 256, 50 * MIB, dtype=np.uint8).tobytes()
        digest = {}

        def store(sender: str, data: bytes) -> bytes:
            digest["in"] = data == body
            return data[::-1]

        b.register_handler("big", store)
        hub.local.register_handler("big", store)
        small = threading.Event()
        b.register_handler("small", lambda sender, data: small.set() or b"")
        reply = a.request("site-2", "big", body, 60)
        assert digest["in"] is True
        assert reply == body[::-1]
        digest.clear()
        assert hub.local.request("site-2", "big", body, 60) == body[::-1]
        assert digest["in"] is True
        assert a.request("server", "big", [body[: 3 * MIB], body[3 * MIB :]], 60) == body[::-1]
        assert a.request("site-2", "small", b"", 5) == b""


def test_certificate_from_another_ca_is_refused_at_the_handshake(pki) -> None:  # noqa: F811
    with network(pki) as net:
        hub = net.hub()
        intruder = net.node("site-1", hub, tls=pki.tls("site-1", foreign=True), start=False)
        with pytest.raises(ConnectError, match="TLS handshake failed") as info:
            intruder.start(5)
        assert info.value.kind == "tls"
        assert hub.connected() == []


def test_authorize_refuses_with_its_reason(pki) -> None:  # noqa: F811
    with network(pki) as net:
        hub = net.hub()
        # site-1's certificate asking for site-2's name
        impostor = net.node("site-2", hub, tls=pki.tls("site-1"), start=False)
        started = time.monotonic()
        with pytest.raises(
            ConnectError, match="certificate 'site-1' may not connect as 'site-2'"
        ) as info:
            impostor.start(5)
        assert info.value.kind == "refused"
        assert time.monotonic() - started < 3  # a refusal is not retried
        assert hub.connected() == []


def test_a_live_name_cannot_be_taken_twice(pki) -> None:  # noqa: F811
    with network(pki) as net:
        hub = net.hub()
        net.node("site-1", hub)
        second = net.node("site-1", hub, start=False)
        with pytest.raises(ConnectError, match="site-1 is already connected"):
            second.start(5)
        assert hub.connected() == ["site-1"]


def test_unreachable_hub(pki) -> None:  # noqa: F811
    with network(pki) as net:
        hub = net.hub()
        port = hub.port
        hub.stop(0)
        node = net.node("site-1", hub, start=False, address=f"127.0.0.1:{port}")
        with pytest.raises(ConnectError, match="unreachable") as info:
            node.start(0.5)
        assert info.value.kind == "unreachable"


def test_a_spoofed_source_closes_the_stream_and_is_not_delivered(pki) -> None:  # noqa: F811
    with network(pki) as net:
        hub = net.hub()
        a, b = net.node("site-1", hub), net.node("site-2", hub)
        got: list[str] = []
        b.register_handler("note", lambda sender, body: got.append(sender) or b"")
        dropped = threading.Event()
        reasons: list[str] = []
        hub.on_disconnect = lambda name, reason: (reasons.append(reason), dropped.set())
        back = threading.Event()
        a.on_reconnect = back.set
        link = a._link
        assert link is not None
        forged = Header(REQUEST, 1, 1, "site-3", "site-2", "note")
        link.outbox.put_frame(OutFrame(forged, b"", 1 << 20))
        assert dropped.wait(5)
        assert "sent a frame as 'site-3'" in reasons[0]
        assert back.wait(10)  # a reconnects by itself; its own name works
        a.request("site-2", "note", b"", 10)
        assert got == ["site-1"]


def test_plain_grpc_when_asked(pki) -> None:  # noqa: F811
    with network(pki) as net:
        hub = net.hub(secure=False, authorize=lambda cn, name: None if cn is None else "?")
        a, b = net.node("site-1", hub, secure=False), net.node("site-2", hub, secure=False)
        b.register_handler("echo", echo)
        assert a.request("site-2", "echo", b"plain", 5) == b"site-1:plain"


def test_fragments_of_many_frames_interleave_and_reassemble() -> None:
    from ember.net.frames import Reassembler, parse_fragment

    frames = {
        i: OutFrame(Header(REQUEST, 0, i, "a", "b", f"t{i}"), bytes([i]) * (i * 7000), 16 * 1024)
        for i in range(1, 8)
    }
    reassembler, done = Reassembler(), {}
    while frames:  # round robin, as an outbox sends them
        for i, frame in list(frames.items()):
            flags, seq, rest = parse_fragment(frame.next_fragment())
            got = reassembler.feed(flags, seq, rest)
            if frame.done:
                del frames[i]
                assert got is not None
                done[got.header.id] = got
            else:
                assert got is None
    assert sorted(done) == list(range(1, 8))
    for i, frame in done.items():
        assert frame.header.topic == f"t{i}"
        assert frame.body() == bytes([i]) * (i * 7000)
        assert frame.body(bytearray) == bytearray(frame.body())
        assert bytes(frame.body(memoryview)) == frame.body()


@pytest.mark.parametrize(
    "msg",
    [b"", b"\x01", b"\x01" + bytes(8), b"\x03" + bytes(8) + b"\x03\x00" + bytes(8) + b"\xff\xff"],
)
def test_malformed_fragments_are_protocol_errors(msg: bytes) -> None:
    from ember.net.frames import ProtocolError, Reassembler, parse_fragment

    def receive() -> None:
        Reassembler().feed(*parse_fragment(msg))

    with pytest.raises(ProtocolError):
        receive()


def test_garbage_from_a_node_closes_only_its_stream(pki) -> None:  # noqa: F811
    with network(pki) as net:
        hub = net.hub()
        a, b = net.node("site-1", hub), net.node("site-2", hub)
        b.register_handler("echo", echo)
        dropped = threading.Event()
        reasons: list[str] = []
        hub.on_disconnect = lambda name, reason: (reasons.append(reason), dropped.set())
        assert a._link is not None
        a._link.outbox.put_frame_fragment(b"\x02" + bytes(8) + b"junk")  # continues nothing
        assert dropped.wait(5)
        assert "protocol error" in reasons[0]
        hub.local.register_handler("echo", echo)
        assert b.request("server", "echo", b"still here", 5) == b"site-2:still here"
