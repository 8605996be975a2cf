"""XGBoost models as JSON documents: what bagging and cyclic training pass around."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

MODEL_KEY = "model_data"
"""Where a task or result carries a model (XGBoost JSON bytes, as a uint8 array)."""


def to_params(model_json: bytes) -> dict[str, np.ndarray]:
    """A model's JSON as FLModel params (bytes travel as one array)."""
    return {MODEL_KEY: np.frombuffer(model_json, dtype=np.uint8).copy()}


def from_params(params: dict[str, Any] | None) -> bytes | None:
    """The model JSON in ``params`` (None when it carries none)."""
    if not params or MODEL_KEY not in params:
        return None
    return bytes(np.asarray(params[MODEL_KEY], dtype=np.uint8).tobytes())


def _booster(model: dict[str, Any]) -> dict[str, Any]:
    booster: dict[str, Any] = model["learner"]["gradient_booster"]["model"]
    return booster


def append_trees(model: dict[str, Any] | None, update: dict[str, Any]) -> dict[str, Any]:
    """``model`` with ``update``'s trees appended as one more boosting iteration
    (NVFlare's ``update_model``); the update itself when there is no model yet."""
    if model is None:
        return update
    base, add = _booster(model), _booster(update)
    base_params, add_params = base["gbtree_model_param"], add["gbtree_model_param"]
    if base_params["num_parallel_tree"] != add_params["num_parallel_tree"]:
        raise ValueError(
            "every site must grow the same number of parallel trees per round: "
            f"{base_params['num_parallel_tree']} != {add_params['num_parallel_tree']}"
        )
    start, count = int(base_params["num_trees"]), int(add_params["num_trees"])
    for i, tree in enumerate(add["trees"][:count]):
        tree["id"] = start + i
        base["trees"].append(tree)
    base["tree_info"].extend(add["tree_info"][:count])
    base["iteration_indptr"].append(start + count)
    base_params["num_trees"] = str(start + count)
    return model


def mask_sum_hessian(model: dict[str, Any]) -> None:
    """Replace each node's sum of Hessians with 1 (they reveal how many of a site's rows
    reach the node); predictions do not use them."""
    for tree in _booster(model).get("trees", []):
        if "sum_hessian" in tree:
            tree["sum_hessian"] = [1.0] * len(tree["sum_hessian"])


def dumps(model: dict[str, Any]) -> bytes:
    return json.dumps(model).encode("utf-8")
