"""Tunnels: a local gRPC client's calls cross Ember byte for byte, at most once, and only
to the methods the tunnel allows."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest

from ember.config import Config, use_config
from ember.tunnel import (
    TOPIC,
    GrpcTunnelEndpoint,
    GrpcUpstream,
    TunnelCall,
    TunnelReply,
    TunnelService,
    sender,
)

METHOD = "/test.Echo/Reverse"


class _Echo:
    """A real gRPC service: replies with the body reversed and the metadata it saw."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes, dict[str, str]]] = []
        self.release = threading.Event()
        self.release.set()

    def service(self, details: Any) -> Any:
        method = details.method

        def unary(body: bytes, context: grpc.ServicerContext) -> bytes:
            self.release.wait(10)
            meta = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
            self.calls.append((method, body, meta))
            if body == b"fail":
                context.abort(grpc.StatusCode.FAILED_PRECONDITION, "asked to fail")
            return body[::-1]

        return grpc.unary_unary_rpc_method_handler(unary)


@pytest.fixture
def service() -> Iterator[tuple[_Echo, str]]:
    echo = _Echo()
    server = grpc.server(ThreadPoolExecutor(4), handlers=[echo])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield echo, f"127.0.0.1:{port}"
    server.stop(None)


class _Direct:
    """A site's requests delivered straight to the server's tunnel service (the in-process
    transport does the same after a FOBS round trip); ``fail_first`` breaks that many."""

    def __init__(self, tunnels: TunnelService, site: str = "site-1", fail_first: int = 0) -> None:
        self.tunnels, self.site, self.fail_first = tunnels, site, fail_first
        self.sent: list[dict[str, Any]] = []

    def request(self, peer: str, topic: str, payload: Any, timeout: float) -> Any:
        assert (peer, topic) == ("server", TOPIC)
        self.sent.append(payload)
        reply = self.tunnels._handle(self.site, payload)
        if self.fail_first:
            self.fail_first -= 1
            raise ConnectionError("connection to the server dropped")
        return reply


def _tunnel(
    address: str, requester: _Direct | None = None, allow: tuple[str, ...] = ("/test.Echo/",)
) -> tuple[TunnelService, GrpcTunnelEndpoint, _Direct]:
    tunnels = TunnelService()
    tunnels.open("echo", GrpcUpstream(address), sites=["site-1"], allow=allow)
    requester = requester or _Direct(tunnels)
    requester.tunnels = tunnels
    return tunnels, GrpcTunnelEndpoint("echo", sender(requester), allow), requester


def _call(address: str, body: bytes, method: str = METHOD, metadata: Any = None) -> bytes:
    with grpc.insecure_channel(address) as channel:
        return channel.unary_unary(method)(body, timeout=10, metadata=metadata)  # type: ignore[no-any-return]


def test_a_call_crosses_the_tunnel_byte_for_byte_with_its_metadata(service: Any) -> None:
    echo, address = service
    tunnels, endpoint, _ = _tunnel(address)
    body = bytes(range(256)) * 4096  # 1 MiB of every byte value
    try:
        assert _call(endpoint.address, body, metadata=[("x-rank", "3")]) == body[::-1]
    finally:
        endpoint.close()
        tunnels.close_all()
    method, seen, meta = echo.calls[0]
    assert (method, seen, meta["x-rank"]) == (METHOD, body, "3")


def test_a_method_the_tunnel_does_not_allow_is_refused_before_it_leaves_the_site(
    service: Any,
) -> None:
    echo, address = service
    tunnels, endpoint, requester = _tunnel(address)
    try:
        with pytest.raises(grpc.RpcError) as err:
            _call(endpoint.address, b"x", method="/admin.Control/Stop")
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert requester.sent == []
        assert echo.calls == []
        # and the server refuses such a call even when a site sends it anyway
        call = TunnelCall("echo", 1, "/admin.Control/Stop", b"x")
        reply = tunnels.forward("site-1", call)
        assert "does not forward '/admin.Control/Stop'" in reply.error
        assert echo.calls == []
    finally:
        endpoint.close()
        tunnels.close_all()


def test_a_call_resent_after_a_dropped_connection_reaches_the_service_once(
    service: Any,
) -> None:
    echo, address = service
    tunnels, endpoint, requester = _tunnel(address, _Direct(TunnelService(), fail_first=2))
    try:
        assert _call(endpoint.address, b"abc") == b"cba"
    finally:
        endpoint.close()
        tunnels.close_all()
    assert [p["seq"] for p in requester.sent] == [1, 1, 1]
    assert len(echo.calls) == 1


def test_a_duplicate_of_a_running_call_waits_for_it_instead_of_calling_again(
    service: Any,
) -> None:
    echo, address = service
    tunnels = TunnelService()
    tunnels.open("echo", GrpcUpstream(address), allow=("/test.",))
    echo.release.clear()
    call = TunnelCall("echo", 1, METHOD, b"once")
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(tunnels.forward, "site-1", call)
        second = pool.submit(tunnels.forward, "site-1", call)
        echo.release.set()
        replies = [first.result(10), second.result(10)]
    tunnels.close_all()
    assert [r.body for r in replies] == [b"ecno", b"ecno"]
    assert len(echo.calls) == 1


