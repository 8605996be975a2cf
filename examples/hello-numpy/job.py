"""hello-numpy: federated averaging of a 3x3 numpy model over two simulated sites.

python job.py                  # run in SimEnv
python job.py --env poc        # run on a local PoC system (server + clients, mutual TLS)
python job.py --export         # write the job folder instead (see --export-dir)
"""

import argparse
from pathlib import Path

import numpy as np

from ember import PocEnv, SimEnv
from ember.client import NUMPY_KEY
from ember.recipes import NumpyFedAvgRecipe, add_cross_site_evaluation, add_experiment_tracking

HERE = Path(__file__).parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-clients", type=int, default=2)
    parser.add_argument("--num-rounds", type=int, default=3)
    parser.add_argument("--launch-external-process", action="store_true")
    parser.add_argument("--workspace-root", default="/tmp/ember/simulation")
    parser.add_argument("--env", choices=["sim", "poc"], default="sim")
    args, _ = parser.parse_known_args()

    recipe = NumpyFedAvgRecipe(
        name="hello-numpy",
        min_clients=args.n_clients,
        num_rounds=args.num_rounds,
        model=np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]], dtype=np.float32),
        train_script=str(HERE / "client.py"),
        launch_external_process=args.launch_external_process,
        key_metric="weight_mean",
    )
    add_experiment_tracking(recipe, tracking_type="tensorboard")
    add_cross_site_evaluation(recipe)

    env = (
        PocEnv(num_clients=args.n_clients)
        if args.env == "poc"
        else SimEnv(num_clients=args.n_clients, workspace_root=args.workspace_root)
    )
    run = recipe.execute(env)
    result = Path(run.get_result())
    print(f"status: {run.get_status()}")
    print(f"result: {result}")
    if run.get_status() == "FINISHED:COMPLETED":
        with np.load(result / "server" / "models" / "global_model.npz") as model:
            print(f"global model after {args.num_rounds} rounds:\n{model[NUMPY_KEY]}")
    elif run.get_status() != "EXPORTED":
        raise SystemExit(run.get_message())


if __name__ == "__main__":
    main()
