"""NetTransport: the runtime's messaging API across gRPC, large arrays pulled in chunks."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from typing import Any

import numpy as np
import pytest

from core.test_net_kit import KIB, MIB, STREAMING, network, pki  # noqa: F401  (pki: a fixture)
from ember.config import use_config
from ember.net import NetTransport, TransportError
from ember.streaming import LazyTensor

pytestmark = pytest.mark.timeout(120)


def arrays(seed: int = 0) -> dict[str, np.ndarray[Any, Any]]:
    rng = np.random.default_rng(seed)
    return {
        "big": rng.standard_normal((512, 1024), dtype=np.float32),  # 2 MiB: 8+ chunks
        "f64": rng.standard_normal(40_000),  # 320 KB
        "small": np.arange(10, dtype=np.int16),  # inline
        "fortran": np.asfortranarray(rng.standard_normal((300, 200))),
    }


def run_round(pki: Any, streaming: bool) -> tuple[dict[str, Any], dict[str, Any]]:  # noqa: F811
    """The server sends a model to a site, which trains (doubles it, in place) and replies."""
    with network(pki, streaming__enabled=streaming, **STREAMING) as net:
        hub = net.hub()
        node = net.node("site-1", hub)
        with use_config(net.config):
            server, site = NetTransport(hub.local), NetTransport(node)
            server.add_endpoint("server")
            endpoint = site.add_endpoint("site-1")
        seen: dict[str, Any] = {}

        def train(sender: str, task: dict[str, Any]) -> dict[str, Any]:
            params = task["params"]
            seen["writable"] = all(a.flags.writeable for a in params.values())
            seen["received"] = {k: v.copy() for k, v in params.items()}
            for value in params.values():
                value *= 2  # in place: received arrays are writable
            return {"params": params, "round": task["round"], "from": sender}

        endpoint.register_handler("train", train)
        try:
            reply = server.request(
                "server", "site-1", "train", {"params": arrays(), "round": 3}, 30
            )
        finally:
            server.close()
            site.close()
        return reply, seen


def test_arrays_cross_by_download_bit_exact_and_same_as_inline(pki, chunk_calls) -> None:  # noqa: F811
    streamed, seen = run_round(pki, streaming=True)
    pulled = list(chunk_calls)
    chunk_calls.clear()
    inline, _ = run_round(pki, streaming=False)

    assert seen["writable"] is True
    expected = arrays()
    for name, value in expected.items():
        np.testing.assert_array_equal(seen["received"][name], value)
        assert seen["received"][name].dtype == value.dtype
    for reply in (streamed, inline):
        assert (reply["round"], reply["from"]) == (3, "server")
        for name, value in expected.items():
            got = reply["params"][name]
            assert got.dtype == value.dtype
            assert got.shape == value.shape
            assert got.tobytes() == (value * 2).tobytes()
            assert got.flags.f_contiguous == value.flags.f_contiguous
    # the model went out in chunks from the server and came back in chunks from the site
    assert pulled.count("server") >= 9
    assert pulled.count("site-1") >= 9
    assert chunk_calls == []  # streaming disabled: all inline


def test_lazy_endpoint_gets_references_it_pulls_later(pki) -> None:  # noqa: F811
    with network(pki, **STREAMING) as net:
        hub = net.hub()
        node = net.node("site-1", hub)
        with use_config(net.config):
            server, site = NetTransport(hub.local), NetTransport(node)
            endpoint = server.add_endpoint("server", lazy_tensors=True)
            site.add_endpoint("site-1")
        results: list[dict[str, Any]] = []
        endpoint.register_handler("submit", lambda sender, result: results.append(result) or True)
        try:
            sent = arrays(1)
            assert site.request("site-1", "server", "submit", {"params": sent}, 30) is True
            (result,) = results
            params = result["params"]
            assert isinstance(params["big"], LazyTensor)
            assert isinstance(params["f64"], LazyTensor)
            assert isinstance(params["small"], np.ndarray)  # under the threshold: inline
            for name in ("big", "f64", "fortran"):
                fetched = params[name].fetch()
                assert fetched.tobytes() == sent[name].tobytes()
        finally:
            server.close()
            site.close()


def test_an_endpoint_takes_the_nodes_name(pki) -> None:  # noqa: F811
    with network(pki) as net:
        hub = net.hub()
        transport = NetTransport(hub.local)
        with pytest.raises(TransportError, match="must be named 'server'"):
            transport.add_endpoint("site-1")


SITE_SCRIPT = """
import sys, threading
import numpy as np
from ember.net import NetNode, NetTransport, TlsFiles

address, ca, cert, key = sys.argv[1:5]
node = NetNode("site-2", address, TlsFiles(ca, cert, key), server_name="localhost").start(30)
transport = NetTransport(node)
endpoint = transport.add_endpoint("site-2")
done = threading.Event()
endpoint.register_handler("double", lambda sender, p: {k: v * 2 for k, v in p.items()})
endpoint.register_handler("bye", lambda sender, p: done.set() or "bye")
own = np.arange(300_000, dtype=np.float64)  # 2.4 MB: offered by this process
reply = transport.request("site-2", "server", "hello", {"own": own}, 30)
assert reply == float(own.sum()), reply
print("site-2 said hello", flush=True)
assert done.wait(60)
transport.close()
node.close()
print("site-2 done", flush=True)
"""


def test_a_node_in_another_process(pki, chunk_calls) -> None:  # noqa: F811
    with network(pki, **STREAMING) as net:
        hub = net.hub()
        connected = threading.Event()
        hub.on_connect = lambda name: connected.set() if name == "site-2" else None
        with use_config(net.config):
            server = NetTransport(hub.local)
            endpoint = server.add_endpoint("server")
        hello = threading.Event()

        def on_hello(sender: str, payload: dict[str, Any]) -> float:
            hello.set()
            return float(payload["own"].sum())

        endpoint.register_handler("hello", on_hello)
        tls = pki.tls("site-2")
        env = {
            **os.environ,
            "EMBER_STREAMING_MIN_TENSOR_BYTES": str(64 * KIB),
            "EMBER_STREAMING_CHUNK_SIZE": str(256 * KIB),
            "EMBER_NET_FRAGMENT_SIZE": str(MIB),
        }
        args = [str(tls.ca), str(tls.cert), str(tls.key)]
        proc = subprocess.Popen(
            [sys.executable, "-c", SITE_SCRIPT, f"127.0.0.1:{hub.port}", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            assert connected.wait(60), "the site process did not connect"
            assert hello.wait(30), "the site process did not say hello"
            model = arrays(2)
            doubled = server.request("server", "site-2", "double", model, 30)
            for name, value in model.items():
                assert doubled[name].tobytes() == (value * 2).tobytes()
            assert server.request("server", "site-2", "bye", None, 30) == "bye"
            out, _ = proc.communicate(timeout=60)
            assert proc.returncode == 0, out
            assert "site-2 done" in out
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            server.close()
        assert chunk_calls.count("server") >= 9  # the other process pulled the model
