"""Recipes: jobs described in Python, and the building blocks of a recipe plugin.

Users build a recipe and run it (``FedAvgRecipe(framework=...)``, ``NumpyFedAvgRecipe``,
``add_cross_site_evaluation``, ``add_experiment_tracking``); framework packages add theirs
(``ember recipe list``). A plugin's recipe subclasses :class:`FedAvgRecipe` (the unified
base: one set of parameters, inherited through ``**kwargs``) or :class:`Recipe` (any
workflow: check the arguments with the ``check_*`` functions, make the client app with
:func:`client_app`, the model with :func:`get_framework`, and end with
:meth:`Recipe.assemble`). The server-side contract is :mod:`ember.controllers`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ember.job.definition import APP_DIR, ClientApp, JobDefinition, JobFile
from ember.recipes.base import Recipe, recipe_parameters
from ember.recipes.client_apps import client_app
from ember.recipes.components import bundle_module, component_spec
from ember.recipes.cross_site_eval import NumpyCrossSiteEvalRecipe
from ember.recipes.cyclic import CyclicRecipe
from ember.recipes.fed_task import FedTaskRecipe
from ember.recipes.fedavg import FEDAVG_CONTROLLER, FedAvgRecipe, NumpyFedAvgRecipe
from ember.recipes.fedavg_lr import FedAvgLrRecipe
from ember.recipes.fedprox import FEDPROX_MU, FedProxRecipe, check_fedprox_mu
from ember.recipes.framework import (
    Framework,
    ModelSetup,
    NumpyFramework,
    bundle_checkpoint,
    get_framework,
    model_factory,
)
from ember.recipes.helpers import (
    add_cross_site_evaluation,
    add_experiment_tracking,
    add_final_global_evaluation,
)
from ember.recipes.validation import (
    RecipeArgumentError,
    check_choice,
    check_class_args,
    check_int,
    check_job_name,
    check_optional_int,
    check_params_format,
    check_regex,
    check_str,
    check_weights,
)

if TYPE_CHECKING:
    from ember.psi import PSIContext, PSIDataLoader
    from ember.recipes.fedstats import FedStatsRecipe, StatsOutputs
    from ember.recipes.psi import DhPSIRecipe

# imported on first use: private set intersection (cryptography) and federated statistics
# cost a small job more than its own run, and most jobs use neither
_LAZY = {
    "PSIContext": "ember.psi",
    "PSIDataLoader": "ember.psi",
    "DhPSIRecipe": "ember.recipes.psi",
    "FedStatsRecipe": "ember.recipes.fedstats",
    "StatsOutputs": "ember.recipes.fedstats",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ember.recipes' has no attribute {name!r}")


__all__ = [
    "APP_DIR",
    "FEDAVG_CONTROLLER",
    "FEDPROX_MU",
    "ClientApp",
    "CyclicRecipe",
    "DhPSIRecipe",
    "FedAvgLrRecipe",
    "FedAvgRecipe",
    "FedProxRecipe",
    "FedStatsRecipe",
    "FedTaskRecipe",
    "Framework",
    "JobDefinition",
    "JobFile",
    "ModelSetup",
    "NumpyCrossSiteEvalRecipe",
    "NumpyFedAvgRecipe",
    "NumpyFramework",
    "PSIContext",
    "PSIDataLoader",
    "Recipe",
    "RecipeArgumentError",
    "StatsOutputs",
    "add_cross_site_evaluation",
    "add_experiment_tracking",
    "add_final_global_evaluation",
    "bundle_checkpoint",
    "bundle_module",
    "check_choice",
    "check_class_args",
    "check_fedprox_mu",
    "check_int",
    "check_job_name",
    "check_optional_int",
    "check_params_format",
    "check_regex",
    "check_str",
    "check_weights",
    "client_app",
    "component_spec",
    "get_framework",
    "model_factory",
    "recipe_parameters",
]
