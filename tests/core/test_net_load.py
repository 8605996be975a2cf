"""A hub under mixed load (issue 28): garbage and silent connections beside real nodes and
admins. What is checked is behaviour, not time (benchmarks/net_load.py measures latency)."""

from __future__ import annotations

import selectors
import socket
import threading
import time
from collections.abc import Callable

from core.test_net_kit import network, pki  # noqa: F401  (pki: a fixture)
from ember.net import NetNode

SITES, ADMINS, GARBAGE, SILENT = 40, 4, 60, 60


def wait_closed(socks: list[socket.socket], timeout: float) -> int:
    """Read every socket until the peer closes it (or ``timeout`` ends); how many closed."""
    selector = selectors.DefaultSelector()
    for sock in socks:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
    closed, deadline = 0, time.monotonic() + timeout
    while closed < len(socks) and (left := deadline - time.monotonic()) > 0:
        for key, _ in selector.select(left):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                data = sock.recv(4096)
            except ConnectionResetError:
                data = b""
            except BlockingIOError:
                continue
            if not data:
                selector.unregister(sock)
                closed += 1
    selector.close()
    return closed


class Driver(threading.Thread):
    """Makes requests in rounds until stopped; keeps what went wrong."""

    def __init__(self, one_round: Callable[[int], None]) -> None:
        super().__init__(daemon=True)
        self.one_round = one_round
        self.stop = threading.Event()
        self.rounds = 0
        self.done_one = threading.Event()
        self.errors: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.one_round(self.rounds)
            except Exception as exc:
                self.errors.append(f"round {self.rounds}: {type(exc).__name__}: {exc}")
            self.rounds += 1
            self.done_one.set()


def test_a_hub_keeps_serving_nodes_and_admins_while_garbage_and_silent_connections_come(
    pki,  # noqa: F811
) -> None:
    with network(pki, **{"net.handshake_timeout": 1.0}) as net:
        hub = net.hub()
        hub.local.register_handler("status", lambda sender, body: sender.encode() + b":" + body)
        sites = [net.node(f"site-{i}", hub) for i in range(SITES)]
        admins = [net.node(f"admin-{i}", hub) for i in range(ADMINS)]
        for site in sites:
            site.register_handler("echo", lambda sender, body: body[::-1])

        def ask_hub(node: NetNode, tag: str) -> None:
            body = f"{tag}".encode()
            reply = node.request("server", "status", body, 30)
            assert reply == node.name.encode() + b":" + body, reply

        def site_round(n: int) -> None:
            for i, site in enumerate(sites):
                ask_hub(site, f"round {n}")
                peer = sites[(i + 1) % SITES]
                body = f"{site.name} to {peer.name} in round {n}".encode()
                assert site.request(peer.name, "echo", body, 30) == body[::-1]

        def admin_round(n: int) -> None:
            for admin in admins:
                ask_hub(admin, f"admin round {n}")

        junk = [socket.create_connection(("127.0.0.1", hub.port)) for _ in range(GARBAGE)]
        junk += [socket.create_connection(("127.0.0.1", hub.port)) for _ in range(SILENT)]
        for sock in junk[:GARBAGE]:
            sock.sendall(b"\x16\x03\x01garbage" * 8)  # not a TLS record the hub can read
        drivers = [Driver(site_round), Driver(admin_round)]
        for driver in drivers:
            driver.start()
        try:
            # every garbage connection is closed at once, every silent one after
            # net.handshake_timeout; 30 s is far above both
            closed = wait_closed(junk, 30.0)
            for driver in drivers:
                assert driver.done_one.wait(60.0)
        finally:
            for driver in drivers:
                driver.stop.set()
            for driver in drivers:
                driver.join(60.0)
            for sock in junk:
                sock.close()
        assert closed == GARBAGE + SILENT
        assert [d.errors for d in drivers] == [[], []]
        assert all(d.rounds >= 1 for d in drivers)
        # no real node was dropped, and the hub still serves after the load
        assert hub.connected() == sorted(n.name for n in [*sites, *admins])
        ask_hub(admins[0], "after")
        site_round(-1)
