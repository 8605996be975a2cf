"""Data links: a site pulls from and serves the server over its own TLS sockets beside the hub.

A real hub and real nodes (gRPC, mutual TLS) on loopback; the links are real TLS sockets.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np
import pytest

from core.test_net_kit import KIB, MIB, STREAMING, Net, network, pki  # noqa: F401  (pki: a fixture)
from ember.config import use_config
from ember.net import NetTransport, TransportError
from ember.net import datalink as datalink_module
from ember.net.datalink import LINK_TOPIC, DataLinks, LinkSettings, parse_ports
from ember.streaming import StreamingError
from ember.streaming.layout import tensor_header

pytestmark = pytest.mark.timeout(120)


def model(seed: int = 0) -> dict[str, np.ndarray[Any, Any]]:
    rng = np.random.default_rng(seed)
    return {
        "big": rng.standard_normal((1024, 1024), dtype=np.float32),  # 4 MiB
        "f64": rng.standard_normal(100_000),  # 800 KB
        "small": np.arange(10, dtype=np.int16),  # inline, never pulled
    }


@dataclass
class Pair:
    """The server's job process (``owner``, listening) and a site's (``site-1``, dialing)."""

    net: Net
    owner_links: DataLinks
    site_links: DataLinks
    owner: NetTransport
    site: NetTransport
    port: int

    def stats(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """What the site pulled from the owner, and what the owner pulled from the site."""
        site = self.site._endpoints["site-1"].stream.fetcher.transfer_stats()  # type: ignore[union-attr]
        owner = self.owner._endpoints["owner"].stream.fetcher.transfer_stats()  # type: ignore[union-attr]
        return site.get("owner", {}), owner.get("site-1", {})


@contextlib.contextmanager
def linked(pki: Any, **settings: Any) -> Iterator[Pair]:  # noqa: F811
    with network(pki, **{**STREAMING, **settings}) as net:
        hub = net.hub()
        owner_tls = net.pki.tls("owner", server=True)
        owner_node = net.node("owner", hub, tls=owner_tls)
        site_node = net.node("site-1", hub)
        with use_config(net.config):
            owner_links = DataLinks(owner_node, owner_tls, LinkSettings.current())
            port = owner_links.listen(
                "127.0.0.1",
                lambda node: None if node.startswith("site-") else f"{node} is not a site",
                lambda node: node,
            )
            site_links = DataLinks(site_node, net.pki.tls("site-1"), LinkSettings.current())
            site_links.dial("127.0.0.1", "localhost")
            owner, site = NetTransport(owner_node, owner_links), NetTransport(site_node, site_links)
            owner.add_endpoint("owner")
            endpoint = site.add_endpoint("site-1")

        def train(sender: str, task: dict[str, Any]) -> dict[str, Any]:
            for value in task["params"].values():
                value *= 2
            return {"params": task["params"]}

        endpoint.register_handler("train", train)
        try:
            yield Pair(net, owner_links, site_links, owner, site, port)
        finally:
            owner.close()
            site.close()
            owner_links.close()
            site_links.close()


def streamed_bytes(params: dict[str, np.ndarray[Any, Any]]) -> int:
    """Bytes of the arrays that are pulled (safetensors headers excluded)."""
    return sum(a.nbytes for a in params.values() if a.nbytes >= 64 * KIB)


def send_round(pair: Pair) -> dict[str, np.ndarray[Any, Any]]:
    reply = pair.owner.request("owner", "site-1", "train", {"params": model()}, 30)
    return reply["params"]  # type: ignore[no-any-return]


def test_both_directions_go_over_the_link_bit_exact(pki: Any, chunk_calls: list[str]) -> None:  # noqa: F811
    with linked(pki) as pair:
        assert pair.port > 0
        for _ in range(2):  # the second round reuses the connections
            got = send_round(pair)
            for name, array in model().items():
                assert got[name].tobytes() == (array * 2).tobytes()
        down, up = pair.stats()
        expected = 2 * streamed_bytes(model())
        assert down["items"] == up["items"] == 4
        # every pulled byte (tensor data plus its safetensors header) came over the link
        assert down["link_bytes"] == down["bytes"] >= expected
        assert up["link_bytes"] == up["bytes"] >= expected
        # one download per round each way, with its own bytes and seconds
        assert [b for b, _ in down["by_ref"]] == [down["bytes"] // 2] * 2
        assert all(seconds > 0 for _, seconds in down["by_ref"] + up["by_ref"])
    assert chunk_calls == []  # no chunk went through the hub


def test_links_off_use_the_hub_with_the_same_result(pki: Any, chunk_calls: list[str]) -> None:  # noqa: F811
    with linked(pki, net__data_links=False) as pair:
        assert pair.port == 0
        got = send_round(pair)
        for name, array in model().items():
            assert got[name].tobytes() == (array * 2).tobytes()
        down, up = pair.stats()
        assert down["link_bytes"] == up["link_bytes"] == 0
        assert down["bytes"] >= streamed_bytes(model())
    assert set(chunk_calls) == {"owner", "site-1"}


def test_clear_security_offers_no_link(pki: Any) -> None:  # noqa: F811
    with network(pki) as net, use_config(net.config):
        tls = net.pki.tls("site-1")
        clear = type(tls)(tls.ca, tls.cert, tls.key, security="clear")
        hub = net.hub()
        links = DataLinks(net.node("owner", hub), clear, LinkSettings.current())
        assert not links.usable
        assert links.listen("127.0.0.1", lambda n: None, lambda n: n) == 0


def test_an_owner_error_is_its_reason_and_the_link_stays_usable(pki: Any) -> None:  # noqa: F811
    with linked(pki) as pair:
        send_round(pair)
        fetcher = pair.site._endpoints["site-1"].stream.fetcher  # type: ignore[union-attr]
        with pytest.raises(StreamingError, match="has no download nope"):
            fetcher.fetch_tensor("owner", "nope", "0")
        before = pair.stats()[0]["link_bytes"]
        send_round(pair)
        assert pair.stats()[0]["link_bytes"] > before


class FailingServing:
    """The owner's download service, whose item streams fail after ``good`` pieces."""

    def __init__(self, inner: Any, good: int, error: BaseException | None = None) -> None:
        self.inner, self.good, self.error = inner, good, error
        self.release = threading.Event()

    def handle(self, sender: str, topic: str, payload: Any) -> Any:
        return self.inner.handle(sender, topic, payload)

    def pieces(self, *args: Any) -> Any:
        size, pieces = self.inner.pieces(*args)

        def failing() -> Iterator[Any]:
            for n, data in enumerate(pieces):
                if n >= self.good:
                    if self.error is None:  # stall: a peer gone silent mid-item
                        self.release.wait(30)
                    else:
                        raise self.error
                yield data

        return size, failing()


