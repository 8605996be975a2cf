"""xgboost-vertical: three sites hold other columns of the same patients (and not quite the
same patients). First a private set intersection finds the patients every site has, without
any site seeing another's other ids; then vertical XGBoost trains on the intersection's rows,
the label owner (site-1) alone holding the labels. Prints the federated AUC beside the
centralised one (the same rows with every column pooled).

    python job.py               # SimEnv
    python job.py --env poc     # the same two jobs on a local PoC system
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score
from vertical_data import (
    LABEL_OWNER,
    SITES,
    VALID_FRACTION,
    PatientIds,
    VerticalLoader,
    read_intersection,
    table,
)

import xgboost as xgb
from ember import PocEnv, SimEnv
from ember.recipes import DhPSIRecipe
from ember_xgboost.recipes import XGBVerticalRecipe

PARAMS = {
    "max_depth": 3,
    "eta": 0.1,
    "objective": "binary:logistic",
    "eval_metric": "auc",
    "tree_method": "hist",
    "nthread": 1,
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--env", choices=["sim", "poc"], default="sim")
    parser.add_argument("--workspace", default="/tmp/ember/xgboost-vertical")
    args = parser.parse_args()
    env: SimEnv | PocEnv = (
        SimEnv(clients=list(SITES), workspace_root=args.workspace)
        if args.env == "sim"
        else PocEnv(clients=list(SITES))
    )

    psi = DhPSIRecipe(name="psi", min_clients=len(SITES), local_psi=PatientIds())
    psi_run = psi.execute(env)
    psi_run.get_result()  # waits for the job's end (PocEnv's execute returns once submitted)
    print(f"PSI: {psi_run.get_status()}")
    if isinstance(env, SimEnv):
        intersection = str(psi.intersection_path(psi_run, "{site}"))
    else:  # each PoC site keeps the file in its own kit: <kit>/jobs/<job id>/workspace/...
        kit = env.system().root / "{site}"
        intersection = str(kit / "jobs" / psi_run.get_job_id() / "workspace" / psi.output_path)
    common = read_intersection(intersection.format(site=LABEL_OWNER))
    print(f"patients every site holds: {len(common)} of {len(table()[0])}")

    recipe = XGBVerticalRecipe(
        name="xgboost-vertical",
        min_clients=len(SITES),
        num_rounds=args.rounds,
        label_owner=LABEL_OWNER,
        early_stopping_rounds=None,
        xgb_params=PARAMS,
        per_site_config={
            site: {"data_loader": VerticalLoader(intersection=intersection)}
            for site in SITES
        },
    )
    run = recipe.execute(env)
    result = Path(run.get_result())
    print(f"vertical XGBoost: {run.get_status()}")

    # the baseline: the same rows and split, every column in one place
    ids, x, y = table()
    where = {pid: i for i, pid in enumerate(ids)}
    rows = np.array([where[pid] for pid in common])
    n_train = int(len(rows) * (1 - VALID_FRACTION))
    train, valid = rows[:n_train], rows[n_train:]
    central = xgb.train(PARAMS, xgb.DMatrix(x[train], label=y[train]), args.rounds)
    model = result / "server" / recipe.model_file_name
    federated = xgb.Booster(model_file=str(model)).predict(xgb.DMatrix(x[valid]))
    print(f"federated AUC:   {roc_auc_score(y[valid], federated):.6f}")
    print(f"centralised AUC: {roc_auc_score(y[valid], central.predict(xgb.DMatrix(x[valid]))):.6f}")


if __name__ == "__main__":
    main()
