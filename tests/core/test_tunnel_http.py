"""HTTP tunnels (Flower's Fleet API): a local client's POSTs cross Ember byte for byte with
their end-to-end headers, and only to the paths the tunnel allows, at both ends."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from ember.tunnel import (
    ENDPOINTS,
    TOPIC,
    HttpTunnelEndpoint,
    HttpUpstream,
    TunnelCall,
    TunnelService,
    sender,
)

FLEET = "/v1/fleet/"


class _Service:
    """A real HTTP service: answers each POST with the body reversed, echoing the request's
    flwr-* headers back and adding one of its own; records what it saw."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes, dict[str, str]]] = []
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                service.calls.append(
                    (self.path, body, {k.lower(): v for k, v in self.headers.items()})
                )
                self.send_response(200)
                self.send_header("content-type", "application/protobuf")
                self.send_header("flwr-reply", "yes")
                for key, value in self.headers.items():
                    if key.lower().startswith("flwr-"):
                        self.send_header(key, value)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[::-1])

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Direct:
    """A site's requests delivered straight to the server's tunnel service."""

    def __init__(self, tunnels: TunnelService, site: str = "site-1") -> None:
        self.tunnels, self.site = tunnels, site
        self.sent: list[dict[str, Any]] = []

    def request(self, peer: str, topic: str, payload: Any, timeout: float) -> Any:
        assert (peer, topic) == ("server", TOPIC)
        self.sent.append(payload)
        return self.tunnels._handle(self.site, payload)


@pytest.fixture
def tunnel() -> Iterator[tuple[_Service, HttpTunnelEndpoint, _Direct]]:
    service = _Service()
    tunnels = TunnelService()
    tunnels.open("flower", HttpUpstream(service.url), sites=["site-1"], allow=(FLEET,))
    direct = _Direct(tunnels)
    endpoint = ENDPOINTS["http"]("flower", sender(direct), (FLEET,))
    assert isinstance(endpoint, HttpTunnelEndpoint)
    yield service, endpoint, direct
    endpoint.close()
    tunnels.close_all()
    service.close()


def _post(
    address: str, path: str, body: bytes, headers: dict[str, str], method: str = "POST"
) -> tuple[int, dict[str, str], bytes]:
    host, port = address.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def test_a_post_crosses_the_tunnel_byte_for_byte_with_its_headers(tunnel: Any) -> None:
    service, endpoint, _ = tunnel
    body = bytes(range(256)) * 4096  # 1 MiB of every byte value
    headers = {"content-type": "application/protobuf", "flwr-version": "1.42.0"}
    status, reply_headers, reply = _post(endpoint.address, "/v1/fleet/pull-messages", body, headers)
    assert (status, reply) == (200, body[::-1])
    path, seen, seen_headers = service.calls[0]
    assert (path, seen) == ("/v1/fleet/pull-messages", body)
    assert seen_headers["content-type"] == "application/protobuf"
    assert seen_headers["flwr-version"] == headers["flwr-version"]
    assert reply_headers["content-type"] == "application/protobuf"
    assert reply_headers["flwr-reply"] == "yes"
    assert reply_headers["flwr-version"] == headers["flwr-version"]


def test_many_posts_on_one_kept_alive_connection_are_numbered_in_order(tunnel: Any) -> None:
    service, endpoint, direct = tunnel
    host, port = endpoint.address.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        for i in range(5):
            conn.request("POST", f"/v1/fleet/call-{i}", body=bytes([i]) * 3)
            response = conn.getresponse()
            assert response.read() == bytes([i]) * 3
    finally:
        conn.close()
    assert [c["seq"] for c in direct.sent] == [1, 2, 3, 4, 5]
    assert [c[0] for c in service.calls] == [f"/v1/fleet/call-{i}" for i in range(5)]


def test_a_path_outside_the_fleet_api_is_refused_at_the_site(tunnel: Any) -> None:
    service, endpoint, direct = tunnel
    status, _, reply = _post(endpoint.address, "/v1/control/list-runs", b"x", {})
    assert status == 403
    assert b"/v1/control/list-runs" in reply
    assert FLEET.encode() in reply
    assert direct.sent == []
    assert service.calls == []


def test_a_method_other_than_post_is_refused_at_the_site(tunnel: Any) -> None:
    service, endpoint, direct = tunnel
    status, _, _ = _post(endpoint.address, "/v1/fleet/get-run", b"", {}, method="GET")
    assert status == 405
    assert direct.sent == []
    assert service.calls == []


def test_a_path_outside_the_fleet_api_is_refused_at_the_server(tunnel: Any) -> None:
    service, _, direct = tunnel
    call = TunnelCall("flower", 1, "/v1/control/stop-run", b"stop")
    reply = direct.tunnels._handle("site-1", call.to_wire())
    assert reply["status"] == -1
    assert "/v1/control/stop-run" in reply["error"]
    assert service.calls == []


def test_a_service_that_is_gone_answers_502_naming_the_failure() -> None:
    service = _Service()
    url = service.url
    service.close()  # nothing listens there any more
    tunnels = TunnelService()
    tunnels.open("flower", HttpUpstream(url), allow=(FLEET,))
    endpoint = HttpTunnelEndpoint("flower", sender(_Direct(tunnels)), (FLEET,))
    try:
        status, _, reply = _post(endpoint.address, "/v1/fleet/ping", b"x", {})
    finally:
        endpoint.close()
        tunnels.close_all()
    assert status == 502
    assert b"/v1/fleet/ping" in reply
    assert b"Connection" in reply
