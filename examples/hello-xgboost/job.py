"""hello-xgboost: federated XGBoost on breast-cancer data split across sites, compared with
the same training on the pooled data.

    python job.py                     # horizontal (histogram-based), 3 sites, SimEnv
    python job.py --mode bagging      # tree-based bagging (a federated random forest)
    python job.py --mode cyclic       # tree-based cyclic boosting
    python job.py --env poc           # the same job on a local PoC system
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from breast_cancer_loader import BreastCancerLoader, split
from sklearn.metrics import roc_auc_score

import xgboost as xgb
from ember import PocEnv, SimEnv
from ember_xgboost.recipes import XGBBaggingRecipe, XGBHorizontalRecipe

PARAMS = {
    "max_depth": 3,
    "eta": 0.1,
    "objective": "binary:logistic",
    "eval_metric": "auc",
    "tree_method": "hist",
    "nthread": 1,
}


def centralised_auc(mode: str, rounds: int, sites: int) -> float:
    """The same training on the pooled rows (histogram: identical model expected)."""
    x_train, y_train, x_valid, y_valid = split(0, 0.2)
    if mode != "horizontal":
        params = {**PARAMS, "subsample": 0.8}
        booster = xgb.train(params, xgb.DMatrix(x_train, label=y_train), rounds * sites)
    else:
        booster = xgb.train(PARAMS, xgb.DMatrix(x_train, label=y_train), rounds)
    return float(roc_auc_score(y_valid, booster.predict(xgb.DMatrix(x_valid))))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=["horizontal", "bagging", "cyclic"], default="horizontal")
    parser.add_argument("--sites", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--env", choices=["sim", "poc"], default="sim")
    parser.add_argument("--workspace", default="/tmp/ember/hello-xgboost")
    args = parser.parse_args()
    per_site = {
        f"site-{i + 1}": {"data_loader": BreastCancerLoader(num_sites=args.sites)}
        for i in range(args.sites)
    }
    if args.mode == "horizontal":
        recipe = XGBHorizontalRecipe(
            name="hello-xgboost",
            min_clients=args.sites,
            num_rounds=args.rounds,
            early_stopping_rounds=None,
            xgb_params=PARAMS,
            per_site_config=per_site,
        )
        model_file = "xgboost_model.json"
    else:
        recipe = XGBBaggingRecipe(
            name="hello-xgboost",
            min_clients=args.sites,
            training_mode=args.mode,
            num_rounds=args.rounds,
            num_local_parallel_tree=1 if args.mode == "cyclic" else 5,
            max_depth=3,
            nthread=1,
            per_site_config=per_site,
        )
        model_file = recipe.save_name
    env = (
        SimEnv(num_clients=args.sites, workspace_root=args.workspace)
        if args.env == "sim"
        else PocEnv(num_clients=args.sites)
    )
    run = recipe.execute(env)
    result = Path(run.get_result())
    print(f"status: {run.get_status()}")
    booster = xgb.Booster(model_file=str(result / "server" / model_file))
    _, _, x_valid, y_valid = split(0, 0.2)
    federated = float(roc_auc_score(y_valid, booster.predict(xgb.DMatrix(x_valid))))
    print(f"federated AUC:   {federated:.6f} ({args.mode}, {args.sites} sites)")
    central = centralised_auc(args.mode, args.rounds, args.sites)
    print(f"centralised AUC: {central:.6f}")
    rounds = [json.loads(line) for line in (result / "server" / "round_metrics.jsonl").open()]
    print(f"rounds recorded: {len(rounds)}; last: {rounds[-1]['metrics']}")
    _ = np  # numpy is the loader's


if __name__ == "__main__":
    main()
