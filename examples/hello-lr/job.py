"""hello-lr: logistic regression on breast cancer data over 3 sites by federated
Newton-Raphson; the global weights are compared with centralised Newton-Raphson."""

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from data import NUM_FEATURES, accuracy, test_data, train_data  # noqa: E402

from ember import SimEnv  # noqa: E402
from ember.newton_raphson import fit  # noqa: E402
from ember.recipes import FedAvgLrRecipe  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--num-rounds", type=int, default=5)
    parser.add_argument("--damping-factor", type=float, default=0.8)
    parser.add_argument("--epsilon", type=float, default=0.0)
    parser.add_argument("--workspace", default="/tmp/ember/hello-lr")
    args, _ = parser.parse_known_args()

    recipe = FedAvgLrRecipe(
        name="hello-lr",
        num_features=NUM_FEATURES,
        min_clients=3,
        num_rounds=args.num_rounds,
        damping_factor=args.damping_factor,
        epsilon=args.epsilon,
        train_script=str(HERE / "client.py"),
        train_args="--n-sites 3",
    )
    run = recipe.execute(SimEnv(num_clients=3, workspace_root=args.workspace))
    if run.get_status() == "EXPORTED":
        return
    result = Path(run.get_result())
    print(f"status: {run.get_status()}, result: {result}")
    with np.load(result / "server" / "newton_raphson.npz") as history:
        federated = history["weights"]
    x, y = train_data()
    central = fit(x, y, args.num_rounds, args.damping_factor, args.epsilon)
    difference = float(np.max(np.abs(federated - central)))
    x_test, y_test = test_data()
    print(f"test accuracy of the global weights: {accuracy(federated[-1], x_test, y_test):.4f}")
    print(f"largest difference from centralised Newton-Raphson, over all rounds: {difference:.3g}")


if __name__ == "__main__":
    main()
