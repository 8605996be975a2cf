"""Pulling a large array from one node to another through the hub, with mutual TLS.

    python benchmarks/net_throughput.py [--mib 256] [--repeat 3] [--plain]

Three processes on loopback: the hub (this one), an owner node that offers one float32
array of ``--mib`` MiB, and a receiver node that asks the owner for it through
``NetTransport``: the reply carries a reference, and the receiver pulls the array in
``streaming.chunk_size`` chunks through the hub (each chunk one request and one reply,
forwarded fragment by fragment). Timed per pull, best of ``--repeat``, checked bit-exact.

Baseline in the same run: the same number of bytes sent over a plain loopback TCP socket
from one process to another (``sendall`` into ``recv_into`` a preallocated buffer): the
copy floor of the machine, with no TLS, framing or hub hop. ``--plain``: no TLS.

Human-readable lines first; the last line is one JSON object of named figures.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

MIB = 1 << 20

NODE_SCRIPT = r"""
import json, sys, threading, time
import numpy as np
from ember.net import NetNode, NetTransport, TlsFiles, TransportError

role, address, mib, repeat, ca, cert, key = sys.argv[1:8]
tls = TlsFiles(ca, cert, key) if ca else None
node = NetNode(role, address, tls, server_name="localhost" if tls else None).start(60)
transport = NetTransport(node)
endpoint = transport.add_endpoint(role)
n = int(mib) * (1 << 20) // 4
if role == "owner":
    array = np.random.default_rng(0).random(n, dtype=np.float32)
    done = threading.Event()
    endpoint.register_handler("get", lambda sender, payload: {"w": array})
    endpoint.register_handler("bye", lambda sender, payload: done.set() or True)
    done.wait(900)
else:
    expected = np.random.default_rng(0).random(n, dtype=np.float32)
    deadline = time.monotonic() + 60
    while True:  # the owner may not be connected yet
        try:
            transport.request(role, "owner", "get", {"warm": True}, 60)
            break
        except TransportError:  # not connected yet: wait a little
            if time.monotonic() > deadline:
                raise
            threading.Event().wait(0.05)
    times = []
    for _ in range(int(repeat)):
        start = time.perf_counter()
        got = transport.request(role, "owner", "get", None, 600)["w"]
        times.append(time.perf_counter() - start)
        assert got.tobytes() == expected.tobytes(), "not bit-exact"
        del got
    transport.fire(role, "owner", "bye", None)
    print(json.dumps({"times": times}), flush=True)
transport.close()
node.close()
"""

SOCKET_SENDER = r"""
import socket, sys
port, nbytes = int(sys.argv[1]), int(sys.argv[2])
data = bytes(nbytes)
with socket.create_connection(("127.0.0.1", port)) as s:
    s.sendall(data)
"""


def raw_socket_seconds(nbytes: int, repeat: int) -> float:
    """Best time to move ``nbytes`` from another process over a loopback TCP socket."""
    best = float("inf")
    buf = bytearray(nbytes)
    view = memoryview(buf)
    for _ in range(repeat):
        with socket.create_server(("127.0.0.1", 0)) as server:
            port = server.getsockname()[1]
            proc = subprocess.Popen([sys.executable, "-c", SOCKET_SENDER, str(port), str(nbytes)])
            conn, _ = server.accept()
            with conn:
                start = time.perf_counter()
                got = 0
                while got < nbytes:
                    n = conn.recv_into(view[got:])
                    if not n:
                        break
                    got += n
                elapsed = time.perf_counter() - start
            proc.wait(60)
        assert got == nbytes
        best = min(best, elapsed)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--plain", action="store_true", help="no TLS")
    args = parser.parse_args()

    from ember.config import get_setting
    from ember.net import Hub, TlsFiles
    from ember.provision.certs import make_ca, make_cert

    nbytes = args.mib * MIB
    with tempfile.TemporaryDirectory(prefix="ember-net-bench-") as tmp:
        folder = Path(tmp)
        ca = make_ca("bench", folder / "ca")

        def tls(name: str, server: bool = False) -> TlsFiles | None:
            if args.plain:
                return None
            files = make_cert(
                ca,
                name,
                folder / name,
                kind="server" if server else "client",
                hosts=["localhost"] if server else None,
            )
            return TlsFiles(ca.cert, files.cert, files.key)

        connected = threading.Event()
        names: set[str] = set()

        def on_connect(name: str) -> None:
            names.add(name)
            if {"owner", "receiver"} <= names:
                connected.set()

        hub = Hub("hub", "127.0.0.1:0", tls("localhost", server=True), lambda cn, n: None)
        hub.on_connect = on_connect
        hub.start()
        procs = {}
        try:
            for role in ("owner", "receiver"):
                files = tls(role)
                paths = ["", "", ""] if files is None else [files.ca, files.cert, files.key]
                procs[role] = subprocess.Popen(
                    [
                        sys.executable,
                        "-c",
                        NODE_SCRIPT,
                        role,
                        f"127.0.0.1:{hub.port}",
                        str(args.mib),
                        str(args.repeat),
                        *map(str, paths),
                    ],
                    stdout=subprocess.PIPE,
                    text=True,
                )
            out, _ = procs["receiver"].communicate(timeout=600)
            procs["owner"].wait(60)
            if procs["receiver"].returncode != 0:
                print("receiver failed", file=sys.stderr)
                return 1
            times = json.loads(out.strip().splitlines()[-1])["times"]
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.kill()
            hub.stop(0)

    net_s = min(times)
    raw_s = raw_socket_seconds(nbytes, args.repeat)
    net_mbs = nbytes / net_s / 1e6
    raw_mbs = nbytes / raw_s / 1e6
    chunk = int(get_setting("streaming.chunk_size"))
    print(
        f"array: {args.mib} MiB float32, chunk {chunk // MIB} MiB, "
        f"{'plain' if args.plain else 'mutual TLS'}, cpus: {os.cpu_count()}"
    )
    print(
        f"pull through the hub: {net_s:.3f} s = {net_mbs:,.0f} MB/s "
        f"(all runs: {', '.join(f'{t:.3f}' for t in times)})"
    )
    print(f"raw loopback socket:  {raw_s:.3f} s = {raw_mbs:,.0f} MB/s")
    print(f"ratio (pull / raw socket): {net_mbs / raw_mbs:.3f}")
    print(
        json.dumps(
            {
                "mib": args.mib,
                "tls": not args.plain,
                "pull_mb_s": round(net_mbs, 1),
                "raw_socket_mb_s": round(raw_mbs, 1),
                "ratio_vs_raw_socket": round(net_mbs / raw_mbs, 4),
                "pull_s": round(net_s, 4),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
