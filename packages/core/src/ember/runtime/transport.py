"""The messaging API (request/reply, fire-and-forget, broadcast) and its in-process transport.

Every node (the server and each site) is an :class:`Endpoint` with handlers per topic.
The in-process transport calls the target's handler in the caller's thread and, by
default, passes every payload and reply through FOBS, so SimEnv catches what a networked
env would refuse (unregistered types, object arrays).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ember import fobs
from ember.config import get_setting
from ember.errors import EmberError
from ember.streaming.downloader import Downloader
from ember.streaming.fetcher import CHUNK
from ember.streaming.node import StreamNode
from ember.tunnel.calls import TOPIC as TUNNEL_CALL

Handler = Callable[[str, Any], Any]
# handed over without a FOBS round trip: stream chunks (raw bytes already) and tunnelled
# calls (dicts of str, int and bytes, checked by their handler; an XGBoost collective moves
# megabytes per call)
_RAW_TOPICS = frozenset({CHUNK, TUNNEL_CALL})


class TransportError(EmberError, RuntimeError):
    """A message could not be delivered or its handler failed."""


class UnknownTopicError(TransportError):
    """The target has no handler for the topic."""


class Endpoint:
    """A named node that handles requests by topic.

    ``lazy_tensors``: streamed arrays in what it receives stay references
    (:class:`~ember.streaming.lazy.LazyTensor`) until pulled; the server uses this to
    aggregate results one tensor at a time.
    """

    def __init__(self, name: str, lazy_tensors: bool = False, relay_tensors: bool = False) -> None:
        self.name = name
        self.lazy_tensors = lazy_tensors
        self.relay_tensors = relay_tensors
        self.stream: StreamNode | None = None
        self._handlers: dict[str, Handler] = {}

    def register_handler(self, topic: str, handler: Handler) -> None:
        """Handle ``topic`` with ``handler(sender, payload) -> reply``."""
        self._handlers[topic] = handler

    def handle(self, sender: str, topic: str, payload: Any) -> Any:
        handler = self._handlers.get(topic)
        if handler is None:
            raise UnknownTopicError(
                f"{self.name} has no handler for topic {topic!r} (sent by {sender}); "
                f"it handles {sorted(self._handlers)}"
            )
        return handler(sender, payload)


class InProcessTransport:
    """Delivers messages between endpoints of one process."""

    def __init__(self, serialize: bool = True) -> None:
        self.serialize = serialize
        self._endpoints: dict[str, Endpoint] = {}
        self._lock = threading.Lock()

    def add_endpoint(
        self, name: str, lazy_tensors: bool = False, relay_tensors: bool = False
    ) -> Endpoint:
        """Create and attach the endpoint ``name``, with its download service.

        ``relay_tensors``: references in what it receives stay references, to be passed on
        (a site whose script runs in another process).
        """
        with self._lock:
            if name in self._endpoints:
                raise TransportError(f"an endpoint named {name!r} is already attached")
            endpoint = self._endpoints[name] = Endpoint(name, lazy_tensors, relay_tensors)

        def request(target: str, topic: str, payload: Any, timeout: float | None) -> Any:
            return self.request(name, target, topic, payload, timeout)

        endpoint.stream = StreamNode(name, request)
        endpoint.stream.attach(endpoint)
        if get_setting("streaming.inprocess_direct"):
            endpoint.stream.fetcher.local = self._local_downloader
        return endpoint

    def _local_downloader(self, owner: str) -> Downloader | None:
        endpoint = self._endpoints.get(owner)
        return endpoint.stream.downloader if endpoint is not None and endpoint.stream else None

    def _wire(self, value: Any, sender: Endpoint, target: Endpoint) -> Any:
        """What ``target`` receives when ``sender`` sends ``value``: a FOBS round trip in
        which large arrays are offered by the sender and pulled by the target."""
        if not self.serialize:
            return value
        return self._unwire(self._encode(value, sender), target)

    @staticmethod
    def _encode(value: Any, sender: Endpoint) -> bytes:
        assert sender.stream is not None
        source = sender.stream
        tx = source.downloader.open(receivers=1) if source.enabled else None
        props = {"stream_tx": tx, "stream_min_bytes": source.min_tensor_bytes} if tx else {}
        data = fobs.dumps(value, ctx=fobs.Context(props))
        if tx is not None and tx.items:
            source.downloader.publish(tx)
        return data

    @staticmethod
    def _unwire(data: bytes, target: Endpoint) -> Any:
        """Decode from a writable buffer: receivers get writable arrays, as over a socket."""
        assert target.stream is not None
        ctx = fobs.Context(
            {
                "fetcher": target.stream.fetcher,
                "lazy_tensors": target.lazy_tensors,
                "relay_tensors": target.relay_tensors,
            }
        )
        return fobs.loads(bytearray(data), ctx=ctx)

    def request(
        self, sender: str, target: str, topic: str, payload: Any, timeout: float | None = None
    ) -> Any:
        """Send ``payload`` to ``target``'s ``topic`` handler and return its reply.

        In process the handler runs in the caller's thread, so ``timeout`` is not needed:
        handlers that wait take their own bound (a networked transport honours it).
        """
        endpoint = self._endpoints.get(target)
        source = self._endpoints.get(sender)
        if endpoint is None or source is None:
            missing = target if endpoint is None else sender
            raise TransportError(
                f"{sender} sent {topic!r} to {target!r}, but {missing!r} is not attached"
            )
        if topic in _RAW_TOPICS:
            # stream chunks are raw bytes already (ints in, a buffer out), tunnelled calls
            # plain data: handed over as they are. A network transport frames them.
            return endpoint.handle(sender, topic, payload)
        reply = endpoint.handle(sender, topic, self._wire(payload, source, endpoint))
        if not self.serialize:
            return reply
        # the reply is let go before the receiver pulls what it offers: an array nobody
        # else holds then moves to its last receiver instead of being copied
        data = self._encode(reply, endpoint)
        del reply
        return self._unwire(data, source)

    def close(self) -> None:
        """Stop every endpoint's download service."""
        for endpoint in self._endpoints.values():
            if endpoint.stream is not None:
                endpoint.stream.close()

    def fire(self, sender: str, target: str, topic: str, payload: Any) -> None:
        """Send without waiting for a reply (delivery errors are still raised)."""
        self.request(sender, target, topic, payload)

    def broadcast(
        self, sender: str, targets: Iterable[str], topic: str, payload: Any, max_workers: int = 8
    ) -> dict[str, Any]:
        """Send to every target concurrently; returns each target's reply or raised error."""
        return broadcast(self.request, sender, targets, topic, payload, max_workers)


def broadcast(
    request: Callable[..., Any],
    sender: str,
    targets: Iterable[str],
    topic: str,
    payload: Any,
    max_workers: int = 8,
) -> dict[str, Any]:
    """``request`` to every target concurrently; each target's reply or raised error."""
    targets = list(targets)
    out: dict[str, Any] = {}
    with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(targets)))) as pool:
        futures = {t: pool.submit(request, sender, t, topic, payload) for t in targets}
        for target, future in futures.items():
            try:
                out[target] = future.result()
            except Exception as exc:
                out[target] = exc
    return out
