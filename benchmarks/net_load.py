"""Load on one hub: N connections at once (registered nodes, an "admin" node making
requests, garbage TCP connections), with the latency of the admin's requests to the hub's
own node measured against an idle-hub baseline in the same run.

``python benchmarks/net_load.py [CONNECTIONS]`` (default 500: 2/5 nodes, 3/5 garbage).
Target: every admin request under 100 ms throughout. Plain gRPC (tls=None) on loopback:
this measures the hub's routing and threads, not TLS handshakes."""

from __future__ import annotations

import socket
import statistics
import sys
import threading
import time

from ember.config import Config, use_config
from ember.net import Hub, NetNode

CONFIG = Config({"net.handshake_timeout": 2.0, "net.connect_timeout": 30.0})


def latencies(admin: NetNode, count: int) -> list[float]:
    out = []
    for _ in range(count):
        start = time.perf_counter()
        admin.request("server", "status", b"", 10)
        out.append((time.perf_counter() - start) * 1000)
    return out


def main() -> None:
    total = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    nodes_n, garbage_n = total * 2 // 5, total - total * 2 // 5
    with use_config(CONFIG):
        hub = Hub("server", "127.0.0.1:0", None, lambda cn, name: None).start()
        hub.local.register_handler("status", lambda sender, body: b"ok")
        admin = NetNode("admin", f"127.0.0.1:{hub.port}", None).start(30)
        idle = latencies(admin, 200)
        stop = threading.Event()

        def garbage() -> None:
            while not stop.is_set():
                try:
                    with socket.create_connection(("127.0.0.1", hub.port), timeout=2) as s:
                        s.sendall(b"\x16\x03\x01garbage" * 8)
                        s.settimeout(2)
                        s.recv(64)
                except OSError:
                    pass

        threads = [threading.Thread(target=garbage, daemon=True) for _ in range(garbage_n)]
        for t in threads:
            t.start()
        start = time.perf_counter()
        nodes = [
            NetNode(f"site-{i}", f"127.0.0.1:{hub.port}", None).start(60) for i in range(nodes_n)
        ]
        connected = time.perf_counter() - start
        loaded = latencies(admin, 200)
        stop.set()
        for node in nodes:
            node.close()
        admin.close()
        hub.stop(0)
    worst = max(loaded)
    print(
        f"{nodes_n} nodes + {garbage_n} garbage connections (+1 admin); "
        f"nodes up in {connected:.1f} s"
    )
    print(
        f"admin request ms: idle median {statistics.median(idle):.2f} max {max(idle):.2f}; "
        f"loaded median {statistics.median(loaded):.2f} max {worst:.2f}; "
        f"ratio (median) {statistics.median(loaded) / statistics.median(idle):.2f}"
    )
    print(f"target: max under 100 ms: {'met' if worst < 100 else 'NOT met'}")


if __name__ == "__main__":
    main()
