"""ember.net when connections fail: hub restarts, peers that drop or go silent."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from core.test_net_kit import FreezableProxy, network, pki  # noqa: F401  (pki: a fixture)
from ember.net import TransportError

pytestmark = pytest.mark.timeout(90)


def echo(sender: str, body: bytes) -> bytes:
    return sender.encode() + b":" + body


class Events:
    """Callback recorder: ``wait(kind)`` blocks until that callback has happened."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.seen: list[tuple[str, Any]] = []

    def __call__(self, kind: str) -> Any:
        def record(*args: Any) -> None:
            with self.cond:
                self.seen.append((kind, args))
                self.cond.notify_all()

        return record

    def wait(self, kind: str, count: int = 1, timeout: float = 10.0) -> list[Any]:
        with self.cond:
            ok = self.cond.wait_for(
                lambda: sum(k == kind for k, _ in self.seen) >= count, timeout=timeout
            )
            assert ok, f"no {kind} within {timeout} s: {self.seen}"
            return [args for k, args in self.seen if k == kind]


def call_in_thread(fn: Any, *args: Any) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        started = time.monotonic()
        try:
            out["value"] = fn(*args)
        except BaseException as exc:
            out["error"] = exc
        out["elapsed"] = time.monotonic() - started

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def test_hub_restarted_on_the_same_port_nodes_reconnect(pki) -> None:  # noqa: F811
    with network(pki) as net:
        hub = net.hub()
        port = hub.port
        a, b = net.node("site-1", hub), net.node("site-2", hub)
        b.register_handler("echo", echo)
        events = Events()
        for node in (a, b):
            node.on_disconnect = events(f"{node.name}-down")
            node.on_reconnect = events(f"{node.name}-up")
        assert a.request("site-2", "echo", b"1", 5) == b"site-1:1"

        hub.stop(0)
        events.wait("site-1-down")
        with pytest.raises(TransportError):
            a.request("site-2", "echo", b"2", 0.3)  # nobody to take it while the hub is down

        hub2 = net.hub(bind=f"127.0.0.1:{port}")
        hub2.local.register_handler("echo", echo)
        events.wait("site-1-up")
        events.wait("site-2-up")
        assert sorted(hub2.connected()) == ["site-1", "site-2"]
        assert a.request("site-2", "echo", b"3", 5) == b"site-1:3"
        assert b.request("server", "echo", b"4", 5) == b"site-2:4"


def test_request_in_flight_fails_when_the_hub_goes_away(pki) -> None:  # noqa: F811
    with network(pki) as net:
        hub = net.hub()
        a, b = net.node("site-1", hub), net.node("site-2", hub)
        entered, release = threading.Event(), threading.Event()

        def stuck(sender: str, body: bytes) -> bytes:
            entered.set()
            release.wait(10)
            return b"too late"

        b.register_handler("stuck", stuck)
        thread, out = call_in_thread(a.request, "site-2", "stuck", b"", 60)
        assert entered.wait(5)
        hub.stop(0)
        thread.join(10)
        release.set()
        assert not thread.is_alive()
        assert isinstance(out.get("error"), TransportError), out
        assert "connection lost" in str(out["error"])
        assert out["elapsed"] < 5


def test_request_fails_when_the_target_drops(pki) -> None:  # noqa: F811
    with network(pki) as net:
        hub = net.hub()
        a, b = net.node("site-1", hub), net.node("site-2", hub)
        entered, release = threading.Semaphore(0), threading.Event()
        b.register_handler(
            "stuck", lambda sender, body: entered.release() or release.wait(10) or b""
        )
        thread, out = call_in_thread(a.request, "site-2", "stuck", b"", 60)
        thread2, out2 = call_in_thread(hub.local.request, "site-2", "stuck", b"", 60)
        assert entered.acquire(timeout=5)
        assert entered.acquire(timeout=5)
        b.close(grace=0)  # gone at once, as if it crashed
        thread.join(10)
        thread2.join(10)
        release.set()
        for result in (out, out2):
            assert isinstance(result.get("error"), TransportError), result
            assert "site-2 disconnected" in str(result["error"])
            assert result["elapsed"] < 5
        assert hub.connected() == ["site-1"]


