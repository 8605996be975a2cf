"""Histogram-based federated XGBoost: Ember's tunnelled collective against XGBoost's own
federated server reached directly, on the same data, in one run.

    python benchmarks/xgboost_hist.py [--sites 2] [--rows 20000] [--rounds 30] [--repeat 3]

Every arm starts one worker process per site (and, where it is used, XGBoost's
federated server in its own process), with the same synthetic rows
(``make_classification``, split by site), parameters (hist, depth 6, nthread 1),
evaluation sets (train and valid, AUC each round, as the recipe's site script has them)
and rounds. Each worker times its ``xgb.train`` call (every
collective of every round included; process start and data loading excluded):
- direct: the workers dial the federated server (insecure, on loopback), as a single-host
  XGBoost user would run it;
- ember: ``XGBHorizontalRecipe`` in SimEnv (its default ``collective="ember"``): each call
  goes worker -> the site's tunnel endpoint (a Unix socket) -> one Ember request -> the
  server job's TunnelService, which answers the collective itself;
- ember-xgb-server: the same with ``collective="xgboost"``: the server job replays each call
  on XGBoost's federated server (a child process, mutual TLS).

Prints the time per round of each arm (the slowest site's train time / rounds, best of
``--repeat``) and each Ember arm's ratio to direct (target <= 1.2), then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent / "xgboost_hist"
sys.path.insert(0, str(HERE))

PARAMS = {
    "max_depth": 6,
    "eta": 0.1,
    "objective": "binary:logistic",
    "eval_metric": "auc",
    "tree_method": "hist",
    "nthread": 1,
}


def direct(sites: int, rows: int, features: int, rounds: int) -> float:
    """The slowest worker's seconds in xgb.train, XGBoost's federated server dialled
    directly."""
    code = (
        "import json, sys, threading\n"
        "from xgboost.federated import FederatedTracker\n"
        f"t = FederatedTracker(n_workers={sites}, port=0, secure=False, timeout=300)\n"
        "t.start(); print(json.dumps(t.worker_args()), flush=True)\n"
        "threading.Thread(target=t.wait_for, daemon=True).start(); sys.stdin.read()\n"
    )
    server = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert server.stdout is not None
    assert server.stdin is not None
    port = json.loads(server.stdout.readline())["dmlc_tracker_port"]
    try:
        workers = [
            subprocess.Popen(
                [
                    sys.executable,
                    str(HERE / "direct_worker.py"),
                    f"127.0.0.1:{port}",
                    str(sites),
                    str(rank),
                    str(rows),
                    str(features),
                    str(rounds),
                    json.dumps(PARAMS),
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            for rank in range(sites)
        ]
        outs = [json.loads(w.communicate(timeout=600)[0].strip().splitlines()[-1]) for w in workers]
    finally:
        server.stdin.close()
        server.wait(10)
    assert all(o["rounds"] == rounds for o in outs)
    return max(float(o["train_seconds"]) for o in outs)


def ember(sites: int, rows: int, features: int, rounds: int, collective: str = "ember") -> float:
    """The slowest site's seconds in xgb.train, through Ember's tunnel (SimEnv)."""
    from bench_loader import SyntheticRows

    from ember import SimEnv
    from ember_xgboost.recipes import XGBHorizontalRecipe

    recipe = XGBHorizontalRecipe(
        name="xgb-bench",
        min_clients=sites,
        num_rounds=rounds,
        early_stopping_rounds=None,
        xgb_params=PARAMS,
        per_site_config={
            f"site-{i + 1}": {"data_loader": SyntheticRows(rows, features, sites)}
            for i in range(sites)
        },
        collective=collective,
    )
    with tempfile.TemporaryDirectory() as tmp:
        run = recipe.execute(SimEnv(num_clients=sites, workspace_root=tmp, progress=False))
        if run.get_status() != "FINISHED:COMPLETED":
            raise SystemExit(f"the Ember job failed: {run.get_message()}")
        summary = json.loads(
            (Path(run.get_result()) / "server" / "metrics_summary.json").read_text()
        )
    return max(float(s) for s in summary["train_seconds"].values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=2)
    parser.add_argument("--rows", type=int, default=20000, help="rows per site")
    parser.add_argument("--features", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    shape = (args.sites, args.rows, args.features, args.rounds)
    times: dict[str, list[float]] = {"direct": [], "ember": [], "ember-xgb-server": []}
    started = time.perf_counter()
    for _ in range(args.repeat):  # interleaved, so every arm sees the same machine
        times["direct"].append(direct(*shape))
        times["ember"].append(ember(*shape))
        times["ember-xgb-server"].append(ember(*shape, collective="xgboost"))
    best = {arm: min(values) / args.rounds for arm, values in times.items()}
    ratio = best["ember"] / best["direct"]
    print(
        f"{args.sites} sites x {args.rows} rows x {args.features} features, "
        f"{args.rounds} rounds, best of {args.repeat}"
    )
    for arm in times:
        runs = ", ".join(f"{t:.2f}" for t in times[arm])
        vs = "" if arm == "direct" else f"  {best[arm] / best['direct']:.2f}x direct"
        print(f"  {arm:16s} {best[arm] * 1000:8.1f} ms/round{vs}   (train s per run: {runs})")
    print(f"  ratio {ratio:.2f}x (target <= 1.2)   [{time.perf_counter() - started:.0f} s]")
    print(
        json.dumps(
            {
                "direct_ms_per_round": round(best["direct"] * 1000, 2),
                "ember_ms_per_round": round(best["ember"] * 1000, 2),
                "ember_xgb_server_ms_per_round": round(best["ember-xgb-server"] * 1000, 2),
                "ratio": round(ratio, 3),
                "sites": args.sites,
                "rows_per_site": args.rows,
                "rounds": args.rounds,
            }
        )
    )


if __name__ == "__main__":
    main()
