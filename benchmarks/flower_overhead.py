"""Flower through Ember vs Flower's own deployment: what the tunnel and the job cost.

    python benchmarks/flower_overhead.py [--rounds N] [--clients N] [--repeat N]

The same app (``examples/hello-flower``: numpy logistic regression on scikit-learn's
digits, no evaluation) runs in one process run after run:

- flower: Flower's own deployment (``flower-superlink`` + ``flower-supernode`` per client +
  ``flwr run`` + ``flwr log`` to the end; :func:`ember_flower.native.run_native`), wall
  time from the first process started to the last one ended;
- ember: ``FlowerRecipe`` in SimEnv (SuperLink beside the server job, each SuperNode's
  Fleet requests through the job's tunnel), wall time of ``recipe.execute``.

Each is the best of ``--repeat`` runs (they alternate, so load changes hit both). Both runs
must finish and save the same final model (checked; the exit status is 1 otherwise). The
ratio ember / flower is printed (target <= 1.1x); most of either is Flower's own cost (a new
``flwr-clientapp`` process per message). The output ends with one JSON line of figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ember import SimEnv
from ember_flower import FlowerRecipe
from ember_flower.native import run_native

APP = Path(__file__).resolve().parents[1] / "examples" / "hello-flower"


def _flower(folder: Path, rounds: int, clients: int) -> tuple[float, Path]:
    model = folder / "flower.npz"
    started = time.monotonic()
    status = run_native(
        APP,
        clients,
        folder / "native",
        {"model-path": str(model), "num-server-rounds": rounds, "min-nodes": clients},
    )
    elapsed = time.monotonic() - started
    if status != "finished:completed":
        raise SystemExit(f"Flower's own deployment ended {status}")
    return elapsed, model


def _ember(folder: Path, rounds: int, clients: int) -> tuple[float, Path]:
    model = folder / "ember.npz"
    recipe = FlowerRecipe(
        APP,
        name="flower-bench",
        min_clients=clients,
        run_config={"model-path": str(model), "num-server-rounds": rounds, "min-nodes": clients},
    )
    started = time.monotonic()
    run = recipe.execute(
        SimEnv(num_clients=clients, workspace_root=str(folder / "ws"), progress=False)
    )
    elapsed = time.monotonic() - started
    if run.get_status() != "FINISHED:COMPLETED":
        raise SystemExit(f"the Ember job ended {run.get_status()}: {run.get_message()}")
    return elapsed, model


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    best = {"flower": float("inf"), "ember": float("inf")}
    same = True
    for i in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="ember-flower-bench-") as tmp:
            folder = Path(tmp)
            flower_s, flower_model = _flower(folder, args.rounds, args.clients)
            ember_s, ember_model = _ember(folder, args.rounds, args.clients)
            a, b = np.load(flower_model), np.load(ember_model)
            same = same and all(np.array_equal(a[k], b[k]) for k in ("weights", "bias"))
        best["flower"] = min(best["flower"], flower_s)
        best["ember"] = min(best["ember"], ember_s)
        print(f"run {i + 1}: flower {flower_s:.1f} s, ember {ember_s:.1f} s", flush=True)
    ratio = best["ember"] / best["flower"]
    print(
        f"{args.clients} clients, {args.rounds} round(s): Flower's own deployment "
        f"{best['flower']:.1f} s, through Ember {best['ember']:.1f} s: ratio {ratio:.2f}x "
        f"(target <= 1.1x); same model: {same}"
    )
    print(
        json.dumps(
            {
                "flower_s": round(best["flower"], 2),
                "ember_s": round(best["ember"], 2),
                "ratio": round(ratio, 3),
                "same_model": same,
                "rounds": args.rounds,
                "clients": args.clients,
            }
        )
    )
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
