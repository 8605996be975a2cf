"""``XGBBaggingRecipe``: tree-based federated XGBoost, bagging or cyclic."""

from __future__ import annotations

import numbers
from typing import Any

from ember.recipes import (
    JobFile,
    Recipe,
    RecipeArgumentError,
    check_choice,
    check_int,
    check_job_name,
    check_str,
)
from ember_xgboost.recipes.common import check_min_clients, client, data_loaders, site_files

CONTROLLER = "ember_xgboost.controllers:XGBTreeController"


class XGBBaggingRecipe(Recipe):
    """Tree-based federated XGBoost (NVFlare's ``XGBBaggingRecipe``), with the model passed
    as XGBoost JSON between plain Ember workflows:

    - ``training_mode="bagging"`` (a federated random forest when ``num_rounds=1``): each
      round every site grows ``num_local_parallel_tree`` trees on a ``local_subsample`` of
      its rows, starting from the global model; the server appends all of them. The
      learning rate is ``learning_rate / num_client_bagging`` (``lr_mode="uniform"``) or
      ``learning_rate * per_site_config[site]["lr_scale"]`` (``"scaled"``).
    - ``training_mode="cyclic"``: each round the sites take turns, each adding one boosting
      round to the model it receives.

    ``num_rounds`` defaults to 1 for bagging, 100 for cyclic. The global model is saved as
    ``server/<save_name>`` after each round; each site reports its validation metric.
    ``seed`` (not NVFlare's) fixes XGBoost's row sampling.
    """

    framework = "xgboost"

    def __init__(
        self,
        name: str,
        min_clients: int,
        training_mode: str = "bagging",
        num_rounds: int | None = None,
        num_client_bagging: int | None = None,
        num_local_parallel_tree: int = 1,
        local_subsample: float = 0.8,
        learning_rate: float = 0.1,
        objective: str = "binary:logistic",
        max_depth: int = 8,
        eval_metric: str = "auc",
        tree_method: str = "hist",
        use_gpus: bool = False,
        nthread: int = 16,
        lr_mode: str = "uniform",
        save_name: str = "xgboost_model.json",
        per_site_config: dict[str, dict[str, Any]] | None = None,
        seed: int = 0,
    ) -> None:
        name = check_job_name(name)
        training_mode = check_choice("training_mode", training_mode, ["bagging", "cyclic"])
        if num_rounds is None:
            num_rounds = 1 if training_mode == "bagging" else 100
        check_int("num_rounds", num_rounds, 1)
        check_int("num_local_parallel_tree", num_local_parallel_tree, 1)
        check_int("max_depth", max_depth, 1)
        check_int("nthread", nthread, 1)
        check_int("seed", seed, 0)
        for arg, value in (("local_subsample", local_subsample), ("learning_rate", learning_rate)):
            if (
                not isinstance(value, numbers.Real)
                or isinstance(value, bool)
                or not 0 < value <= (1.0 if arg == "local_subsample" else float("inf"))
            ):
                bound = "in (0, 1]" if arg == "local_subsample" else "> 0"
                raise RecipeArgumentError(f"{arg} must be a number {bound}, got {value!r}")
        lr_mode = check_choice("lr_mode", lr_mode, ["uniform", "scaled"])
        check_str("objective", objective)
        check_str("eval_metric", eval_metric)
        tree_method = check_choice("tree_method", tree_method, ["hist", "approx", "exact"])
        if use_gpus:
            raise RecipeArgumentError(
                "use_gpus=True: tree-based training on GPUs is not supported by Ember's "
                "XGBBaggingRecipe yet; use use_gpus=False"
            )
        files: dict[str, JobFile] = site_files()
        loaders = data_loaders(per_site_config, files, extra_keys=("lr_scale",))
        min_clients = check_min_clients(min_clients, loaders)
        num_client_bagging = (
            min_clients
            if num_client_bagging is None
            else check_int("num_client_bagging", num_client_bagging, 1)
        )
        assert per_site_config is not None
        lr_scales = {}
        for site, config in per_site_config.items():
            scale = config.get("lr_scale", 1.0)
            if not isinstance(scale, numbers.Real) or isinstance(scale, bool) or scale <= 0:
                raise RecipeArgumentError(
                    f"per_site_config[{site!r}]['lr_scale'] must be a number > 0, got {scale!r}"
                )
            lr_scales[site] = float(scale)
        self.training_mode = training_mode
        self.save_name = save_name
        self.assemble(
            name=name,
            min_clients=min_clients,
            workflows=[
                {
                    "target": CONTROLLER,
                    "args": {
                        "training_mode": training_mode,
                        "num_rounds": num_rounds,
                        "train_args": {
                            "num_client_bagging": num_client_bagging,
                            "num_local_parallel_tree": num_local_parallel_tree,
                            "local_subsample": float(local_subsample),
                            "learning_rate": float(learning_rate),
                            "objective": objective,
                            "max_depth": max_depth,
                            "eval_metric": eval_metric,
                            "tree_method": tree_method,
                            "nthread": nthread,
                            "lr_mode": lr_mode,
                            "seed": seed,
                        },
                        "data_loaders": loaders,
                        "lr_scales": lr_scales,
                        "save_name": save_name,
                    },
                }
            ],
            client=client(histogram=False),
            files=files,
        )
