"""Load on one hub: N connections at once (client nodes, admin nodes, garbage and silent
TCP connections), with the latency of admin requests to the hub's own node measured
throughout and against an idle-hub baseline in the same run.

``python benchmarks/net_load.py [CONNECTIONS] [--seconds S] [--plain] [--workers W]``
(default 500 connections for 30 s, mutual TLS). Of the connections: 2/5 client nodes (each
sends a request to the hub and one to another client, through the hub, every second), 1/10
admin nodes (a request to the hub every 20 ms each, their latency recorded), 1/4 garbage
connections (each sends bytes that are not TLS, waits to be closed, reconnects) and 1/4
silent ones (each sends nothing, waits to be dropped after ``net.handshake_timeout``,
reconnects).

The hub runs in its own process, the clients and admins in ``W`` worker processes, the
garbage and silent connections in one asyncio process, so that the load generators' own
threads do not share the hub's interpreter lock. One more admin, in this process and alone
in it, makes the measured requests: first on an idle hub, then under the load.
Target: every request of the measuring admin under 100 ms throughout.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from ember.config import Config, use_config
from ember.net import Hub, NetNode, TlsFiles

SETTINGS = {"net.handshake_timeout": 2.0, "net.connect_timeout": 30.0}
TARGET_MS = 100.0
NICE = 10  # the load generators stand in for other machines: the hub's CPU comes first


def _tls(pki: str | None, name: str, server: bool = False) -> TlsFiles | None:
    if pki is None:
        return None
    from ember.provision.certs import CertFiles, make_cert

    folder = Path(pki)
    ca = CertFiles(folder / "ca" / "rootCA.pem", folder / "ca" / "rootCA.key")
    files = make_cert(
        ca, name, folder / name, kind="server" if server else "client",
        hosts=["localhost", "127.0.0.1"] if server else None,
    )  # fmt: skip
    return TlsFiles(ca.cert, files.cert, files.key)


def _node(name: str, port: int, pki: str | None) -> NetNode:
    server_name = "localhost" if pki is not None else None
    return NetNode(name, f"127.0.0.1:{port}", _tls(pki, name), server_name=server_name)


def run_hub(pki: str | None, ports: Any, stop: Any, stats: Any) -> None:
    """The hub's process: serve until ``stop``; report its CPU time and peak connections."""
    import resource

    with use_config(Config(SETTINGS)):
        hub = Hub("server", "127.0.0.1:0", _tls(pki, "server", server=True), lambda c, n: None)
        hub.start()
        hub.local.register_handler("status", lambda sender, body: b"ok")
        ports.put(hub.port)
        peak = 0
        while not stop.wait(0.5):
            peak = max(peak, len(hub.connected()))
        hub.stop(0)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    stats.put({"peak_nodes": peak, "cpu_s": usage.ru_utime + usage.ru_stime})


def run_worker(
    port: int,
    pki: str | None,
    clients: list[str],
    admins: list[str],
    admin_interval: float,
    ready: Any,
    go: Any,
    stop: Any,
    out: Any,
) -> None:
    """Client and admin nodes of one worker process."""
    from concurrent.futures import ThreadPoolExecutor

    os.nice(NICE)

    with use_config(Config(SETTINGS)):
        with ThreadPoolExecutor(16) as pool:
            nodes = list(pool.map(lambda n: _node(n, port, pki).start(120), clients + admins))
        for node in nodes:
            node.register_handler("echo", lambda sender, body: body)
        ready.put(len(nodes))
        go.wait()
        client_nodes, admin_nodes = nodes[: len(clients)], nodes[len(clients) :]
        errors: list[str] = []
        counts = {"client": 0, "admin": 0}
        admin_ms: list[float] = []

        def drive_clients() -> None:  # each client: one request per second to the hub,
            while not stop.is_set():  # one to another client through the hub
                start = time.monotonic()
                for i, node in enumerate(client_nodes):
                    try:
                        assert node.request("server", "status", b"", 30) == b"ok"
                        peer = clients[(i + 1) % len(clients)]
                        assert node.request(peer, "echo", b"hi", 30) == b"hi"
                        counts["client"] += 2
                    except Exception as exc:
                        errors.append(f"{node.name}: {type(exc).__name__}: {exc}")
                stop.wait(max(0.0, 1.0 - (time.monotonic() - start)))

        def drive_admin(node: NetNode) -> None:
            while not stop.wait(admin_interval):
                start = time.perf_counter()
                try:
                    assert node.request("server", "status", b"", 30) == b"ok"
                    admin_ms.append((time.perf_counter() - start) * 1000)
                    counts["admin"] += 1
                except Exception as exc:
                    errors.append(f"{node.name}: {type(exc).__name__}: {exc}")

        threads = [threading.Thread(target=drive_clients)] if client_nodes else []
        threads += [threading.Thread(target=drive_admin, args=(n,)) for n in admin_nodes]
        for t in threads:
            t.start()
        stop.wait()
        for t in threads:
            t.join()
        for node in nodes:
            node.close(0)
    out.put({"counts": counts, "errors": errors[:5], "n_errors": len(errors), "admin_ms": admin_ms})


