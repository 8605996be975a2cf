"""Run hello-flower inside Ember: ``python job.py [--clients N] [--rounds R] [--env poc]``."""

from __future__ import annotations

import argparse
from pathlib import Path

from ember import PocEnv, SimEnv
from ember_flower import FlowerRecipe

APP = Path(__file__).resolve().parent

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--env", choices=["sim", "poc"], default="sim")
    args = parser.parse_args()
    recipe = FlowerRecipe(
        APP,
        name="hello-flower",
        min_clients=args.clients,
        run_config={"num-server-rounds": args.rounds, "min-nodes": args.clients},
    )
    n = args.clients
    env = PocEnv(num_clients=n) if args.env == "poc" else SimEnv(num_clients=n)
    run = recipe.execute(env)
    result = run.get_result()  # waits for the end (PocEnv returns at once from execute)
    print(run.get_status(), run.get_message())
    print("result:", result)
