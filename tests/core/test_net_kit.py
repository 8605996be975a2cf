"""Helpers for the ember.net tests (imported by them; holds no tests itself):
a project PKI, hub and node factories with fast net.* settings, a freezable TCP proxy."""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ember.config import Config, use_config
from ember.net import Hub, NetNode, TlsFiles
from ember.provision.certs import CertFiles, make_ca, make_cert

KIB, MIB = 1 << 10, 1 << 20
STREAMING = {
    "streaming__min_tensor_bytes": 64 * KIB,
    "streaming__chunk_size": 256 * KIB,
    "net__fragment_size": 1 * MIB,
}
"""Small thresholds, so that test arrays are pulled in several chunks."""

FAST = {
    "net.connect_timeout": 5.0,
    "net.heartbeat_interval": 1.0,
    "net.reconnect_backoff_min": 0.05,
    "net.reconnect_backoff_max": 0.2,
}


@dataclass
class Pki:
    """A project CA with a server and two sites, plus a foreign CA's certificate."""

    ca: CertFiles
    folder: Path
    foreign_ca: CertFiles

    def tls(self, name: str, *, foreign: bool = False, server: bool = False) -> TlsFiles:
        ca = self.foreign_ca if foreign else self.ca
        stem = f"{'foreign-' if foreign else ''}{name}"
        files = make_cert(
            ca,
            name,
            self.folder / stem,
            kind="server" if server else "client",
            hosts=["localhost", "127.0.0.1"] if server else None,
        )
        return TlsFiles(self.ca.cert, files.cert, files.key)


def make_pki(folder: Path) -> Pki:
    return Pki(make_ca("proj", folder / "ca"), folder, make_ca("other", folder / "other-ca"))


def same_name(cn: str | None, name: str) -> str | None:
    """The authorize PocEnv will use: a certificate speaks only for its own name."""
    return None if cn == name else f"certificate {cn!r} may not connect as {name!r}"


class Net:
    """Starts hubs and nodes under one config and stops them all at the end."""

    def __init__(self, pki: Pki, settings: dict[str, Any]) -> None:
        self.pki = pki
        self.config = Config({**FAST, **settings})
        self.hubs: list[Hub] = []
        self.nodes: list[NetNode] = []
        self._server_tls: TlsFiles | None = None

    @property
    def server_tls(self) -> TlsFiles:
        if self._server_tls is None:
            self._server_tls = self.pki.tls("server", server=True)
        return self._server_tls

    def hub(
        self,
        bind: str = "127.0.0.1:0",
        authorize: Callable[[str | None, str], str | None] = same_name,
        secure: bool = True,
    ) -> Hub:
        with use_config(self.config):
            hub = Hub("server", bind, self.server_tls if secure else None, authorize)
            hub.start()
        self.hubs.append(hub)
        return hub

    def node(
        self,
        name: str,
        hub: Hub,
        *,
        tls: TlsFiles | None = None,
        secure: bool = True,
        start: bool = True,
        address: str | None = None,
    ) -> NetNode:
        with use_config(self.config):
            tls = tls if tls is not None else (self.pki.tls(name) if secure else None)
            node = NetNode(
                name,
                address or f"127.0.0.1:{hub.port}",
                tls,
                server_name="localhost" if secure else None,
            )
            self.nodes.append(node)
            if start:
                node.start(5.0)
        return node

    def close(self) -> None:
        for node in self.nodes:
            node.close()
        for hub in self.hubs:
            hub.stop(0)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@contextlib.contextmanager
def network(pki: Pki, **settings: Any) -> Iterator[Net]:
    net = Net(pki, {k.replace("__", "."): v for k, v in settings.items()})
    try:
        yield net
    finally:
        net.close()


class FreezableProxy:
    """A TCP proxy; :meth:`freeze` stops it forwarding without closing anything (a peer
    that went silent: a cable pulled, a machine frozen), :meth:`thaw` resumes."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.running = threading.Event()
        self.running.set()
        self._stop = threading.Event()
        self._socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self._socks += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        peers = {a: b, b: a}
        try:
            while not self._stop.is_set():
                self.running.wait()
                ready, _, _ = select.select(list(peers), [], [], 0.05)
                for sock in ready:
                    if not self.running.is_set():
                        break
                    data = sock.recv(1 << 16)
                    if not data:
                        return
                    peers[sock].sendall(data)
        except OSError:
            return
        finally:
            for sock in peers:
                with contextlib.suppress(OSError):
                    sock.close()

    def freeze(self) -> None:
        self.running.clear()

    def thaw(self) -> None:
        self.running.set()

    def close(self) -> None:
        self._stop.set()
        self.running.set()
        self.listener.close()
        for sock in self._socks:
            with contextlib.suppress(OSError):
                sock.close()
