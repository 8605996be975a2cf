"""ember-edge at fleet scale: 10,000 HTTP devices behind 4 gateways, and 100,000 in-process.

    python benchmarks/edge_scale.py [--devices 10000] [--in-process-devices 100000]
                                    [--versions 10] [--skip-http] [--skip-in-process]

- **http**: ``examples/hello-edge/job.py`` as a user runs it (4 aggregator sites in SimEnv,
  each with its HTTP device gateway; a second process simulating the devices over HTTP,
  rendezvous-hashed to the gateways; FedBuff, 200 updates a version, balanced sampling).
- **in-process**: the same model and devices, 4 sites simulating 25,000 devices each in their
  own process (``SimulationConfig``), no HTTP.

Each case runs in a fresh process tree, timed from outside; peak memory is the largest sum of
the tree's PSS (psutil, sampled every 50 ms). The baseline, measured in the same run, is
``python -c "import numpy, sklearn, aiohttp, ember, ember_edge"``: its wall time and peak
beside each case's, as ratios. Figures: model versions per second of job time, HTTP requests
per second the gateways served (the fleet's count over its lifetime), seconds from the job's
start to the first version at accuracy >= 0.9 (target: about 30 s), peak memory. The output
ends with one JSON line of named figures.
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

import psutil

from sim_ray import tree_pss  # the process tree's PSS, as the Ray benchmark measures it

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "hello-edge"


def measure(
    argv: list[str], cwd: Path | None = None, timeout: float = 900.0
) -> tuple[float, float]:
    """Wall seconds and peak tree PSS (MiB) of one command."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL)
    watched = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        with contextlib.suppress(psutil.NoSuchProcess):
            peak = max(peak, tree_pss(watched))
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(0.05)
        if time.perf_counter() - start > timeout:
            proc.kill()
            raise SystemExit(f"{argv} ran past {timeout} s")
    if proc.returncode != 0:
        raise SystemExit(f"{argv} exited with {proc.returncode}")
    return time.perf_counter() - start, peak / 2**20


