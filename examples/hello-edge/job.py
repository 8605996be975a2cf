"""hello-edge: FedBuff over a fleet of 10,000 simulated devices behind 4 device gateways.

Each of the job's 4 sites is an aggregator running an HTTP device gateway; a second process
(digits_device.py) simulates the devices, each talking NVFlare's edge device protocol to the
gateway its id hashes to. The server makes a new model version from every 200 device updates
(asynchronously, stale updates down-weighted) and scores it on held-out digits.

    python job.py                          # SimEnv: 4 sites, 10,000 devices
    python job.py --devices 2000 --env poc # the same job on a local PoC system
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from digits_device import accuracy, initial_model

from ember import PocEnv, SimEnv
from ember_edge.recipes import (
    DeviceManagerConfig,
    EdgeFedBuffRecipe,
    EvaluatorConfig,
    GatewayConfig,
    ModelManagerConfig,
)

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--gateways", type=int, default=4)
    parser.add_argument("--versions", type=int, default=10)
    parser.add_argument("--env", choices=["sim", "poc"], default="sim")
    parser.add_argument("--workspace", default="/tmp/ember/hello-edge")
    args = parser.parse_args()

    recipe = EdgeFedBuffRecipe(
        name="hello-edge",
        model=initial_model(),
        min_clients=args.gateways,  # aggregator sites, each with its gateway
        model_manager_config=ModelManagerConfig(
            num_updates_for_model=200,
            max_model_version=args.versions,
            max_model_history=4,  # updates 4 versions old are dropped
            staleness_weight=True,  # a stale update counts 1 / (1 + sqrt(staleness))
        ),
        device_manager_config=DeviceManagerConfig(
            device_selection_size=400,  # devices at work at once
            min_hole_to_fill=20,
            device_sampling="balanced",  # every gateway gets its share of the selection
        ),
        gateway_config=GatewayConfig(),  # loopback, a free port each, every device admitted
        evaluator_config=EvaluatorConfig(accuracy),
        report_interval=0.2,
    )
    workspace = Path(args.workspace)
    shutil.rmtree(workspace, ignore_errors=True)  # no gateway.json of an earlier run
    workspace.mkdir(parents=True)
    stats_file = workspace / "fleet.json"
    fleet_args = [
        sys.executable,
        str(HERE / "digits_device.py"),
        "--devices",
        str(args.devices),
        "--gateways",
        str(args.gateways),
        "--stats",
        str(stats_file),
    ]
    started = time.monotonic()
    if args.env == "sim":
        fleet = subprocess.Popen([*fleet_args, "--workspace", str(workspace)])
        run = recipe.execute(
            SimEnv(num_clients=args.gateways, workspace_root=str(workspace), progress=False)
        )
    else:
        # a PoC workspace of its own: 4 sites (one of other examples' may have another count)
        env = PocEnv(num_clients=args.gateways, workspace=workspace.parent / "hello-edge-poc")
        run = env.deploy(recipe)
        root = env.system().root
        fleet = subprocess.Popen(
            [*fleet_args, "--workspace", str(root), "--job-id", run.get_job_id()]
        )
    result = Path(run.get_result())
    seconds = time.monotonic() - started
    try:
        fleet.wait(timeout=60)  # the gateways told every device DONE
    except subprocess.TimeoutExpired:
        fleet.kill()
    print(f"status: {run.get_status()} in {seconds:.1f} s")
    if stats_file.exists():
        fleet_stats = json.loads(stats_file.read_text())
        print(
            f"devices simulated: {fleet_stats['devices']} over {len(fleet_stats['per_gateway'])} "
            f"gateways {fleet_stats['per_gateway']}; {fleet_stats['requests']} HTTP requests, "
            f"{fleet_stats['results_taken']} updates taken, {fleet_stats['dropped_out']} "
            "devices dropped out"
        )
    for line in (result / "server" / "round_metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        metrics = record["metrics"]
        print(
            f"model version {record['round']:2d}: accuracy {metrics['accuracy']:.3f} "
            f"(stale updates so far {metrics['stale_updates']}, "
            f"dropped {metrics['dropped_updates']})"
        )


if __name__ == "__main__":
    main()
