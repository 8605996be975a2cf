"""poc_small_job job: FedAvg of a 10-float zero model on a running PoC system; 2 sites, 3
rounds, every site adds 1 per round (``../sim_overhead/client.py``, an ordinary script).

python job.py --workspace DIR [--num-rounds 3]

As a user runs it: ``recipe.execute(PocEnv(...))`` then ``run.get_result()`` (waits for the
end and downloads the result). Exits nonzero unless the job ends FINISHED:COMPLETED with every
weight == num_rounds in the downloaded global model.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ember import PocEnv
from ember.client import NUMPY_KEY
from ember.recipes import NumpyFedAvgRecipe

CLIENT = Path(__file__).resolve().parent.parent / "sim_overhead" / "client.py"


def main() -> int:
    """Run the job once; 0 when the downloaded result is right."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workspace", required=True)
    parser.add_argument("--num-rounds", type=int, default=3)
    args = parser.parse_args()

    recipe = NumpyFedAvgRecipe(
        name="poc-small-job",
        min_clients=2,
        num_rounds=args.num_rounds,
        model=np.zeros(10, dtype=np.float32),
        train_script=str(CLIENT),
        key_metric=None,
    )
    run = recipe.execute(PocEnv(num_clients=2, workspace=args.workspace))
    result = Path(run.get_result(timeout=120))
    status = run.get_status()
    ok = status == "FINISHED:COMPLETED"
    if ok:
        with np.load(result / "server" / "models" / "global_model.npz") as model:
            ok = bool(np.all(model[NUMPY_KEY] == np.float32(args.num_rounds)))
    if not ok:
        print(f"wrong result: status {status}; {run.get_message()}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
