"""Tunnels for unary gRPC services (XGBoost's federated collective): a loopback gRPC server
in the site's job process that accepts any allowed method without decoding it, and the
upstream that replays each call on the real service from the server's job process.

Both sides treat messages as opaque bytes (no protobuf classes): a call's request and reply
bodies cross the tunnel exactly as the client and the service wrote them.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc

from ember.tunnel.calls import CallNumbers, Headers, TunnelCall, TunnelError, TunnelReply
from ember.tunnel.tls import LoopbackTls

_UNLIMITED: list[tuple[str, int | str]] = [
    ("grpc.max_receive_message_length", -1),
    ("grpc.max_send_message_length", -1),
    # collectives move megabytes per call: read ahead and frame in large pieces
    ("grpc.http2.lookahead_bytes", 16 << 20),
    ("grpc.http2.max_frame_size", (16 << 20) - 1),
]
# metadata gRPC sets itself on each hop: never copied from one hop to the next
_HOP_METADATA = ("user-agent", "grpc-", ":")
Send = Callable[[TunnelCall], TunnelReply]


def _end_to_end(metadata: Any) -> Headers:
    return tuple(
        (str(k), str(v))
        for k, v in (metadata or ())
        if isinstance(v, str) and not str(k).startswith(_HOP_METADATA)
    )


class GrpcTunnelEndpoint:
    """A loopback gRPC server whose calls go through the tunnel ``tunnel`` (``send``).

    ``allow``: method-path prefixes served; any other method is refused here with
    ``PERMISSION_DENIED`` before anything is sent. Calls are numbered in the order they
    arrive (``seq``); concurrent local calls stay concurrent. With ``tls`` the endpoint
    serves mutual TLS: only a client holding ``tls.client_key`` may call. With
    ``unix_socket`` it listens on that Unix domain socket instead of a loopback port (its
    folder's permissions decide who may call; see :class:`~ember.tunnel.TunnelSiteLink`).
    """

    protocol = "grpc"

    def __init__(
        self,
        tunnel: str,
        send: Send,
        allow: tuple[str, ...],
        max_workers: int = 32,
        tls: LoopbackTls | None = None,
        unix_socket: Path | None = None,
    ) -> None:
        if tls is not None and unix_socket is not None:
            raise TunnelError(f"tunnel {tunnel!r}: TLS or a Unix socket, not both")
        self.tunnel = tunnel
        self._send = send
        self.allow = allow
        self._numbers = CallNumbers()
        self._server = grpc.server(
            ThreadPoolExecutor(max_workers, thread_name_prefix=f"ember-tunnel-{tunnel}"),
            handlers=[_AnyMethod(self)],
            options=_UNLIMITED,
        )
        self.tls = tls
        self.unix_socket = unix_socket
        if unix_socket is not None:
            self.port = 0
            self._server.add_insecure_port(f"unix:{unix_socket}")
        elif tls is None:
            self.port = self._server.add_insecure_port("127.0.0.1:0")
        else:
            credentials = grpc.ssl_server_credentials(
                [(tls.server_key.read_bytes(), tls.server_cert.read_bytes())],
                root_certificates=tls.client_cert.read_bytes(),
                require_client_auth=True,
            )
            self.port = self._server.add_secure_port("127.0.0.1:0", credentials)
        self._server.start()

    @property
    def address(self) -> str:
        """``127.0.0.1:<port>`` or ``unix:<path>``: what the local client connects to."""
        if self.unix_socket is not None:
            return f"unix:{self.unix_socket}"
        return f"127.0.0.1:{self.port}"

    def next_seq(self) -> int:
        return self._numbers.next()

    def handle(self, method: str, body: bytes, context: grpc.ServicerContext) -> bytes:
        call = TunnelCall(
            self.tunnel, self.next_seq(), method, body, _end_to_end(context.invocation_metadata())
        )
        reply = self._send(call)
        if reply.error or reply.status != 0:
            # a status < 0: the tunnel itself failed (refused, no tunnel, timed out)
            code = _status_code(reply.status) if reply.status > 0 else grpc.StatusCode.UNAVAILABLE
            context.abort(code, reply.error or f"status {reply.status}")
        return reply.body

    def close(self) -> None:
        self._server.stop(grace=None)


class _AnyMethod:
    """grpc's generic handler (duck-typed: grpc calls ``service`` for every method)."""

    def __init__(self, endpoint: GrpcTunnelEndpoint) -> None:
        self.endpoint = endpoint

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Any:
        method = str(handler_call_details.method)
        endpoint = self.endpoint
        if not method.startswith(endpoint.allow):

            def refuse(body: bytes, context: grpc.ServicerContext) -> bytes:
                context.abort(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"tunnel {endpoint.tunnel!r} does not forward {method}",
                )
                raise AssertionError  # abort raises

            return grpc.unary_unary_rpc_method_handler(refuse)

        def unary(body: bytes, context: grpc.ServicerContext) -> bytes:
            return endpoint.handle(method, body, context)

        return grpc.unary_unary_rpc_method_handler(unary)


def _status_code(value: int) -> grpc.StatusCode:
    for code in grpc.StatusCode:
        if code.value[0] == value:
            return code
    return grpc.StatusCode.UNKNOWN


class GrpcUpstream:
    """Replays tunnelled calls on the gRPC service at ``address`` (a loopback port).

    With ``root_certificates`` (PEM) the channel is TLS, presenting ``private_key`` and
    ``certificate_chain`` when given (mutual TLS); ``server_name`` overrides the name the
    service's certificate is checked against.
    """

    def __init__(
        self,
        address: str,
        root_certificates: bytes | None = None,
        private_key: bytes | None = None,
        certificate_chain: bytes | None = None,
        server_name: str | None = None,
    ) -> None:
        options: list[tuple[str, int | str]] = list(_UNLIMITED)
        if root_certificates is None:
            self._channel = grpc.insecure_channel(address, options=options)
        else:
            if server_name:
                options.append(("grpc.ssl_target_name_override", server_name))
            creds = grpc.ssl_channel_credentials(root_certificates, private_key, certificate_chain)
            self._channel = grpc.secure_channel(address, creds, options=options)

    def forward(self, call: TunnelCall, timeout: float) -> TunnelReply:
        method = self._channel.unary_unary(call.method)  # no serializers: bytes as they are
        try:
            body, rpc = method.with_call(
                call.body, timeout=timeout, metadata=call.headers or None, wait_for_ready=True
            )
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
            details = exc.details() if hasattr(exc, "details") else str(exc)
            return TunnelReply(status=int(code.value[0]), error=f"{code.name}: {details}")
        return TunnelReply(status=0, body=bytes(body), headers=_end_to_end(rpc.trailing_metadata()))

    def close(self) -> None:
        self._channel.close()
