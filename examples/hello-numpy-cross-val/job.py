"""hello-numpy-cross-val: cross-site evaluation of numpy models (NVFlare's example of the
same name).

python job.py                          # pre-trained models, the built-in validator
python job.py --eval-script            # pre-trained models, scored by client.py at each site
python job.py --mode train             # FedAvg, then cross-site evaluation of every model
python job.py --export                 # write the job folder instead (see --export-dir)
"""

import argparse
import json
from pathlib import Path

import numpy as np

from ember import SimEnv
from ember.recipes import NumpyCrossSiteEvalRecipe, NumpyFedAvgRecipe, add_cross_site_evaluation

HERE = Path(__file__).parent


def pretrained_models(model_dir: Path) -> dict[str, str]:
    """Write two "pre-trained" models (what NVFlare's generate_pretrain_models.py does)."""
    model_dir.mkdir(parents=True, exist_ok=True)
    models = {"model_1": np.full((2, 3), 1.0), "model_2": np.arange(1.0, 7.0).reshape(2, 3)}
    for name, weights in models.items():
        np.save(model_dir / f"{name}.npy", weights.astype(np.float32))
    return {name: f"{name}.npy" for name in models}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mode", choices=["pretrained", "train"], default="pretrained")
    parser.add_argument("--eval-script", action="store_true")
    parser.add_argument("--n-clients", type=int, default=2)
    parser.add_argument("--num-rounds", type=int, default=2)
    parser.add_argument("--workspace-root", default="/tmp/ember/simulation")
    args, _ = parser.parse_known_args()

    if args.mode == "pretrained":
        model_dir = Path(args.workspace_root) / "hello-numpy-cross-val-models"
        recipe = NumpyCrossSiteEvalRecipe(
            name="hello-numpy-cross-val",
            min_clients=args.n_clients,
            model_dir=str(model_dir.resolve()),  # absolute: read on the server at run time
            model_name=pretrained_models(model_dir),
            eval_script=str(HERE / "client.py") if args.eval_script else None,
        )
    else:
        recipe = NumpyFedAvgRecipe(
            name="hello-numpy-train-cse",
            min_clients=args.n_clients,
            num_rounds=args.num_rounds,
            model=np.zeros((2, 3), dtype=np.float32),
            train_script=str(HERE / "client.py"),
        )
        add_cross_site_evaluation(recipe, validation_timeout=60)

    env = SimEnv(num_clients=args.n_clients, workspace_root=args.workspace_root)
    run = recipe.execute(env)
    print(f"status: {run.get_status()}")
    if run.get_status() == "EXPORTED":
        return
    if run.get_status() != "FINISHED:COMPLETED":
        raise SystemExit(run.get_message())
    out = Path(run.get_result()) / "server" / "cross_site_eval"
    matrix = json.loads((out / "cross_val_matrix.json").read_text())
    print(f"results: {out}")
    for metric, rows in matrix["metrics"].items():
        print(f"{metric} (rows: sites, columns: {', '.join(matrix['models'])})")
        for site, row in zip(matrix["sites"], rows, strict=True):
            print(f"  {site}: " + "  ".join(f"{v:.3f}" if v is not None else "  -  " for v in row))


if __name__ == "__main__":
    main()
