"""SimEnv's Ray backend against its thread backend (and Flower's Ray simulation, if it runs).

    python benchmarks/sim_ray.py [--skip-1000] [--skip-w3] [--skip-flower]

Each workload runs in a fresh Python process per backend (``--child``), timed from outside;
the peak memory is the largest sum, over the whole process tree (Ray's GCS, raylet and
worker processes included), of each process's PSS (proportional set size: shared pages,
such as Ray's object store, counted once), sampled every 50 ms with psutil.

- W1: 2 sites, 5 rounds, a 10-float model.
- W1000: 1000 sites, 3 rounds, a 10-float model.
- W3: 2 sites, 3 rounds, a 256 MiB float32 model.

Scripts are ordinary: each round a site receives the global model, keeps it, and sends a new
array (received + 1). Every run is checked (status COMPLETED, the global model equal to
0 + rounds). Ratios are ray / threads measured in the same run. The output ends with one JSON
line of named figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

CLIENT = """
import ember.client as flare
from ember.client import NUMPY_KEY, FLModel, ParamsType
flare.init()
kept = None
while flare.is_running():
    model = flare.receive()
    if model is None:
        break
    kept = model.params[NUMPY_KEY]  # an ordinary script keeps what it received
    flare.send(FLModel(params_type=ParamsType.FULL, params={NUMPY_KEY: kept + 1}))
