"""One worker of the direct baseline: XGBoost's federated server reached straight."""

from __future__ import annotations

import json
import sys
import time

from bench_loader import SyntheticRows

import xgboost as xgb
from xgboost import collective


def main() -> None:
    address, world, rank, rows, features, rounds, params = sys.argv[1:8]
    loader = SyntheticRows(int(rows), int(features), int(world))
    loader.initialize(f"site-{int(rank) + 1}", int(rank))
    with collective.CommunicatorContext(
        dmlc_communicator="federated",
        federated_server_address=address,
        federated_world_size=int(world),
        federated_rank=int(rank),
    ):
        train, valid = loader.load_data()
        started = time.perf_counter()
        # the evaluation sets of the recipe's site script (ember_xgboost.site), so both arms
        # do the same work per round: only the collective's path differs
        booster = xgb.train(
            json.loads(params),
            train,
            int(rounds),
            evals=[(train, "train"), (valid, "valid")],
            verbose_eval=False,
        )
        seconds = time.perf_counter() - started
    print(json.dumps({"train_seconds": seconds, "rounds": booster.num_boosted_rounds()}))


if __name__ == "__main__":
    main()
