"""Site-to-site messages: what client-controlled workflows (swarm learning) send each other.

A :class:`PeerLink` sends a request to another site by name and handles the topics other
sites send it. In SimEnv every node is an endpoint of one transport; a networked env routes
the same requests through the server, which relays them without reading them. Arrays above
``streaming.min_tensor_bytes`` are offered by the sender's download service and pulled by
the receiver, so a model moves from site to site one tensor at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ember.runtime.transport import Endpoint

PeerHandler = Callable[[str, Any], Any]


class PeerLink:
    """One site's requests to its peers and its handlers for theirs."""

    def __init__(self, site: str, endpoint: Endpoint, transport: Any) -> None:
        self.site = site
        self.endpoint = endpoint
        self.transport = transport

    def register(self, topic: str, handler: PeerHandler) -> None:
        """Answer peers' ``topic`` requests with ``handler(sender, payload) -> reply``."""
        self.endpoint.register_handler(topic, handler)

    def request(self, peer: str, topic: str, payload: Any, timeout: float) -> Any:
        """Send ``payload`` to ``peer``'s ``topic`` handler and return its reply."""
        return self.transport.request(self.site, peer, topic, payload, timeout)
