"""hello-pt: FedAvg of a small PyTorch MLP on scikit-learn's digits, over two sites.

python job.py                               # run in SimEnv, print the test accuracy
python job.py --launch-external-process     # each site's script in its own process
"""

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))  # model.py and data.py

import torch  # noqa: E402
from data import accuracy, test_data  # noqa: E402
from model import DigitsMLP  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from ember import SimEnv  # noqa: E402
from ember_pt.recipes import FedAvgRecipe  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-clients", type=int, default=2)
    parser.add_argument("--num-rounds", type=int, default=5)
    parser.add_argument("--launch-external-process", action="store_true")
    parser.add_argument("--workspace-root", default="/tmp/ember/simulation")
    args, _ = parser.parse_known_args()

    torch.manual_seed(0)
    recipe = FedAvgRecipe(
        name="hello-pt",
        min_clients=args.n_clients,
        num_rounds=args.num_rounds,
        model=DigitsMLP(),
        train_script=str(HERE / "client.py"),
        train_args=f"--n-sites {args.n_clients}",
        launch_external_process=args.launch_external_process,
    )
    run = recipe.execute(SimEnv(num_clients=args.n_clients, workspace_root=args.workspace_root))
    print(f"status: {run.get_status()}")
    result = Path(run.get_result())
    print(f"result: {result}")
    if run.get_status() != "FINISHED:COMPLETED":
        raise SystemExit(run.get_message())
    model = DigitsMLP()
    model.load_state_dict(load_file(str(result / "server" / "models" / "global_model.safetensors")))
    print(
        f"test accuracy of the global model after {args.num_rounds} rounds: "
        f"{accuracy(model, *test_data()):.4f}"
    )


if __name__ == "__main__":
    main()
