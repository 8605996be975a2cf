"""monai-seg2d: FedAvg of a small MONAI UNet on MONAI's synthetic 2D images, over two sites.

python job.py                    # run in SimEnv, print the Dice of each round's global model
python job.py --num-rounds 2 --steps 5
"""

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

import torch  # noqa: E402
from client import make_unet  # noqa: E402

from ember import SimEnv  # noqa: E402
from ember_pt.recipes import FedAvgRecipe  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-clients", type=int, default=2)
    parser.add_argument("--num-rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--workspace-root", default="/tmp/ember/simulation")
    args, _ = parser.parse_known_args()

    torch.manual_seed(0)
    torch.set_num_threads(1)
    recipe = FedAvgRecipe(
        name="monai-seg2d",
        min_clients=args.n_clients,
        num_rounds=args.num_rounds,
        model=make_unet(),
        train_script=str(HERE / "client.py"),
        train_args=f"--steps {args.steps}",
        key_metric="dice",
    )
    run = recipe.execute(SimEnv(num_clients=args.n_clients, workspace_root=args.workspace_root))
    print(f"status: {run.get_status()}")
    result = Path(run.get_result())
    if run.get_status() != "FINISHED:COMPLETED":
        raise SystemExit(run.get_message())
    for line in (result / "server" / "round_metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        print(f"round {record['round']}: dice {record['metrics']['dice']:.4f}")


if __name__ == "__main__":
    main()