def test_a_silent_connection_is_found_dead_and_replaced(pki) -> None:  # noqa: F811
    interval = 0.6
    with network(pki, net__heartbeat_interval=interval) as net:
        hub = net.hub()
        proxy = FreezableProxy(hub.port)
        try:
            hub_events, node_events = Events(), Events()
            hub.on_connect = hub_events("up")
            hub.on_disconnect = hub_events("down")
            a = net.node("site-1", hub, address=f"127.0.0.1:{proxy.port}")
            a.on_disconnect = node_events("down")
            a.on_reconnect = node_events("up")
            hub.local.register_handler("echo", echo)
            assert a.request("server", "echo", b"1", 5) == b"site-1:1"

            proxy.freeze()  # nothing passes, nothing is closed
            frozen = time.monotonic()
            ((name, reason),) = hub_events.wait("down", timeout=5 * interval)
            assert name == "site-1"
            assert "no message for" in reason
            (why,) = node_events.wait("down", timeout=5 * interval)[0]
            assert "no message from the hub" in why
            assert time.monotonic() - frozen < 4 * interval
            proxy.thaw()
            node_events.wait("up", timeout=10)
            assert a.request("server", "echo", b"2", 5) == b"site-1:2"
            assert hub.connected() == ["site-1"]
        finally:
            proxy.close()


def test_close_sends_what_is_queued_and_running_handlers_reply(pki) -> None:  # noqa: F811
    with network(pki) as net:
        hub = net.hub()
        a, b = net.node("site-1", hub), net.node("site-2", hub)
        noted = threading.Event()
        b.register_handler("note", lambda sender, body: noted.set())
        a.fire("site-2", "note", b"last words")
        a.close()  # the fire still goes out
        assert noted.wait(5)

        leaving = threading.Event()

        def bye(sender: str, body: bytes) -> bytes:
            leaving.set()  # the main thread closes b while this still has to reply
            return b"bye"

        b.register_handler("bye", bye)
        thread, out = call_in_thread(hub.local.request, "site-2", "bye", b"", 10)
        assert leaving.wait(5)
        b.close()
        thread.join(10)
        assert out.get("value") == b"bye", out

        c = net.node("site-3", hub)
        told = threading.Event()
        c.register_handler("note", lambda sender, body: told.set())
        hub.local.fire("site-3", "note", b"the hub is going down")
        hub.stop(2.0)  # with a grace: what is queued still goes out
        assert told.wait(5)


def test_a_reply_cut_off_midway_fails_the_request_and_leaves_nothing(pki) -> None:  # noqa: F811
    from ember.net.frames import ABORT, FIRST, REPLY, Header, OutFrame

    fragment = 64 * 1024
    with network(pki, net__fragment_size=fragment) as net:
        hub = net.hub()
        a, b = net.node("site-1", hub), net.node("site-2", hub)
        sent = threading.Event()

        def half_a_reply(frame: Any) -> None:  # b starts a 3-fragment reply, then dies
            h = frame.header
            reply = Header(REPLY, 0, h.id, "site-2", h.source, h.topic)
            first = OutFrame(reply, bytes(3 * fragment), fragment).next_fragment()
            assert b._link is not None
            b._link.outbox.put_frame_fragment(first)
            sent.set()

        b._serve_one = half_a_reply  # type: ignore[method-assign]
        assert a._link is not None
        reassembler = a._link.reassembler
        feed, started, aborted = reassembler.feed, threading.Event(), threading.Event()

        def watched(flags: int, seq: int, *rest: Any) -> Any:
            frame = feed(flags, seq, *rest)
            (started if flags == FIRST else aborted if flags & ABORT else threading.Event()).set()
            return frame

        reassembler.feed = watched  # type: ignore[method-assign]
        thread, out = call_in_thread(a.request, "site-2", "big", b"", 60)
        assert sent.wait(5)
        assert started.wait(5)  # a holds the first third of the reply
        assert len(reassembler._partial) == 1
        b.close(grace=0)
        thread.join(10)
        assert isinstance(out.get("error"), TransportError), out
        assert "site-2 disconnected" in str(out["error"])
        assert aborted.is_set()  # the hub aborted the half frame before failing the request
        assert reassembler._partial == {}
