"""Run hello-flower inside Ember: ``python examples/hello-flower/job.py [--clients N]``."""

from __future__ import annotations

import argparse
from pathlib import Path

from ember import SimEnv
from ember_flower import FlowerRecipe

APP = Path(__file__).resolve().parent

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    recipe = FlowerRecipe(
        APP,
        name="hello-flower",
        min_clients=args.clients,
        run_config={"num-server-rounds": args.rounds, "min-nodes": args.clients},
    )
    run = recipe.execute(SimEnv(num_clients=args.clients))
    print(run.get_status(), run.get_message())
    print("result:", run.get_result())
