"""PocEnv transfers: per-client download and upload throughput, and per-job overhead.

    python benchmarks/poc_transfer.py [--mib 256] [--clients 2] [--rounds 3] [--w1-repeat 3]

A fresh PoC workspace (server + clients as processes, gRPC with mutual TLS over loopback)
is prepared and started once. Then:

- W3: FedAvg of a float32 model of ``--mib`` MiB (8 arrays), ``--clients`` clients, ``--rounds``
  rounds; each client adds 1 in place. Throughput comes from each job process's own count
  of what it pulled (``transfers:`` in its log): a client's download is what it pulled from
  the server, its upload what the server pulled from it; MB/s = bytes / seconds spent
  pulling, over all rounds, and each round's own. Round 1 lands in fresh memory of fresh
  job processes, later rounds in recycled or warmed receive buffers
  (``streaming.recycle_mib``). Target >= 500 MB/s per client (NVFlare 2.7.1's GPT-2
  benchmark: 56-76 MB/s). Run three times: over data links (the default), the same with
  ``streaming.recycle_mib=0`` (every tensor in fresh memory), and with ``net.data_links``
  off, every byte through the hub: the baselines of the same run. Also
  printed: one process copying the same bytes over a raw loopback TCP socket, no TLS.
- W1: a 3x3 model, 2 clients, 3 rounds, the system already started: wall time of
  ``recipe.execute(env)`` + ``get_result()`` (submit, run, download). Target <= 3 s per job.

Every job is checked (status, final model = initial + rounds). Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).parent / "poc_transfer"
MB = 1e6


def loopback_mbps(nbytes: int) -> float:
    """Raw TCP over loopback, one connection, 2 MiB sends: this machine's ceiling."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    chunk = bytes(2 << 20)
    done = threading.Event()

    def sink() -> None:
        conn, _ = server.accept()
        got = 0
        buf = bytearray(4 << 20)
        while got < nbytes:
            n = conn.recv_into(buf)
            if not n:
                break
            got += n
        conn.close()
        done.set()

    threading.Thread(target=sink, daemon=True).start()
    client = socket.create_connection(("127.0.0.1", port))
    started = time.perf_counter()
    sent = 0
    while sent < nbytes:
        client.sendall(chunk)
        sent += len(chunk)
    client.close()
    done.wait(60)
    elapsed = time.perf_counter() - started
    server.close()
    return sent / elapsed / MB


def transfers(log_text: str) -> dict[str, dict[str, float]]:
    found = re.findall(r"transfers: (\{.*\})", log_text)
    return json.loads(found[-1]) if found else {}


def per_round(pulled: dict[str, Any] | None) -> list[float]:
    """MB/s of each download (one per round for a model) from its [bytes, seconds]."""
    return [round(b / t / MB, 1) for b, t in (pulled or {}).get("by_ref", []) if t and b > MB]