async def _garbage(port: int, stop: Any, tally: dict[str, int]) -> None:
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            tally["refused"] += 1
            await asyncio.sleep(0.05)
            continue
        try:
            writer.write(b"\x16\x03\x01garbage" * 8)
            await writer.drain()
            while await asyncio.wait_for(reader.read(4096), 10.0):
                pass
            tally["closed"] += 1  # the hub closed it
        except TimeoutError:
            tally["left_open"] += 1
        except OSError:
            tally["closed"] += 1  # reset by the hub
        finally:
            writer.close()


async def _silent(port: int, stop: Any, tally: dict[str, int], held: list[float]) -> None:
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            tally["refused"] += 1
            await asyncio.sleep(0.05)
            continue
        start = time.monotonic()
        try:
            while await asyncio.wait_for(reader.read(4096), 30.0):
                pass
            held.append(time.monotonic() - start)
        except TimeoutError:
            tally["left_open"] += 1
        except OSError:
            held.append(time.monotonic() - start)
        finally:
            writer.close()


def run_garbage(port: int, garbage: int, silent: int, go: Any, stop: Any, out: Any) -> None:
    """Garbage and silent connections, all in one asyncio loop."""
    os.nice(NICE)

    async def main() -> dict[str, Any]:
        tally = {"closed": 0, "left_open": 0, "refused": 0}
        silent_tally = {"left_open": 0, "refused": 0}
        held: list[float] = []
        tasks = [asyncio.create_task(_garbage(port, stop, tally)) for _ in range(garbage)]
        tasks += [
            asyncio.create_task(_silent(port, stop, silent_tally, held)) for _ in range(silent)
        ]
        while not stop.is_set():
            await asyncio.sleep(0.2)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return {"garbage": tally, "silent": silent_tally, "silent_held_s": held}

    go.wait()
    out.put(asyncio.run(main()))


