"""Additions to any recipe: experiment tracking and cross-site evaluation."""

from __future__ import annotations

from ember.recipes.base import Recipe
from ember.recipes.validation import RecipeArgumentError

TRACKING_TYPES = ("tensorboard",)
CROSS_SITE_EVAL = "ember.runtime.controllers.cross_site_eval:CrossSiteEvalController"


def add_experiment_tracking(recipe: Recipe, tracking_type: str = "tensorboard") -> Recipe:
    """Write what scripts log (``SummaryWriter``, ``flare.log``) to TensorBoard event files
    under ``server/tb_events/<site>/`` in the result workspace."""
    if tracking_type not in TRACKING_TYPES:
        raise RecipeArgumentError(
            f"tracking_type must be one of {list(TRACKING_TYPES)}, got {tracking_type!r}"
        )
    recipe.job.tracking = tracking_type
    return recipe


def add_cross_site_evaluation(recipe: Recipe) -> Recipe:
    """After training, every site validates the global model and every other site's model;
    results land in ``server/cross_site_eval/cross_val_results.json``."""
    if any(w["target"] == CROSS_SITE_EVAL for w in recipe.job.workflows):
        raise RecipeArgumentError("cross-site evaluation is already added to this recipe")
    recipe.job.workflows.append(
        {"target": CROSS_SITE_EVAL, "args": {"min_clients": recipe.job.min_clients}}
    )
    return recipe
