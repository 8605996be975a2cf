"""``XGBHorizontalRecipe`` and ``XGBVerticalRecipe``: histogram-based federated XGBoost."""

from __future__ import annotations

from typing import Any

from ember.recipes import (
    JobFile,
    Recipe,
    RecipeArgumentError,
    check_int,
    check_job_name,
    check_str,
)
from ember_xgboost.data_loader import COLUMN_SPLIT, ROW_SPLIT
from ember_xgboost.recipes.common import (
    check_min_clients,
    check_xgb_params,
    client,
    data_loaders,
    site_files,
)

CONTROLLER = "ember_xgboost.controllers:XGBHistogramController"


def _check_ranks(client_ranks: Any, sites: dict[str, Any]) -> dict[str, int] | None:
    if client_ranks is None or client_ranks == {}:
        return None
    if not isinstance(client_ranks, dict) or set(client_ranks) != set(sites):
        raise RecipeArgumentError(
            f"client_ranks must include exactly the per_site_config sites: expected "
            f"{sorted(sites)}, got {client_ranks!r}"
        )
    ranks = list(client_ranks.values())
    if not all(isinstance(r, int) and not isinstance(r, bool) for r in ranks) or sorted(
        ranks
    ) != list(range(len(sites))):
        raise RecipeArgumentError(
            f"client_ranks values must be unique and consecutive from 0 to {len(sites) - 1}: "
            f"got {client_ranks}"
        )
    return dict(client_ranks)


COLLECTIVES = ("ember", "xgboost")


class _HistogramRecipe(Recipe):
    framework = "xgboost"

    def _build(
        self,
        *,
        name: str,
        min_clients: int,
        num_rounds: int,
        early_stopping_rounds: int | None,
        use_gpus: bool,
        secure: bool,
        client_ranks: dict[str, int] | None,
        xgb_params: dict[str, Any] | None,
        per_site_config: dict[str, dict[str, Any]] | None,
        data_split_mode: int,
        model_file_name: str,
        collective: str,
    ) -> None:
        name = check_job_name(name)
        if collective not in COLLECTIVES:
            raise RecipeArgumentError(
                f"collective must be \"ember\" (the server's job process answers XGBoost's "
                f'collective calls) or "xgboost" (XGBoost\'s own federated server in a child '
                f"process), got {collective!r}"
            )
        check_int("num_rounds", num_rounds, 1)
        if early_stopping_rounds is not None:
            check_int("early_stopping_rounds", early_stopping_rounds, 1)
        if not isinstance(use_gpus, bool):
            raise RecipeArgumentError("use_gpus must be True or False")
        if secure:
            raise RecipeArgumentError(
                "secure=True (homomorphic encryption) needs an XGBoost build that PyPI does "
                "not ship; Ember does not support it (docs/xgboost.md). Use secure=False"
            )
        model_file_name = str(check_str("model_file_name", model_file_name))
        if not model_file_name.endswith(".json") or "/" in model_file_name:
            raise RecipeArgumentError(
                f"model_file_name must be a file name ending in .json, got {model_file_name!r}"
            )
        files: dict[str, JobFile] = site_files()
        loaders = data_loaders(per_site_config, files)
        min_clients = check_min_clients(min_clients, loaders)
        ranks = _check_ranks(client_ranks, loaders)
        self.model_file_name = model_file_name
        self.assemble(
            name=name,
            min_clients=min_clients,
            workflows=[
                {
                    "target": CONTROLLER,
                    "args": {
                        "num_rounds": num_rounds,
                        "data_split_mode": data_split_mode,
                        "xgb_params": check_xgb_params(xgb_params),
                        "xgb_options": {
                            "early_stopping_rounds": early_stopping_rounds,
                            "use_gpus": use_gpus,
                            "collective": collective,
                        },
                        "client_ranks": ranks,
                        "data_loaders": loaders,
                        "model_file_name": model_file_name,
                    },
                }
            ],
            client=client(histogram=True),
            files=files,
        )
        # every site's worker joins each collective: the sites train at once, whatever cap
        # the env puts on concurrent training
        self.job.all_sites_at_once = True