def latencies(admin: NetNode, seconds: float, pause: float = 0.02) -> list[float]:
    out = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        start = time.perf_counter()
        assert admin.request("server", "status", b"", 30) == b"ok"
        out.append((time.perf_counter() - start) * 1000)
        time.sleep(pause)
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def describe(values: list[float]) -> str:
    return (
        f"n={len(values)} p50 {statistics.median(values):.2f} p99 {pct(values, 0.99):.2f} "
        f"max {max(values):.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("connections", type=int, nargs="?", default=500)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--plain", action="store_true", help="plain gRPC, no TLS")
    parser.add_argument(
        "--admin-interval", type=float, default=0.1,
        help="seconds between one worker admin's requests",
    )  # fmt: skip
    parser.add_argument("--no-junk", action="store_true", help="no garbage or silent ones")
    args = parser.parse_args()
    total = args.connections
    n_clients, n_admins = total * 2 // 5, total // 10
    n_garbage = (total - n_clients - n_admins) // 2
    n_silent = total - n_clients - n_admins - n_garbage - 1  # one more: the measuring admin
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        pki = None
        if not args.plain:
            from ember.provision.certs import make_ca

            make_ca("load", Path(tmp) / "ca")
            pki = tmp
        ports, stats, ready, outs = ctx.Queue(), ctx.Queue(), ctx.Queue(), ctx.Queue()
        stop_hub, go, stop = ctx.Event(), ctx.Event(), ctx.Event()
        hub = ctx.Process(target=run_hub, args=(pki, ports, stop_hub, stats))
        hub.start()
        port = ports.get(timeout=60)
        print(f"hub process {hub.pid} on port {port}", file=sys.stderr, flush=True)
        with use_config(Config(SETTINGS)):
            admin = _node("admin-0", port, pki).start(60)
            idle = latencies(admin, min(10.0, args.seconds / 3))
            clients = [f"site-{i}" for i in range(n_clients)]
            admins = [f"admin-{i + 1}" for i in range(n_admins)]
            workers = [
                ctx.Process(
                    target=run_worker,
                    args=(
                        port,
                        pki,
                        clients[w :: args.workers],
                        admins[w :: args.workers],
                        args.admin_interval,
                        ready,
                        go,
                        stop,
                        outs,
                    ),
                )
                for w in range(args.workers)
            ]
            if args.no_junk:
                n_garbage = n_silent = 0
            garbage = ctx.Process(
                target=run_garbage, args=(port, n_garbage, n_silent, go, stop, outs)
            )
            start = time.perf_counter()
            for p in [*workers, garbage]:
                p.start()
            up = sum(ready.get(timeout=600) for _ in workers)
            connected = time.perf_counter() - start
            go.set()
            time.sleep(1.0)  # the garbage connections ramp up
            loaded = latencies(admin, args.seconds)
            stop.set()
            results = [outs.get(timeout=120) for _ in range(len(workers) + 1)]
            for p in [*workers, garbage]:
                p.join(60)
            admin.close(0)
        stop_hub.set()
        hub_stats = stats.get(timeout=60)
        hub.join(60)
    worker_results = [r for r in results if "counts" in r]
    junk = next(r for r in results if "garbage" in r)
    others = [ms for r in worker_results for ms in r["admin_ms"]]
    errors = sum(r["n_errors"] for r in worker_results)
    requests = {k: sum(r["counts"][k] for r in worker_results) for k in ("client", "admin")}
    held = junk["silent_held_s"]
    security = "plain gRPC" if args.plain else "mutual TLS"
    print(
        f"{total} connections ({security}): {n_clients} clients + {n_admins + 1} admins "
        f"({up} nodes up in {connected:.1f} s, hub saw at most {hub_stats['peak_nodes']}) + "
        f"{n_garbage} garbage + {n_silent} silent, {args.seconds:g} s under load"
    )
    print(
        f"garbage connections: {junk['garbage']['closed']} closed by the hub, "
        f"{junk['garbage']['left_open']} left open 10 s, {junk['garbage']['refused']} refused; "
        f"silent: {len(held)} dropped (median after {statistics.median(held or [0]):.2f} s), "
        f"{junk['silent']['left_open']} left open 30 s"
    )
    print(
        f"requests served under load: {requests['client']} client, {requests['admin']} "
        f"admin (workers), {len(loaded)} measured; errors {errors}"
        + (f" e.g. {worker_results[0]['errors'][:2]}" if errors else "")
    )
    print(f"hub CPU {hub_stats['cpu_s']:.1f} s")
    print(f"measuring admin, idle ms:  {describe(idle)}")
    print(f"measuring admin, loaded ms: {describe(loaded)}")
    if others:
        print(f"worker admins, loaded ms:  {describe(others)}")
    ratio = statistics.median(loaded) / statistics.median(idle)
    print(f"ratio loaded/idle: p50 {ratio:.2f}, p99 {pct(loaded, 0.99) / pct(idle, 0.99):.2f}")
    worst = max(loaded)
    print(f"target: every measured request under {TARGET_MS:g} ms: "
          f"{'met' if worst < TARGET_MS else 'NOT met'} (max {worst:.1f} ms)")  # fmt: skip


if __name__ == "__main__":
    main()