def test_the_services_error_reaches_the_local_client_with_its_code(service: Any) -> None:
    _, address = service
    tunnels, endpoint, _ = _tunnel(address)
    try:
        with pytest.raises(grpc.RpcError) as err:
            _call(endpoint.address, b"fail")
    finally:
        endpoint.close()
        tunnels.close_all()
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "asked to fail" in str(err.value.details())


def test_calls_to_a_closed_tunnel_or_from_another_site_are_refused_by_name(
    service: Any,
) -> None:
    _, address = service
    tunnels = TunnelService()
    tunnels.open("echo", GrpcUpstream(address), sites=["site-1"])
    assert (
        "not one of tunnel 'echo''s sites"
        in tunnels.forward("site-9", TunnelCall("echo", 1, METHOD, b"")).error
    )
    tunnels.close("echo")
    reply = tunnels.forward("site-1", TunnelCall("echo", 1, METHOD, b""))
    assert "no tunnel named 'echo' is open" in reply.error
    assert (
        "seq must be an integer"
        in TunnelReply.from_wire(
            tunnels._handle("site-1", {"tunnel": "echo", "seq": 0, "method": "/x", "body": b""})
        ).error
    )


def test_a_service_that_is_gone_fails_the_call_within_the_tunnel_timeout() -> None:
    with use_config(Config({"tunnel.call_timeout": 0.5})):
        tunnels, endpoint, _ = _tunnel("127.0.0.1:9")  # nothing listens on the discard port
    try:
        with pytest.raises(grpc.RpcError) as err:
            _call(endpoint.address, b"x")  # the client itself would wait 10 s
    finally:
        endpoint.close()
        tunnels.close_all()
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "DEADLINE_EXCEEDED" in str(err.value.details())


def test_a_tls_endpoint_serves_only_the_client_holding_the_jobs_key(
    service: Any, tmp_path: Any
) -> None:
    from ember.tunnel import write_loopback_tls

    _, address = service
    tls = write_loopback_tls(tmp_path / "tls")
    tunnels = TunnelService()
    tunnels.open("echo", GrpcUpstream(address), allow=("/test.",))
    endpoint = GrpcTunnelEndpoint("echo", sender(_Direct(tunnels)), ("/test.",), tls=tls)
    try:
        # a plain client gets no answer
        with grpc.insecure_channel(endpoint.address) as plain, pytest.raises(grpc.RpcError):
            plain.unary_unary(METHOD)(b"x", timeout=3)
        creds = grpc.ssl_channel_credentials(
            tls.server_cert.read_bytes(), tls.client_key.read_bytes(), tls.client_cert.read_bytes()
        )
        with grpc.secure_channel(endpoint.address, creds) as channel:
            assert channel.unary_unary(METHOD)(b"abc", timeout=10) == b"cba"
        stranger = write_loopback_tls(tmp_path / "other")  # a key the endpoint never saw
        creds = grpc.ssl_channel_credentials(
            tls.server_cert.read_bytes(),
            stranger.client_key.read_bytes(),
            stranger.client_cert.read_bytes(),
        )
        with grpc.secure_channel(endpoint.address, creds) as channel, pytest.raises(grpc.RpcError):
            channel.unary_unary(METHOD)(b"abc", timeout=10)
    finally:
        endpoint.close()
        tunnels.close_all()


class _OneTask:
    """A ServerLink whose only task asks for the tunnel ``spec``."""

    def __init__(self, spec: dict[str, Any]) -> None:
        from ember.common import FLModel
        from ember.common.messages import Task

        self.task = Task("train", "t1", FLModel(params={}, meta={"tunnel": spec}))

    def get_task(self, wait: float) -> Any:
        return self.task


def test_a_unix_socket_endpoint_is_dialled_from_the_site_folder_and_only_its_user_may_open_it(
    service: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import stat

    from ember.tunnel import TunnelSiteLink

    _, address = service
    tunnels = TunnelService()
    tunnels.open("echo", GrpcUpstream(address), allow=("/test.",))
    spec = {"name": "echo", "protocol": "grpc", "allow": ["/test."], "unix_socket": True}
    link = TunnelSiteLink(_OneTask(spec), _Direct(tunnels), "site-1", site_dir=tmp_path)  # type: ignore[arg-type]
    task = link.get_task(1)
    dial = task.data.meta["tunnel_address"]
    # unix:<digits>: a host:port-shaped address (XGBoost accepts no other) of a link in the
    # site folder, the script's working directory, to a socket only its owner may open
    name = dial.removeprefix("unix:")
    assert name.isdigit()
    socket_path = (tmp_path / name).resolve()
    assert stat.S_ISSOCK(socket_path.stat().st_mode)
    assert stat.S_IMODE(socket_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(socket_path.parent.stat().st_mode) == 0o700
    monkeypatch.chdir(tmp_path)
    try:
        assert _call(dial, b"abc", "/test.Echo/Reverse") == b"cba"
        assert os.path.islink(tmp_path / name)
    finally:
        link.close()
        tunnels.close_all()
    assert not (tmp_path / name).exists()
    assert not socket_path.parent.exists()
