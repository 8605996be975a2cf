"""hello-cyclic: cyclic weight transfer of a small Keras model on scikit-learn's digits: the
model travels site-1 -> site-2 -> site-1 ..., each site training what the previous one sent.

python job.py                               # run in SimEnv, print the test accuracy
python job.py --env poc                     # on a local PoC system (server + clients, mutual TLS)
python job.py --order random --seed 3       # a new site order every round
"""

import os

# before tensorflow is imported: quiet, one thread per op (fast on a small CPU), same bits
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))  # model.py and data.py

import keras  # noqa: E402
from data import accuracy, test_data  # noqa: E402
from model import DigitsNet  # noqa: E402

from ember import PocEnv, SimEnv  # noqa: E402
from ember_tf.recipes import CyclicRecipe  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-clients", type=int, default=2)
    parser.add_argument("--num-rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2, help="local epochs per visit")
    parser.add_argument("--order", choices=["fixed", "random"], default="fixed")
    parser.add_argument("--seed", type=int, default=None, help="with --order random")
    parser.add_argument("--launch-external-process", action="store_true")
    parser.add_argument("--workspace-root", default="/tmp/ember/simulation")
    parser.add_argument("--env", choices=["sim", "poc"], default="sim")
    parser.add_argument("--poc-workspace", default=None, help="default: /tmp/ember/poc")
    args, _ = parser.parse_known_args()

    keras.utils.set_random_seed(0)  # the initial weights
    recipe = CyclicRecipe(
        name="hello-cyclic",
        min_clients=args.n_clients,
        num_rounds=args.num_rounds,
        model=DigitsNet(),
        train_script=str(HERE / "client.py"),
        train_args=f"--n-sites {args.n_clients} --epochs {args.epochs}",
        launch_external_process=args.launch_external_process,
        order=args.order,
        seed=args.seed,
    )
    env = (
        PocEnv(num_clients=args.n_clients, workspace=args.poc_workspace)
        if args.env == "poc"
        else SimEnv(num_clients=args.n_clients, workspace_root=args.workspace_root)
    )
    started = time.perf_counter()
    run = recipe.execute(env)
    result = Path(run.get_result())
    print(f"status: {run.get_status()}")
    print(f"result: {result}")
    if run.get_status() != "FINISHED:COMPLETED":
        raise SystemExit(run.get_message())
    rounds = (result / "server" / "round_metrics.jsonl").read_text().splitlines()
    for line in rounds:
        record = json.loads(line)
        print(f"round {record['round']}: {' -> '.join(record['sites'])}")
    model = DigitsNet()
    model.build((None, 64))
    model.load_weights(str(result / "server" / "models" / "global_model.weights.h5"))
    print(
        f"test accuracy of the last model after {args.num_rounds} rounds: "
        f"{accuracy(model, *test_data()):.4f} ({time.perf_counter() - started:.1f} s)"
    )


if __name__ == "__main__":
    main()
