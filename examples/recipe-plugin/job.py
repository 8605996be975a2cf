"""recipe-plugin example: the MedianRecipe over three sites, one of which is an outlier.

pip install ./examples/recipe-plugin             # once: installs the plugin
python examples/recipe-plugin/job.py             # SimEnv, three in-process sites
python examples/recipe-plugin/job.py --env poc   # a local PoC system (server + 3 clients)
python examples/recipe-plugin/job.py --aggregation trimmed_mean --trim 1
"""

import argparse
from pathlib import Path

import numpy as np
from ember_recipe_median.recipe import MedianRecipe

from ember import PocEnv, SimEnv
from ember.client import NUMPY_KEY

HERE = Path(__file__).parent
OUTLIER_SHIFT = 100.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--num-rounds", type=int, default=2)
    parser.add_argument("--aggregation", choices=["median", "trimmed_mean"], default="median")
    parser.add_argument("--trim", type=int, default=None)
    parser.add_argument("--workspace-root", default="/tmp/ember/simulation")
    parser.add_argument("--env", choices=["sim", "poc"], default="sim")
    parser.add_argument("--poc-workspace", default=None, help="default: /tmp/ember/poc")
    args, _ = parser.parse_known_args()

    recipe = MedianRecipe(
        name="median-example",
        aggregation=args.aggregation,
        trim=args.trim,
        min_clients=3,
        num_rounds=args.num_rounds,
        model=np.zeros((2, 3), dtype=np.float32),
        train_script=str(HERE / "client.py"),
        train_args=f"--outlier site-3 --outlier-shift {OUTLIER_SHIFT:g}",
        key_metric=None,
    )
    env = (
        PocEnv(num_clients=3, workspace=args.poc_workspace)
        if args.env == "poc"
        else SimEnv(num_clients=3, workspace_root=args.workspace_root)
    )
    run = recipe.execute(env)
    result = Path(run.get_result())
    print(f"status: {run.get_status()}")
    print(f"result: {result}")
    if run.get_status() == "FINISHED:COMPLETED":
        with np.load(result / "server" / "models" / "global_model.npz") as model:
            weights = model[NUMPY_KEY]
        # each round site-1 adds 1, site-2 adds 2, site-3 adds 100: the median moves by 2,
        # the mean would move by (1 + 2 + 100) / 3
        mean = args.num_rounds * (1 + 2 + OUTLIER_SHIFT) / 3
        print(f"global model after {args.num_rounds} rounds ({args.aggregation}):\n{weights}")
        print(f"FedAvg's mean would have put every weight at {mean:.2f}")
    elif run.get_status() != "EXPORTED":
        raise SystemExit(run.get_message())


if __name__ == "__main__":
    main()
