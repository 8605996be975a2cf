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

Handler = Callable[[str, Any], Any]


class TransportError(RuntimeError):
    """A message could not be delivered or its handler failed."""


class UnknownTopicError(TransportError):
    """The target has no handler for the topic."""


class Endpoint:
    """A named node that handles requests by topic."""

    def __init__(self, name: str) -> None:
        self.name = name
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

    def add_endpoint(self, name: str) -> Endpoint:
        """Create and attach the endpoint ``name``."""
        with self._lock:
            if name in self._endpoints:
                raise TransportError(f"an endpoint named {name!r} is already attached")
            endpoint = self._endpoints[name] = Endpoint(name)
        return endpoint

    def _wire(self, value: Any) -> Any:
        # decode from a writable buffer: receivers get writable arrays, as over a socket
        return fobs.loads(bytearray(fobs.dumps(value))) if self.serialize else value

    def request(self, sender: str, target: str, topic: str, payload: Any) -> Any:
        """Send ``payload`` to ``target``'s ``topic`` handler and return its reply."""
        endpoint = self._endpoints.get(target)
        if endpoint is None:
            raise TransportError(f"{sender} sent {topic!r} to {target!r}, which is not attached")
        return self._wire(endpoint.handle(sender, topic, self._wire(payload)))

    def fire(self, sender: str, target: str, topic: str, payload: Any) -> None:
        """Send without waiting for a reply (delivery errors are still raised)."""
        self.request(sender, target, topic, payload)

    def broadcast(
        self, sender: str, targets: Iterable[str], topic: str, payload: Any, max_workers: int = 8
    ) -> dict[str, Any]:
        """Send to every target concurrently; returns each target's reply or raised error."""
        targets = list(targets)
        out: dict[str, Any] = {}
        with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(targets)))) as pool:
            futures = {t: pool.submit(self.request, sender, t, topic, payload) for t in targets}
            for target, future in futures.items():
                try:
                    out[target] = future.result()
                except Exception as exc:
                    out[target] = exc
        return out