def test_a_link_broken_mid_item_goes_on_through_the_hub(
    pki: Any,  # noqa: F811
    chunk_calls: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(datalink_module, "_SLICE", 1 * MIB)  # the 4 MiB tensor: 4 pieces
    with linked(pki) as pair:
        assert pair.owner_links.serving is not None
        pair.owner_links.serving = FailingServing(pair.owner_links.serving, 2, OSError("disk gone"))
        got = send_round(pair)
        for name, array in model().items():
            assert got[name].tobytes() == (array * 2).tobytes()
        down, _ = pair.stats()
        assert 0 < down["link_bytes"] < down["bytes"]  # part by link, the rest by the hub
    assert "owner" in chunk_calls


def test_a_stalled_link_times_out_and_the_hub_finishes(
    pki: Any,  # noqa: F811
    chunk_calls: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(datalink_module, "_SLICE", 1 * MIB)
    with linked(pki, streaming__per_request_timeout=0.5) as pair:
        assert pair.owner_links.serving is not None
        stalled = FailingServing(pair.owner_links.serving, 2)
        pair.owner_links.serving = stalled
        try:
            got = send_round(pair)
        finally:
            stalled.release.set()
        for name, array in model().items():
            assert got[name].tobytes() == (array * 2).tobytes()
        assert 0 < pair.stats()[0]["link_bytes"] < pair.stats()[0]["bytes"]
    assert "owner" in chunk_calls


def hello(port: int, tls: Any, message: dict[str, Any]) -> dict[str, Any]:
    """Open a link connection by hand and return the listener's answer to ``message``."""
    ctx = ssl.create_default_context(cafile=str(tls.ca))
    ctx.load_cert_chain(str(tls.cert), str(tls.key))
    with (
        socket.create_connection(("127.0.0.1", port), 5) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as sock,
    ):
        head = msgpack.packb(message)
        sock.sendall(struct.pack("<I", len(head)) + head)

        def exactly(n: int) -> bytes:
            data = b""
            while len(data) < n:
                more = sock.recv(n - len(data))
                if not more:
                    raise ConnectionError("the listener closed the connection")
                data += more
            return data

        (n,) = struct.unpack("<I", exactly(4))
        return msgpack.unpackb(exactly(n))  # type: ignore[no-any-return]


def offer(pair: Pair, node: str) -> dict[str, Any]:
    """What the owner answers a node that asks, over the hub, for a link."""
    return msgpack.unpackb(pair.owner_links._offer(node, b""))  # type: ignore[no-any-return]


def test_admission_token_certificate_and_project(pki: Any) -> None:  # noqa: F811
    with linked(pki) as pair:
        site_tls = pair.net.pki.tls("site-1")
        token = offer(pair, "site-1")["token"]
        assert "port" not in offer(pair, "admin")  # not admitted: no link offered
        ok = {"v": 1, "node": "site-1", "token": token, "role": "pull"}
        assert hello(pair.port, site_tls, ok) == {"ok": True}
        refused = hello(pair.port, site_tls, {**ok, "token": "guessed"})
        assert "no valid token" in refused["error"]
        # another site's certificate cannot use site-1's token
        other = hello(pair.port, pair.net.pki.tls("site-2"), ok)
        assert "certificate of 'site-2' cannot open a link for 'site-1'" in other["error"]
        assert "unknown role" in hello(pair.port, site_tls, {**ok, "role": "boss"})["error"]
        # a certificate of another project fails the TLS handshake
        with pytest.raises((ssl.SSLError, ConnectionError)):
            hello(pair.port, pair.net.pki.tls("site-1", foreign=True), ok)
        # the hub topic answers a real node too
        reply = pair.site_links.node.request("owner", LINK_TOPIC, msgpack.packb({"v": 1}), 5)
        assert msgpack.unpackb(reply)["port"] == pair.port


def test_ports_setting() -> None:
    assert parse_ports("") == (0, 0)
    assert parse_ports("41000") == (41000, 41000)
    assert parse_ports(" 41000-41009 ") == (41000, 41009)
    for bad in ("x", "41009-41000", "0", "70000", "1-2-3"):
        with pytest.raises(TransportError, match=r"net\.data_link_ports must be a port or a range"):
            parse_ports(bad)


def test_no_free_port_in_the_range_means_the_hub(pki: Any, chunk_calls: list[str]) -> None:  # noqa: F811
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        with linked(pki, net__data_link_ports=str(port)) as pair:
            assert pair.port == 0
            got = send_round(pair)
            assert got["big"].tobytes() == (model()["big"] * 2).tobytes()
            assert pair.stats()[0]["link_bytes"] == 0
    assert chunk_calls


def test_chunks_relayed_for_a_script_come_over_the_link(pki: Any, chunk_calls: list[str]) -> None:  # noqa: F811
    """A site relays its script's pulls (``launch_external_process``): each chunk is a
    ranged read over the link, with the CRC-32 the script checks."""
    with linked(pki) as pair:
        owner = pair.owner._endpoints["owner"].stream  # type: ignore[union-attr]
        fetcher = pair.site._endpoints["site-1"].stream.fetcher  # type: ignore[union-attr]
        big = model()["big"]
        ref = owner.downloader.add_tensors({"big": big})
        stream = tensor_header("big", big) + big.tobytes()  # a one-tensor safetensors file
        assert fetcher.relay("owner", "stream.manifest", {"ref": ref})[0]["size"] == len(stream)
        got, offset = bytearray(), 0
        while offset < len(stream):
            payload = {"ref": ref, "item": "0", "offset": offset, "length": 1_000_003}
            reply = fetcher.relay("owner", "stream.chunk", payload)
            assert reply["size"] == len(stream)
            assert zlib.crc32(reply["data"]) == reply["crc"]
            got += reply["data"]
            offset += len(reply["data"])
        assert bytes(got) == stream
        past = fetcher.relay("owner", "stream.chunk", {**payload, "offset": len(stream)})
        assert len(past["data"]) == 0
        unknown = fetcher.relay("owner", "stream.chunk", {**payload, "ref": "nope"})
        assert "has no download nope" in unknown["error"]
        assert fetcher.relay("owner", "stream.done", {"ref": ref}) is True
        pulled = fetcher.transfer_stats()["owner"]
        assert pulled["items"] == 1
        assert pulled["link_bytes"] == pulled["bytes"] == len(stream)
    assert chunk_calls == []  # nothing went through the hub