class XGBHorizontalRecipe(_HistogramRecipe):
    """Horizontal federated XGBoost (NVFlare's ``XGBHorizontalRecipe``): each site holds
    other rows with the same features; XGBoost's histogram-based federated training
    (``data_split_mode=0``) builds one model from all of them, exactly as if the rows were
    pooled.

    Each site's data comes from ``per_site_config[site]["data_loader"]``, an
    :class:`ember_xgboost.XGBDataLoader`. ``xgb_params`` go to ``xgboost.train`` (default:
    NVFlare's: max_depth 8, eta 0.1, binary:logistic, auc, hist, nthread 16);
    ``early_stopping_rounds`` stops on the validation metric of the federation. The model is
    saved as ``server/xgboost_model.json``. ``client_ranks`` fixes each site's rank (default:
    the job's site order). ``secure=True`` (HE) is refused: it needs a non-PyPI XGBoost.
    ``collective`` (not NVFlare's): ``"ember"`` (default) answers XGBoost's collective calls
    in the server's job process; ``"xgboost"`` replays them on XGBoost's own federated
    server, run as a child process (docs/xgboost.md compares the two).
    """

    def __init__(
        self,
        name: str,
        min_clients: int,
        num_rounds: int,
        early_stopping_rounds: int | None = 2,
        use_gpus: bool = False,
        secure: bool = False,
        client_ranks: dict[str, int] | None = None,
        xgb_params: dict[str, Any] | None = None,
        per_site_config: dict[str, dict[str, Any]] | None = None,
        model_file_name: str = "xgboost_model.json",
        collective: str = "ember",
    ) -> None:
        self._build(
            name=name,
            min_clients=min_clients,
            num_rounds=num_rounds,
            early_stopping_rounds=early_stopping_rounds,
            use_gpus=use_gpus,
            secure=secure,
            client_ranks=client_ranks,
            xgb_params=xgb_params,
            per_site_config=per_site_config,
            data_split_mode=ROW_SPLIT,
            model_file_name=model_file_name,
            collective=collective,
        )


class XGBVerticalRecipe(_HistogramRecipe):
    """Vertical federated XGBoost (NVFlare's ``XGBVerticalRecipe``): the sites hold other
    columns of the same rows (aligned first with ``ember.recipes.DhPSIRecipe``); only
    ``label_owner`` has the labels and it is rank 0 (``client_ranks`` may order the rest;
    default: by name). Column-split training (``data_split_mode=1``) gives the model of the
    pooled columns; every site gets the trees, whose splits name other sites' features.

    Each site's loader builds its matrices with ``data_split_mode=xgb.core.DataSplitMode.COL``
    from its rows of the intersection, in its order; only the label owner passes labels.
    The label owner's model is saved to ``server/<model_file_name>``. ``collective``: as
    for :class:`XGBHorizontalRecipe`.
    """

    def __init__(
        self,
        name: str,
        min_clients: int,
        num_rounds: int,
        label_owner: str,
        early_stopping_rounds: int | None = 3,
        use_gpus: bool = False,
        secure: bool = False,
        client_ranks: dict[str, int] | None = None,
        xgb_params: dict[str, Any] | None = None,
        model_file_name: str = "test.model.json",
        per_site_config: dict[str, dict[str, Any]] | None = None,
        collective: str = "ember",
    ) -> None:
        owner = str(check_str("label_owner", label_owner))
        if isinstance(per_site_config, dict) and owner not in per_site_config:
            raise RecipeArgumentError(
                f"label_owner {owner!r} must be one of the per_site_config sites "
                f"({', '.join(per_site_config)})"
            )
        if client_ranks:
            if isinstance(client_ranks, dict) and client_ranks.get(owner) != 0:
                raise RecipeArgumentError(
                    f"label_owner {owner!r} must have rank 0 in client_ranks (XGBoost's "
                    f"column split takes labels from rank 0), got {client_ranks}"
                )
        elif isinstance(per_site_config, dict):
            order = [owner, *sorted(s for s in per_site_config if s != owner)]
            client_ranks = {site: rank for rank, site in enumerate(order)}
        self.label_owner = owner
        self._build(
            name=name,
            min_clients=min_clients,
            num_rounds=num_rounds,
            early_stopping_rounds=early_stopping_rounds,
            use_gpus=use_gpus,
            secure=secure,
            client_ranks=client_ranks,
            xgb_params=xgb_params,
            per_site_config=per_site_config,
            data_split_mode=COLUMN_SPLIT,
            model_file_name=model_file_name,
            collective=collective,
        )
