"""hello-dp: FedAvg of a small MLP trained with Opacus DP-SGD on breast cancer data, two sites.

python job.py                               # SimEnv: 5 rounds, epsilon 2.0 per site in all
python job.py --target-epsilon 1 --num-rounds 10
python job.py --launch-external-process     # each site's script in its own process

Each site makes one Opacus PrivacyEngine for the whole job (make_private_with_epsilon with
epochs = rounds x local epochs) and reports the epsilon spent so far with every result; the
job prints them per round, then the test accuracy of the final global model at each site.
Needs ember-pt[dp] (opacus).
"""

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))  # model.py and data.py

import torch  # noqa: E402
from data import accuracy, site_data  # noqa: E402
from model import CancerMLP  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from ember import SimEnv  # noqa: E402
from ember_pt.recipes import FedAvgRecipe  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-clients", type=int, default=2)
    parser.add_argument("--num-rounds", type=int, default=5)
    parser.add_argument("--target-epsilon", type=float, default=2.0)
    parser.add_argument("--delta", type=float, default=1e-5)
    parser.add_argument("--local-epochs", type=int, default=1)
    parser.add_argument("--launch-external-process", action="store_true")
    parser.add_argument("--workspace-root", default="/tmp/ember/simulation")
    args, _ = parser.parse_known_args()
    if importlib.util.find_spec("opacus") is None:
        raise SystemExit("hello-dp needs Opacus at the sites: pip install 'ember-pt[dp]'")

    torch.manual_seed(0)
    torch.set_num_threads(1)
    recipe = FedAvgRecipe(
        name="hello-dp",
        min_clients=args.n_clients,
        num_rounds=args.num_rounds,
        model=CancerMLP(),
        train_script=str(HERE / "client.py"),
        train_args=(
            f"--n-sites {args.n_clients} --target-epsilon {args.target_epsilon} "
            f"--delta {args.delta} --local-epochs {args.local_epochs}"
        ),
        launch_external_process=args.launch_external_process,
    )
    started = time.monotonic()
    run = recipe.execute(SimEnv(num_clients=args.n_clients, workspace_root=args.workspace_root))
    print(f"status: {run.get_status()}")
    result = Path(run.get_result())
    print(f"result: {result}")
    if run.get_status() != "FINISHED:COMPLETED":
        raise SystemExit(run.get_message())
    print(f"wall time: {time.monotonic() - started:.1f} s")

    print(f"target: epsilon {args.target_epsilon:g} at delta {args.delta:g} per site, whole job")
    print("per round and site: epsilon spent so far, test accuracy of the model it received")
    with open(result / "server" / "round_metrics.jsonl", encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            per_site = ", ".join(
                f"{site} epsilon {m['dp_epsilon']:.3f} accuracy {m['accuracy']:.3f}"
                for site, m in sorted(record["site_metrics"].items())
            )
            print(f"round {record['round']}: {per_site}")

    model = CancerMLP()
    model.load_state_dict(load_file(str(result / "server" / "models" / "global_model.safetensors")))
    scores = []
    for index in range(args.n_clients):
        _, _, x_test, y_test = site_data(index, args.n_clients)
        scores.append(accuracy(model, x_test, y_test))
    print(
        f"test accuracy of the global model after {args.num_rounds} rounds: "
        f"{sum(scores) / len(scores):.4f} (per site: {', '.join(f'{s:.3f}' for s in scores)})"
    )


if __name__ == "__main__":
    main()
