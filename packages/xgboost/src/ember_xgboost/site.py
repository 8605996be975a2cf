"""The site side of federated XGBoost: the body of the script the recipes bundle.

Histogram-based training runs in the site's own process (XGBoost's communicator is one per
process), its worker connected to the site's loopback endpoint of the job's tunnel. Tree-
based bagging and cyclic training need no communicator: each round is one local
``Booster.update`` on the model the server sent.
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np

from ember.errors import EmberError
from ember.plugins import load_dotted
from ember.tunnel import ADDRESS_META, TLS_META
from ember_xgboost import model as xgb_model
from ember_xgboost.data_loader import COLUMN_SPLIT, XGBDataLoader

SITE_SCRIPT = "xgboost_site.py"
#: the site script: the same bytes in every job (a site without custom code trusts its hash)
SITE_SCRIPT_SOURCE = b'''"""Federated XGBoost, this site's side (written by ember-xgboost)."""

from ember_xgboost.site import run_site

run_site()
'''


class XGBSiteError(EmberError, RuntimeError):
    """A site could not run its part of a federated XGBoost job."""


def _loader(spec: Any, site: str, rank: int, split_mode: int) -> XGBDataLoader:
    if not isinstance(spec, dict) or not isinstance(spec.get("path"), str):
        raise XGBSiteError(f"{site} got no data loader in its task; give one in per_site_config")
    cls = load_dotted(spec["path"])
    if not (isinstance(cls, type) and issubclass(cls, XGBDataLoader)):
        raise XGBSiteError(f"{spec['path']} is not an ember_xgboost.XGBDataLoader")
    loader: XGBDataLoader = cls(**dict(spec.get("args") or {}))
    loader.initialize(site, rank, split_mode)
    return loader


def run_site() -> None:
    """Answer the server's XGBoost tasks until the job ends."""
    import ember.client as flare

    flare.init()
    site = flare.get_site_name()
    while flare.is_running():
        task = flare.receive()
        if task is None:
            break
        mode = task.meta.get("xgb_mode")
        if mode == "histogram":
            flare.send(_histogram(task, site))
        elif mode in ("bagging", "cyclic"):
            flare.send(_tree(task, site, str(mode)))
        else:
            raise XGBSiteError(f"{site} got a task for unknown XGBoost mode {mode!r}")


class _LogRounds:
    """An XGBoost callback sending each round's evaluation to the job's tracking."""

    def __new__(cls) -> Any:
        import ember.client as flare
        import xgboost as xgb

        class LogRounds(xgb.callback.TrainingCallback):
            def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
                for data, metrics in evals_log.items():
                    for metric, values in metrics.items():
                        flare.log(f"{data}_{metric}", float(values[-1]), global_step=epoch)
                return False

        return LogRounds()


def _histogram(task: Any, site: str) -> Any:
    import ember.client as flare
    from ember_xgboost.support import require_federated

    meta = task.meta
    split_mode = int(meta["data_split_mode"])
    xgb = require_federated(column_split=split_mode == COLUMN_SPLIT)
    from xgboost import collective

    rank, world = int(meta["rank"]), int(meta["world_size"])
    address = meta.get(ADDRESS_META)
    if not address:
        raise XGBSiteError(
            f"{site}'s task names no tunnel address: the job's client app must use the "
            "ember.site_workflows:TunnelSiteLink site workflow"
        )
    params = dict(meta.get("xgb_params") or {})
    if meta.get("use_gpus"):
        params["device"] = f"cuda:{rank}"
    loader = _loader(meta.get("data_loader"), site, rank, split_mode)
    evals_result: dict[str, Any] = {}
    tls = meta.get(TLS_META) or {}
    secure = (
        {
            "federated_server_cert_path": tls["server_cert"],
            "federated_client_key_path": tls["client_key"],
            "federated_client_cert_path": tls["client_cert"],
        }
        if tls
        else {}
    )
    with collective.CommunicatorContext(
        dmlc_communicator="federated",
        federated_server_address=str(address),
        federated_world_size=world,
        federated_rank=rank,
        **secure,
    ):
        train, valid = loader.load_data()
        started = time.perf_counter()
        booster = xgb.train(
            params,
            train,
            num_boost_round=int(meta["num_rounds"]),
            evals=[(train, "train"), (valid, "valid")],
            early_stopping_rounds=meta.get("early_stopping_rounds"),
            evals_result=evals_result,
            verbose_eval=False,
            callbacks=[_LogRounds()],
        )
        train_seconds = time.perf_counter() - started
        model_json = bytes(booster.save_raw("json"))
    final = {
        f"{data}_{metric}": float(values[-1])
        for data, metrics in evals_result.items()
        for metric, values in metrics.items()
    }
    return flare.FLModel(
        params=xgb_model.to_params(model_json) if rank == 0 else {},
        metrics=final,
        meta={
            "evals_result": json.dumps(evals_result),
            "num_boosted_rounds": int(booster.num_boosted_rounds()),
            "best_iteration": int(getattr(booster, "best_iteration", -1)),
            "train_seconds": train_seconds,
        },
    )


def tree_params(train_args: dict[str, Any], mode: str, lr_scale: float) -> dict[str, Any]:
    """The booster parameters of one site's tree-based round (NVFlare's, with the learning
    rate shared out: bagging divides it by ``num_client_bagging`` or scales it by the site's
    ``lr_scale``)."""
    lr = float(train_args["learning_rate"])
    if mode == "bagging":
        lr = (
            lr * lr_scale
            if train_args["lr_mode"] == "scaled"
            else lr / train_args["num_client_bagging"]
        )
    params = {
        "objective": train_args["objective"],
        "eta": lr,
        "max_depth": train_args["max_depth"],
        "eval_metric": train_args["eval_metric"],
        "nthread": train_args["nthread"],
        "num_parallel_tree": train_args["num_local_parallel_tree"],
        "subsample": train_args["local_subsample"],
        "tree_method": train_args["tree_method"],
    }
    if "seed" in train_args:
        params["seed"] = train_args["seed"]
    return params


def tree_round(
    train: Any, params: dict[str, Any], mode: str, model_json: bytes | None
) -> tuple[bytes, Any]:
    """One site's tree-based round: ``(what it sends, the booster)``. From no model it
    trains one round from scratch and sends it whole; otherwise it adds one round to the
    global model and sends only the new trees (bagging) or the whole model (cyclic). The
    sum of Hessians in sent trees is masked."""
    import xgboost as xgb

    if model_json is None:
        booster = xgb.train(params, train, num_boost_round=1)
        sent = booster
    else:
        booster = xgb.Booster(params, model_file=bytearray(model_json))
        booster.update(train, booster.num_boosted_rounds())
        rounds = booster.num_boosted_rounds()
        sent = booster[rounds - 1 : rounds] if mode == "bagging" else booster
    document = json.loads(bytes(sent.save_raw("json")))
    xgb_model.mask_sum_hessian(document)
    return xgb_model.dumps(document), booster


def _tree(task: Any, site: str, mode: str) -> Any:
    import ember.client as flare

    meta = task.meta
    train_args = dict(meta["train_args"])
    loader = _loader(meta.get("data_loader"), site, 0, 0)
    train, valid = loader.load_data()
    params = tree_params(train_args, mode, float(meta.get("lr_scale", 1.0)))
    sent, booster = tree_round(train, params, mode, xgb_model.from_params(task.params))
    evaluation = booster.eval_set([(valid, "valid")], iteration=booster.num_boosted_rounds() - 1)
    metrics = {
        f"valid_{name.partition('-')[2]}": float(value)
        for name, value in (part.split(":") for part in str(evaluation).split("\t")[1:])
    }
    del booster
    return flare.FLModel(
        params={xgb_model.MODEL_KEY: np.frombuffer(sent, np.uint8).copy()}, metrics=metrics
    )