def versions(result: Path) -> list[dict[str, Any]]:
    lines = (result / "server" / "round_metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def to_accuracy(records: list[dict[str, Any]], bar: float = 0.9) -> float | None:
    """Seconds of job time until the first version at accuracy >= ``bar``."""
    elapsed = 0.0
    for record in records:
        elapsed += float(record["duration_s"])
        if record["metrics"]["accuracy"] >= bar:
            return elapsed
    return None


def in_process_child(devices: int, versions_: int, workspace: Path) -> None:
    """The in-process case (run as ``--child``): 4 sites, ``devices / 4`` each."""
    sys.path.insert(0, str(EXAMPLE))
    from digits_device import DigitsDevice, accuracy, initial_model

    from ember import SimEnv
    from ember_edge.recipes import (
        DeviceManagerConfig,
        EdgeFedBuffRecipe,
        EvaluatorConfig,
        ModelManagerConfig,
        SimulationConfig,
    )

    recipe = EdgeFedBuffRecipe(
        name="edge-in-process",
        model=initial_model(),
        min_clients=4,
        model_manager_config=ModelManagerConfig(
            num_updates_for_model=200,
            max_model_version=versions_,
            max_model_history=4,
            staleness_weight=True,
        ),
        device_manager_config=DeviceManagerConfig(
            device_selection_size=400, min_hole_to_fill=20, device_sampling="balanced"
        ),
        simulation_config=SimulationConfig(
            task_processor=DigitsDevice,
            num_devices=devices // 4,
            speed={"distribution": "uniform", "low": 0.0, "high": 0.5},
            dropout=0.02,
            seed=1,
        ),
        evaluator_config=EvaluatorConfig(accuracy),
        report_interval=0.2,
    )
    run = recipe.execute(SimEnv(num_clients=4, workspace_root=str(workspace), progress=False))
    if run.get_status() != "FINISHED:COMPLETED":
        raise SystemExit(f"in-process edge job: {run.get_status()}: {run.get_message()}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--in-process-devices", type=int, default=100_000)
    parser.add_argument("--versions", type=int, default=10)
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument("--skip-in-process", action="store_true")
    parser.add_argument("--child", nargs=3, metavar=("DEVICES", "VERSIONS", "DIR"))
    args = parser.parse_args()
    if args.child:
        in_process_child(int(args.child[0]), int(args.child[1]), Path(args.child[2]))
        return
    figures: dict[str, Any] = {}
    base_wall, base_peak = measure(
        [sys.executable, "-c", "import numpy, sklearn, aiohttp, ember, ember_edge"]
    )
    figures.update(baseline_s=round(base_wall, 3), baseline_mib=round(base_peak, 1))
    print(
        f"baseline (python + numpy, sklearn, aiohttp, ember, ember_edge imported): "
        f"{base_wall:.2f} s, {base_peak:.0f} MiB"
    )
    with tempfile.TemporaryDirectory(prefix="edge-scale-") as tmp:
        if not args.skip_http:
            workspace = Path(tmp) / "http"
            wall, peak = measure(
                [
                    sys.executable,
                    "job.py",
                    "--devices",
                    str(args.devices),
                    "--versions",
                    str(args.versions),
                    "--workspace",
                    str(workspace),
                ],
                cwd=EXAMPLE,
            )
            records = versions(workspace / "hello-edge")
            fleet = json.loads((workspace / "fleet.json").read_text())
            job_s = sum(float(r["duration_s"]) for r in records)
            reached = to_accuracy(records)
            rps = fleet["requests"] / fleet["seconds"]
            figures.update(
                http_devices=fleet["devices"],
                http_wall_s=round(wall, 2),
                http_peak_mib=round(peak, 1),
                http_versions_per_s=round(len(records) / job_s, 3),
                http_requests=fleet["requests"],
                http_requests_per_s=round(rps, 1),
                http_seconds_to_0_9=None if reached is None else round(reached, 2),
                http_final_accuracy=round(records[-1]["metrics"]["accuracy"], 4),
            )
            print(
                f"http: {fleet['devices']} devices, 4 gateways, {len(records)} versions: "
                f"{wall:.1f} s whole ({wall / base_wall:.1f}x baseline), peak {peak:.0f} MiB "
                f"({peak / base_peak:.1f}x baseline); {len(records) / job_s:.2f} versions/s of "
                f"job time; {fleet['requests']} HTTP requests, {rps:.0f}/s; accuracy >= 0.9 "
                f"after {reached if reached is None else round(reached, 1)} s (target ~30 s: "
                f"{'-' if reached is None else f'{reached / 30:.2f}x'}); final accuracy "
                f"{records[-1]['metrics']['accuracy']:.3f}"
            )
        if not args.skip_in_process:
            workspace = Path(tmp) / "in-process"
            wall, peak = measure(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    str(args.in_process_devices),
                    str(args.versions),
                    str(workspace),
                ]
            )
            records = versions(workspace / "edge-in-process")
            summary = json.loads(
                (workspace / "edge-in-process" / "server" / "metrics_summary.json").read_text()
            )
            job_s = sum(float(r["duration_s"]) for r in records)
            reached = to_accuracy(records)
            figures.update(
                in_process_devices=summary["devices_known"],
                in_process_wall_s=round(wall, 2),
                in_process_peak_mib=round(peak, 1),
                in_process_versions_per_s=round(len(records) / job_s, 3),
                in_process_seconds_to_0_9=None if reached is None else round(reached, 2),
                in_process_final_accuracy=round(records[-1]["metrics"]["accuracy"], 4),
            )
            print(
                f"in-process: {summary['devices_known']} devices known, {len(records)} "
                f"versions: {wall:.1f} s whole ({wall / base_wall:.1f}x baseline), peak "
                f"{peak:.0f} MiB ({peak / base_peak:.1f}x baseline); "
                f"{len(records) / job_s:.2f} versions/s of job time; accuracy >= 0.9 after "
                f"{reached if reached is None else round(reached, 1)} s; final accuracy "
                f"{records[-1]['metrics']['accuracy']:.3f}"
            )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
