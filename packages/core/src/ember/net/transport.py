"""The runtime's messaging API (as :class:`~ember.runtime.transport.InProcessTransport`)
over a networked node, so the runtime above it works unchanged."""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Iterable, Iterator
from typing import Any

import msgpack

from ember import fobs
from ember.net.datalink import DataLinks
from ember.net.errors import TransportError
from ember.net.messenger import Messenger
from ember.runtime.transport import Endpoint, Handler, broadcast
from ember.streaming import bind_node
from ember.streaming.fetcher import CHUNK
from ember.streaming.node import StreamNode

_CHUNK_DATA = struct.Struct("<BIQ")  # tag 1, crc, item size; then the chunk's bytes
_CHUNK_OTHER = b"\x00"  # then any reply as FOBS (an error)


class _NetEndpoint(Endpoint):
    """An endpoint whose handlers are also served on the network node."""

    def __init__(
        self, transport: NetTransport, name: str, lazy_tensors: bool, relay_tensors: bool
    ) -> None:
        super().__init__(name, lazy_tensors, relay_tensors)
        self._transport = transport

    def register_handler(self, topic: str, handler: Handler) -> None:
        super().register_handler(topic, handler)
        self._transport._serve_topic(self, topic)


class NetTransport:
    """Messages between processes over a :class:`~ember.net.NetNode` (or ``hub.local``).

    Payloads are FOBS-encoded; arrays of at least ``streaming.min_tensor_bytes`` are offered
    by this process's download service and pulled by the receiver in chunks over the same
    connection (``streaming.enabled=False`` sends them inline, with identical results).
    Stream chunks travel as raw bytes. With ``links`` (:mod:`ember.net.datalink`), downloads
    to and from the peers that offer them go over direct data links instead. Closing the
    transport stops its download service; the node and the links are their owner's to close.
    """

    def __init__(self, node: Messenger, links: DataLinks | None = None) -> None:
        self.node = node
        self.links = links
        self._endpoints: dict[str, Endpoint] = {}

    def add_endpoint(
        self, name: str, lazy_tensors: bool = False, relay_tensors: bool = False
    ) -> Endpoint:
        """The node's endpoint (``name`` must be the node's name), with its download
        service, attached: its handlers answer requests from the network."""
        if name != self.node.name:
            raise TransportError(
                f"an endpoint of node {self.node.name!r} must be named {self.node.name!r}, "
                f"not {name!r}"
            )
        if name in self._endpoints:
            raise TransportError(f"an endpoint named {name!r} is already attached")
        endpoint = _NetEndpoint(self, name, lazy_tensors, relay_tensors)
        self._endpoints[name] = endpoint

        def request(target: str, topic: str, payload: Any, timeout: float | None) -> Any:
            return self.request(name, target, topic, payload, timeout)

        endpoint.stream = StreamNode(name, request)
        endpoint.stream.attach(endpoint)
        if self.links is not None:
            self.links.serve(endpoint.stream)
            endpoint.stream.fetcher.links = self.links
        return endpoint

    # -- encoding --------------------------------------------------------------------------
    @staticmethod
    def _encode(value: Any, endpoint: Endpoint) -> bytes:
        """FOBS bytes of ``value``; large arrays are offered by ``endpoint``'s downloader."""
        source = endpoint.stream
        assert source is not None
        tx = source.downloader.open(receivers=1) if source.enabled else None
        props = {"stream_tx": tx, "stream_min_bytes": source.min_tensor_bytes} if tx else {}
        data = fobs.dumps(value, ctx=fobs.Context(props))
        if tx is not None and tx.items:
            source.downloader.publish(tx)
        return data

    @staticmethod
    def _decode(data: bytearray, endpoint: Endpoint) -> Any:
        """Decode into writable arrays; streamed ones are pulled (or kept as references on
        a lazy or relaying endpoint)."""
        assert endpoint.stream is not None
        ctx = fobs.Context(
            {
                "fetcher": endpoint.stream.fetcher,
                "lazy_tensors": endpoint.lazy_tensors,
                "relay_tensors": endpoint.relay_tensors,
            }
        )
        return fobs.loads(data, ctx=ctx)

    # -- serving ---------------------------------------------------------------------------
    def _serve_topic(self, endpoint: Endpoint, topic: str) -> None:
        if topic == CHUNK:

            def serve_chunk(sender: str, body: memoryview) -> list[Any]:
                with _bound(endpoint.stream):
                    reply = endpoint.handle(sender, CHUNK, msgpack.unpackb(body))
                return _chunk_reply(reply)

            self.node.register_handler(topic, serve_chunk, body_type=memoryview)
            return

        def serve(sender: str, body: bytearray) -> bytes:
            with _bound(endpoint.stream):
                payload = self._decode(body, endpoint)
                del body
                reply = endpoint.handle(sender, topic, payload)
                del payload
                return self._encode(reply, endpoint)

        self.node.register_handler(topic, serve, body_type=bytearray)

    # -- the messaging API -----------------------------------------------------------------
    def _endpoint(self, sender: str) -> Endpoint:
        endpoint = self._endpoints.get(sender)
        if endpoint is None:
            raise TransportError(
                f"{sender!r} is not an endpoint of this transport (node {self.node.name!r})"
            )
        return endpoint

    def request(
        self, sender: str, target: str, topic: str, payload: Any, timeout: float | None = None
    ) -> Any:
        """Send ``payload`` to ``target``'s ``topic`` handler and return its reply
        (``timeout``: None waits until the reply comes or the connection is lost)."""
        endpoint = self._endpoint(sender)
        if self.links is not None:
            self.links.prepare(target)
        if topic == CHUNK:
            reply = self.node.request(
                target, CHUNK, msgpack.packb(payload), timeout, reply_type=memoryview
            )
            return _parse_chunk_reply(reply)
        data = self._encode(payload, endpoint)
        reply = self.node.request(target, topic, data, timeout, reply_type=bytearray)
        del data
        return self._decode(reply, endpoint)

    def fire(self, sender: str, target: str, topic: str, payload: Any) -> None:
        """Send without waiting for a reply (delivery errors are still raised)."""
        self.node.fire(target, topic, self._encode(payload, self._endpoint(sender)))

    def broadcast(
        self, sender: str, targets: Iterable[str], topic: str, payload: Any, max_workers: int = 8
    ) -> dict[str, Any]:
        """Send to every target concurrently; returns each target's reply or raised error."""
        return broadcast(self.request, sender, targets, topic, payload, max_workers)

    def close(self) -> None:
        """Stop the endpoints' download services (not the node)."""
        for endpoint in self._endpoints.values():
            if endpoint.stream is not None:
                endpoint.stream.close()


@contextlib.contextmanager
def _bound(node: StreamNode | None) -> Iterator[None]:
    """Bind a download service to the handler's thread while it runs."""
    bind_node(node)
    try:
        yield
    finally:
        bind_node(None)


def _chunk_reply(reply: Any) -> list[Any]:
    """A chunk reply as body parts: a small header and the chunk's bytes, never copied
    here (an error or anything else goes as FOBS)."""
    if isinstance(reply, dict) and set(reply) == {"data", "crc", "size"}:
        data, crc, size = reply["data"], reply["crc"], reply["size"]
        if isinstance(data, bytes | bytearray | memoryview) and isinstance(crc, int):
            return [_CHUNK_DATA.pack(1, crc, int(size)), data]
    return [_CHUNK_OTHER, fobs.dumps(reply)]


def _parse_chunk_reply(reply: memoryview) -> Any:
    if len(reply) >= _CHUNK_DATA.size and reply[0] == 1:
        _, crc, size = _CHUNK_DATA.unpack_from(reply)
        return {"data": reply[_CHUNK_DATA.size :], "crc": crc, "size": size}
    if len(reply) >= 1 and reply[0] == 0:
        return fobs.loads(reply[1:])
    return None  # the fetcher treats it as a malformed reply and retries