def run_w3(
    args: argparse.Namespace, ws: Any, names: list[str], links: bool, recycle: bool = True
) -> dict[str, Any]:
    """W3 in the running system (``net.data_links`` and receive buffer recycling on or off);
    per-client MB/s each way."""
    from ember import PocEnv
    from ember.recipes import NumpyFedAvgRecipe
    from ember.system.admin import AdminClient

    per = args.mib * (1 << 20) // 8 // 4
    model = {f"w{i}": np.zeros(per, dtype=np.float32) for i in range(8)}
    model_bytes = sum(a.nbytes for a in model.values())
    recipe = NumpyFedAvgRecipe(
        name="poc-w3",
        min_clients=args.clients,
        num_rounds=args.rounds,
        model=model,
        train_script=str(HERE / "client.py"),
        key_metric=None,
    )
    recipe.set_config("net.data_links", links)
    if not recycle:
        recipe.set_config("streaming.recycle_mib", 0)
    started = time.perf_counter()
    run = recipe.execute(PocEnv(clients=names, workspace=ws.root))
    result = Path(run.get_result(timeout=1800))
    seconds = time.perf_counter() - started
    status = run.get_status()
    with np.load(result / "server" / "models" / "global_model.npz") as saved:
        correct = status == "FINISHED:COMPLETED" and all(
            np.all(saved[k] == args.rounds) for k in model
        )
    server_pulls = transfers((result / "server" / "log.txt").read_text())
    with AdminClient(ws.admin) as admin:
        site_pulls = {s: transfers(admin.logs(run.get_job_id(), s)) for s in names}
    print(
        f"W3 {'over data links' if links else 'through the hub'}"
        f"{'' if recycle else ', receive buffers not recycled'}: {args.clients} clients, "
        f"{args.rounds} rounds, {model_bytes / MB:.0f} MB model: {seconds:.2f} s, {status}, "
        f"correct={correct}"
    )
    down, up, down_rounds, up_rounds = [], [], [], []
    for site in names:
        d = next((v for k, v in site_pulls[site].items() if k.startswith("server")), None)
        u = next((v for k, v in server_pulls.items() if k.startswith(f"{site}.")), None)
        d_mbps = d["bytes"] / d["seconds"] / MB if d and d["seconds"] else 0.0
        u_mbps = u["bytes"] / u["seconds"] / MB if u and u["seconds"] else 0.0
        down.append(round(d_mbps, 1))
        up.append(round(u_mbps, 1))
        linked = sum((x or {}).get("link_bytes", 0) for x in (d, u))
        total = sum((x or {}).get("bytes", 0) for x in (d, u))
        down_rounds.append(per_round(d))
        up_rounds.append(per_round(u))
        print(
            f"  {site}: download {d_mbps:7.1f} MB/s, upload {u_mbps:7.1f} MB/s "
            f"({total / MB:.0f} MB pulled, {linked / MB:.0f} MB of it over data links); "
            f"by round: download {'/'.join(f'{r:.0f}' for r in down_rounds[-1])}, "
            f"upload {'/'.join(f'{r:.0f}' for r in up_rounds[-1])} MB/s"
        )
    return {
        "correct": correct,
        "seconds": seconds,
        "model_bytes": model_bytes,
        "download_mbps": down,
        "upload_mbps": up,
        "download_rounds_mbps": down_rounds,
        "upload_rounds_mbps": up_rounds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--w1-repeat", type=int, default=3)
    args = parser.parse_args()

    from ember import PocEnv
    from ember.envs.poc import start_workspace, stop_workspace
    from ember.recipes import NumpyFedAvgRecipe
    from ember.system.poc import prepare

    out: dict[str, Any] = {"benchmark": "poc_transfer"}
    root = Path(tempfile.mkdtemp(prefix="ember-poc-bench-"))
    ws = prepare(root / "ws", num_clients=args.clients)
    t0 = time.perf_counter()
    start_workspace(ws)
    out["system_start_s"] = round(time.perf_counter() - t0, 3)
    print(f"PoC system ({args.clients} clients) started in {out['system_start_s']} s")
    names = [k.name for k in ws.clients]
    ok = True
    try:
        # -- W3: over data links; the same without recycled receive buffers; through the hub --
        link = run_w3(args, ws, names, links=True)
        fresh = run_w3(args, ws, names, links=True, recycle=False)
        hub = run_w3(args, ws, names, links=False)
        ok &= link["correct"] and fresh["correct"] and hub["correct"]
        raw = loopback_mbps(link["model_bytes"])
        low = min(link["download_mbps"] + link["upload_mbps"])
        hub_low = min(hub["download_mbps"] + hub["upload_mbps"])
        fresh_low = min(fresh["download_mbps"] + fresh["upload_mbps"])
        print(f"  raw loopback TCP (same bytes, one socket, no TLS): {raw:.0f} MB/s")
        print(
            f"  slowest direction per client: {low:.0f} MB/s over data links, {fresh_low:.0f} "
            f"MB/s without recycled buffers ({low / fresh_low:.2f}x), {hub_low:.0f} MB/s "
            f"through the hub ({low / hub_low:.2f}x), {low / raw:.2f}x raw loopback; "
            f"target >= 500 MB/s: {'PASS' if low >= 500 else 'MISS'}"
        )
        out.update(
            model_mb=round(link["model_bytes"] / MB, 1),
            w3_s=round(link["seconds"], 3),
            w3_hub_s=round(hub["seconds"], 3),
            download_mbps=link["download_mbps"],
            upload_mbps=link["upload_mbps"],
            download_rounds_mbps=link["download_rounds_mbps"],
            upload_rounds_mbps=link["upload_rounds_mbps"],
            fresh_download_mbps=fresh["download_mbps"],
            fresh_upload_mbps=fresh["upload_mbps"],
            hub_download_mbps=hub["download_mbps"],
            hub_upload_mbps=hub["upload_mbps"],
            raw_loopback_mbps=round(raw, 1),
            slowest_vs_hub=round(low / hub_low, 3) if hub_low else None,
            slowest_vs_fresh=round(low / fresh_low, 3) if fresh_low else None,
            slowest_vs_raw=round(low / raw, 3) if raw else None,
        )
        # -- W1 --------------------------------------------------------------------------------
        times = []
        for i in range(args.w1_repeat):
            recipe = NumpyFedAvgRecipe(
                name=f"poc-w1-{i}",
                min_clients=min(2, len(names)),
                num_rounds=3,
                model=np.zeros((3, 3), dtype=np.float32),
                train_script=str(HERE / "client.py"),
                key_metric=None,
            )
            started = time.perf_counter()
            run = recipe.execute(PocEnv(clients=names[:2], workspace=ws.root))
            result = Path(run.get_result(timeout=300))
            times.append(time.perf_counter() - started)
            with np.load(result / "server" / "models" / "global_model.npz") as saved:
                good = run.get_status() == "FINISHED:COMPLETED" and np.all(saved["numpy_key"] == 3)
            ok &= bool(good)
        best, median = min(times), statistics.median(times)
        print(
            f"W1 (system started): best {best:.2f} s, median {median:.2f} s per job; "
            f"target <= 3 s: {'PASS' if median <= 3 else 'MISS'}"
        )
        out.update(w1_best_s=round(best, 3), w1_median_s=round(median, 3), w1_runs_s=times)
    finally:
        stop_workspace(ws)
        shutil.rmtree(root, ignore_errors=True)
    out["correct"] = ok
    print(json.dumps(out))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
