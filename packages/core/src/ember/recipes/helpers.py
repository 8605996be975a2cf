"""Additions to any recipe: experiment tracking, cross-site and final global evaluation."""

from __future__ import annotations

import numbers
from typing import Any

from ember.recipes.base import Recipe
from ember.recipes.validation import RecipeArgumentError
from ember.runtime.trackers import TrackingError, make_spec, tracking_specs

CROSS_SITE_EVAL = "ember.runtime.controllers.cross_site_eval:CrossSiteEvalController"


def add_experiment_tracking(
    recipe: Recipe,
    tracking_type: str = "tensorboard",
    tracking_config: dict[str, Any] | None = None,
    client_side: bool = False,
    server_side: bool = True,
) -> Recipe:
    """Track the job's metrics with TensorBoard, MLflow or Weights & Biases (NVFlare's
    ``add_experiment_tracking``; docs/tracking.md).

    ``server_side`` (the default): the server writes, under its folder, one run per site with
    what the site's scripts log (``ember.client.tracking``'s ``SummaryWriter``,
    ``MLflowWriter``, ``WandBWriter``, or ``flare.log``), streamed to it as they run, and a
    ``global`` run with each round's aggregated metrics, each site's as ``<site>/<name>``,
    the job's parameters and the final model. ``client_side``: each site writes what its own
    scripts log in its own folder; with ``server_side=False`` too, nothing leaves the site.

    ``tracking_config``: for ``"tensorboard"``, ``tb_folder`` (default ``tb_events``); for
    ``"mlflow"``, ``tracking_uri`` (default a file store, ``mlruns/`` in the folder),
    ``experiment_name`` (default the job's name), ``run_name``, ``experiment_tags``,
    ``run_tags``, ``artifact_location``; for ``"wandb"``, ``mode`` (default ``"offline"``:
    nothing leaves the machine), ``project`` (default the job's name), ``entity``, ``group``,
    ``job_type``, ``name``, ``tags``, ``notes``, ``config``. NVFlare's nested ``kw_args``
    (or ``kwargs``) dict is read as these keys. Call it once per tracking type; each library
    is an extra of ember-core (``tracking``, ``mlflow``, ``wandb``), needed where it writes.
    """
    if not isinstance(recipe, Recipe):
        raise RecipeArgumentError(f"recipe must be an ember Recipe, got {type(recipe).__name__}")
    try:
        spec = make_spec(tracking_type, tracking_config, client_side, server_side)
        specs = tracking_specs(recipe.job.tracking)
    except TrackingError as exc:
        raise RecipeArgumentError(str(exc)) from exc
    if any(s.type == spec.type for s in specs):
        raise RecipeArgumentError(
            f"{spec.type} tracking is already added to this recipe; add each tracking type once"
        )
    recipe.job.tracking = [s.to_dict() for s in [*specs, spec]]
    return recipe


def add_cross_site_evaluation(
    recipe: Recipe,
    submit_model_timeout: float | None = None,
    validation_timeout: float | None = None,
    participating_clients: list[str] | None = None,
) -> Recipe:
    """After training, every site submits its own model, then validates the global model
    (``SRV_global_model``) and every submitted one (NVFlare's ``add_cross_site_evaluation``).

    ``participating_clients`` (None: every alive site) are the only sites asked to submit
    a model and to validate: the matrix has a row, and a column, for each of them only.
    ``submit_model_timeout`` and ``validation_timeout`` are the seconds a site may take to
    answer each ``submit_model`` and ``validate`` task (None: the job's ``runtime.task_timeout``).
    Results land in ``server/cross_site_eval/``: ``cross_val_results.json``,
    ``cross_val_matrix.json`` and ``cross_val_matrix.png`` (docs/evaluation.md).
    """
    args = _evaluation_args(recipe, participating_clients, validation_timeout)
    args["submit_model_timeout"] = check_timeout("submit_model_timeout", submit_model_timeout)
    recipe.job.workflows.append({"target": CROSS_SITE_EVAL, "args": args})
    return recipe


def add_final_global_evaluation(
    recipe: Recipe,
    participating_clients: list[str] | None = None,
    validation_timeout: float | None = None,
) -> Recipe:
    """After training, the participating sites (None: every alive site) validate the final
    global model only: no site submits its own model (NVFlare's
    ``add_final_global_evaluation``). Results are written as by
    :func:`add_cross_site_evaluation`, with one column, ``SRV_global_model``; a job whose
    workflows leave no global model fails, saying so."""
    args = _evaluation_args(recipe, participating_clients, validation_timeout)
    args["submit_models"] = False
    args["require_global"] = True
    recipe.job.workflows.append({"target": CROSS_SITE_EVAL, "args": args})
    return recipe


def _evaluation_args(
    recipe: Recipe, participating_clients: Any, validation_timeout: Any
) -> dict[str, Any]:
    if not isinstance(recipe, Recipe):
        raise RecipeArgumentError(f"recipe must be an ember Recipe, got {type(recipe).__name__}")
    if any(w["target"] == CROSS_SITE_EVAL for w in recipe.job.workflows):
        raise RecipeArgumentError(
            "cross-site evaluation is already added to this recipe (add_cross_site_evaluation "
            "and add_final_global_evaluation each add it; use one, once)"
        )
    if not recipe.job.workflows:
        raise RecipeArgumentError("the recipe has no workflow to evaluate the model of")
    args: dict[str, Any] = {
        "min_clients": recipe.job.min_clients,
        "participating_clients": check_participating_clients(participating_clients),
        "validation_timeout": check_timeout("validation_timeout", validation_timeout),
    }
    task_meta = recipe.job.workflows[0].get("args", {}).get("task_meta")
    if task_meta:
        args["task_meta"] = dict(task_meta)
    return args


def check_timeout(name: str, value: Any) -> float | None:
    """None (the job's ``runtime.task_timeout``) or a number of seconds > 0."""
    if value is None:
        return None
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not float(value) > 0:
        raise RecipeArgumentError(
            f"{name} must be a number of seconds > 0 (or None: the job's runtime.task_timeout), "
            f"got {value!r}"
        )
    return float(value)


def check_participating_clients(value: Any) -> list[str] | None:
    """None (every site) or a non-empty list of distinct site names."""
    if value is None:
        return None
    if not isinstance(value, list | tuple) or not all(isinstance(s, str) and s for s in value):
        raise RecipeArgumentError(
            "participating_clients must be a list of site names, e.g. ['site-1', 'site-2'] "
            f"(or None: every site), got {value!r}"
        )
    if not value:
        raise RecipeArgumentError(
            "participating_clients must name at least one site; use None for every site"
        )
    repeated = sorted({s for s in value if list(value).count(s) > 1})
    if repeated:
        raise RecipeArgumentError(
            f"participating_clients names {', '.join(repeated)} more than once"
        )
    return list(value)
