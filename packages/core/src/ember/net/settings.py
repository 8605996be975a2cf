"""The ``net.*`` settings, read once when a hub or node is made."""

from __future__ import annotations

from dataclasses import dataclass

from ember.config import get_setting
from ember.net.frames import FRAGMENT_OVERHEAD

_INT_MAX = (1 << 31) - 1  # gRPC's integer channel arguments are C ints


@dataclass(frozen=True)
class NetSettings:
    connect_timeout: float
    heartbeat_interval: float
    backoff_min: float
    backoff_max: float
    fragment_size: int
    handler_threads: int
    max_connections: int
    max_message_bytes: int = 1 << 30
    max_partial_messages: int = 64
    max_partial_bytes: int = 2 << 30
    partial_message_timeout: float = 300.0
    handshake_timeout: float = 10.0
    idle_connection_timeout: float = 60.0
    max_incoming_connections: int = 8192

    @classmethod
    def current(cls) -> NetSettings:
        """The values in the current config (the job's, or the process's)."""
        return cls(
            connect_timeout=float(get_setting("net.connect_timeout")),
            heartbeat_interval=float(get_setting("net.heartbeat_interval")),
            backoff_min=float(get_setting("net.reconnect_backoff_min")),
            backoff_max=max(
                float(get_setting("net.reconnect_backoff_min")),
                float(get_setting("net.reconnect_backoff_max")),
            ),
            fragment_size=int(get_setting("net.fragment_size")),
            handler_threads=int(get_setting("net.handler_threads")),
            max_connections=int(get_setting("net.hub_max_connections")),
            max_message_bytes=int(get_setting("net.max_message_bytes")),
            max_partial_messages=int(get_setting("net.max_partial_messages")),
            max_partial_bytes=int(get_setting("net.max_partial_bytes")),
            partial_message_timeout=float(get_setting("net.partial_message_timeout")),
            handshake_timeout=float(get_setting("net.handshake_timeout")),
            idle_connection_timeout=float(get_setting("net.idle_connection_timeout")),
            max_incoming_connections=int(get_setting("net.hub_max_incoming_connections")),
        )

    @property
    def max_message(self) -> int:
        """gRPC's message size limit: a fragment and its headers."""
        return self.fragment_size + FRAGMENT_OVERHEAD + 1024

    @property
    def forward_buffer(self) -> int:
        """Bytes a hub queues for one slow receiver before the senders wait."""
        return max(64 << 20, 8 * self.fragment_size)

    def grpc_options(self) -> list[tuple[str, int | str]]:
        """gRPC channel and server options: the largest fragment (checked by gRPC from the
        message's length prefix, before it allocates a buffer)."""
        return [
            ("grpc.max_send_message_length", self.max_message),
            ("grpc.max_receive_message_length", self.max_message),
        ]

    def server_options(self) -> list[tuple[str, int | str]]:
        """A hub's gRPC server options: the fragment limit, the handshake timeout, the
        idle-connection limit and the TCP connections its port holds at once (gRPC's core
        aborts the process on a value of INT_MAX or more: clamped below it)."""
        return [
            *self.grpc_options(),
            ("grpc.server_handshake_timeout_ms", int(self.handshake_timeout * 1000)),
            ("grpc.max_connection_idle_ms", int(self.idle_connection_timeout * 1000)),
            (
                "grpc.max_allowed_incoming_connections",
                max(1, min(self.max_incoming_connections, _INT_MAX - 1)),
            ),
        ]
