"""What the XGBoost recipes share: the site script, per-site data loaders, parameter checks."""

from __future__ import annotations

import json
from typing import Any

from ember.recipes import (
    APP_DIR,
    ClientApp,
    JobFile,
    RecipeArgumentError,
    check_int,
    component_spec,
)
from ember_xgboost.data_loader import XGBDataLoader
from ember_xgboost.site import SITE_SCRIPT, SITE_SCRIPT_SOURCE

TUNNEL_SITE_WORKFLOW = {"target": "ember.site_workflows:TunnelSiteLink"}
DEFAULT_XGB_PARAMS = {
    "max_depth": 8,
    "eta": 0.1,
    "objective": "binary:logistic",
    "eval_metric": "auc",
    "tree_method": "hist",
    "nthread": 16,
}


def site_files() -> dict[str, JobFile]:
    return {f"{APP_DIR}/{SITE_SCRIPT}": SITE_SCRIPT_SOURCE}


def client(histogram: bool) -> ClientApp:
    """Histogram-based training: each site trains in its own process (one XGBoost
    communicator per process), connected through the job's tunnel."""
    return ClientApp(
        script=f"{APP_DIR}/{SITE_SCRIPT}",
        launch_external_process=histogram,
        site_workflow=dict(TUNNEL_SITE_WORKFLOW) if histogram else None,
    )


def data_loaders(
    per_site_config: Any, files: dict[str, JobFile], extra_keys: tuple[str, ...] = ()
) -> dict[str, dict[str, Any]]:
    """``{site: {"path", "args"}}`` of each site's ``data_loader`` (bundling its module)."""
    if per_site_config is None:
        raise RecipeArgumentError(
            "per_site_config is required: each site needs a data loader, e.g. "
            "per_site_config={'site-1': {'data_loader': MyLoader(...)}, ...}"
        )
    if not isinstance(per_site_config, dict) or not per_site_config:
        raise RecipeArgumentError(
            "per_site_config must map site names to {'data_loader': ...}, got "
            f"{per_site_config!r}"
        )
    out: dict[str, dict[str, Any]] = {}
    for site, config in per_site_config.items():
        if not isinstance(site, str) or not isinstance(config, dict):
            raise RecipeArgumentError(
                f"per_site_config[{site!r}] must be a dict with a 'data_loader', got {config!r}"
            )
        extra = set(config) - {"data_loader", *extra_keys}
        if extra:
            allowed = ", ".join(repr(k) for k in ("data_loader", *extra_keys))
            raise RecipeArgumentError(
                f"per_site_config[{site!r}] has unknown keys {sorted(extra)} (it takes {allowed})"
            )
        if "data_loader" not in config:
            raise RecipeArgumentError(f"per_site_config for {site!r} must include 'data_loader'")
        out[site], _ = component_spec(
            f"per_site_config[{site!r}]['data_loader']",
            config["data_loader"],
            XGBDataLoader,
            files,
            "ember_xgboost.XGBDataLoader",
        )
    return out


def check_xgb_params(xgb_params: Any) -> dict[str, Any]:
    if xgb_params is None:
        return dict(DEFAULT_XGB_PARAMS)
    if not isinstance(xgb_params, dict) or not all(isinstance(k, str) for k in xgb_params):
        raise RecipeArgumentError(
            f"xgb_params must be a dict of XGBoost parameters, got {xgb_params!r}"
        )
    try:
        json.dumps(xgb_params, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise RecipeArgumentError(f"xgb_params must hold JSON values: {exc}") from None
    return dict(xgb_params)


def check_min_clients(min_clients: Any, sites: dict[str, Any]) -> int:
    value = check_int("min_clients", min_clients, 1)
    if value > len(sites):
        raise RecipeArgumentError(
            f"min_clients={value} but per_site_config gives data loaders for only "
            f"{len(sites)} sites ({', '.join(sites)})"
        )
    return value