"""

WORKLOADS = {"W1": (2, 5, 10), "W1000": (1000, 3, 10), "W3": (2, 3, 64 * 2**20)}


def child(workload: str, backend: str, folder: Path) -> None:
    from ember import SimEnv
    from ember.client import NUMPY_KEY
    from ember.recipes import NumpyFedAvgRecipe

    sites, rounds, size = WORKLOADS[workload]
    script = folder / "client.py"
    script.write_text(CLIENT)
    recipe = NumpyFedAvgRecipe(
        name=f"ray-bench-{workload}",
        min_clients=sites,
        num_rounds=rounds,
        model=np.zeros(size, dtype=np.float32),
        train_script=str(script),
    )
    options: dict[str, Any] = {}
    if backend == "ray":
        import ray

        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
        options = {"backend": "ray"}
    env = SimEnv(num_clients=sites, workspace_root=str(folder / "ws"), progress=False, **options)
    run = recipe.execute(env)
    if run.get_status() != "FINISHED:COMPLETED":
        raise SystemExit(f"{workload}/{backend}: {run.get_status()} {run.get_message()}")
    with np.load(Path(run.get_result()) / "server" / "models" / "global_model.npz") as data:
        if not np.all(data[NUMPY_KEY] == rounds):
            raise SystemExit(f"{workload}/{backend}: wrong global model")


def flower_child(workload: str) -> None:
    """The same workload in Flower's Ray simulation (flwr.simulation.run_simulation): a
    NumPyClient that returns the received model + 1, FedAvg over every client each round."""
    import flwr
    from flwr.client import ClientApp, NumPyClient
    from flwr.common import Context, ndarrays_to_parameters
    from flwr.server import ServerApp, ServerAppComponents, ServerConfig
    from flwr.server.strategy import FedAvg
    from flwr.simulation import run_simulation

    sites, rounds, size = WORKLOADS[workload]
    final: list[Any] = []

    class Client(NumPyClient):  # type: ignore[misc]
        def fit(self, parameters: list[Any], config: dict[str, Any]) -> Any:
            kept = parameters[0]  # an ordinary client keeps what it received
            return [kept + 1], 1, {}

    def client_fn(context: Context) -> Any:
        return Client().to_client()

    def evaluate(server_round: int, parameters: list[Any], config: dict[str, Any]) -> Any:
        if server_round == rounds:
            final.append(parameters[0])
        return None

    def server_fn(context: Context) -> Any:
        strategy = FedAvg(
            fraction_fit=1.0,
            fraction_evaluate=0.0,
            min_fit_clients=sites,
            min_available_clients=sites,
            initial_parameters=ndarrays_to_parameters([np.zeros(size, dtype=np.float32)]),
            evaluate_fn=evaluate,
        )
        return ServerAppComponents(strategy=strategy, config=ServerConfig(num_rounds=rounds))

    run_simulation(
        server_app=ServerApp(server_fn=server_fn),
        client_app=ClientApp(client_fn=client_fn),
        num_supernodes=sites,
        backend_config={
            "client_resources": {"num_cpus": 1},
            "init_args": {"include_dashboard": False, "log_to_driver": False},
        },
    )
    if not final or not np.all(final[0] == rounds):
        raise SystemExit(f"{workload}/flower {flwr.__version__}: wrong or no final model")


def tree_pss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            info = p.memory_full_info()
            total += int(getattr(info, "pss", info.rss))
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


def measure(argv: list[str], timeout: float = 900.0) -> tuple[float, float]:
    """Wall seconds and peak tree PSS (MiB) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv)
    watched = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_pss(watched))
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(0.05)
        if time.perf_counter() - start > timeout:
            proc.kill()
            raise SystemExit(f"{argv} ran past {timeout} s")
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{argv} exited with {proc.returncode}")
    return wall, peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", nargs=3, metavar=("WORKLOAD", "BACKEND", "DIR"))
    parser.add_argument("--skip-1000", action="store_true")
    parser.add_argument("--skip-w3", action="store_true")
    parser.add_argument("--skip-flower", action="store_true", help="Flower's Ray simulation")
    args = parser.parse_args()
    if args.child:
        if args.child[1] == "flower":
            flower_child(args.child[0])
        else:
            child(args.child[0], args.child[1], Path(args.child[2]))
        return
    names = [
        n
        for n in WORKLOADS
        if not (n == "W1000" and args.skip_1000) and not (n == "W3" and args.skip_w3)
    ]
    figures: dict[str, float] = {}
    for name in names:
        sites, rounds, size = WORKLOADS[name]
        backends = ["threads", "ray"] + ([] if args.skip_flower else ["flower"])
        for backend in backends:
            with tempfile.TemporaryDirectory() as tmp:
                try:
                    wall, peak = measure([sys.executable, __file__, "--child", name, backend, tmp])
                except SystemExit as exc:
                    if backend != "flower":
                        raise
                    print(f"{name} flower: did not run ({exc})", flush=True)
                    continue
            figures[f"{name}_{backend}_s"] = round(wall, 2)
            figures[f"{name}_{backend}_peak_mib"] = round(peak, 1)
            print(
                f"{name} ({sites} sites x {rounds} rounds, {size * 4} B model) {backend:7}: "
                f"{wall:7.2f} s, peak tree PSS {peak:8.1f} MiB",
                flush=True,
            )
        ratio_t = figures[f"{name}_ray_s"] / figures[f"{name}_threads_s"]
        ratio_m = figures[f"{name}_ray_peak_mib"] / figures[f"{name}_threads_peak_mib"]
        figures[f"{name}_time_ratio"] = round(ratio_t, 2)
        figures[f"{name}_memory_ratio"] = round(ratio_m, 2)
        print(f"{name}: ray / threads = {ratio_t:.2f}x time, {ratio_m:.2f}x peak memory")
        if f"{name}_flower_s" in figures:
            ratio_t = figures[f"{name}_ray_s"] / figures[f"{name}_flower_s"]
            ratio_m = figures[f"{name}_ray_peak_mib"] / figures[f"{name}_flower_peak_mib"]
            figures[f"{name}_ray_vs_flower_time_ratio"] = round(ratio_t, 2)
            figures[f"{name}_ray_vs_flower_memory_ratio"] = round(ratio_m, 2)
            print(f"{name}: ember ray / flower ray = {ratio_t:.2f}x time, {ratio_m:.2f}x memory")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
