"""What each NVFlare 2.7 public name becomes in Ember: the data behind ``ember migrate-nvflare``.

``NAMES`` maps a dotted NVFlare name to ``"ember.module:Attr.Path"`` or to an :class:`Unmapped`
with the reason. ``MODULES`` maps whole modules; a name under a mapped module maps when the
Ember module has it. ``KEYWORDS`` renames recipe keyword arguments that differ.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType


@dataclass(frozen=True)
class Unmapped:
    """An NVFlare name with no Ember equivalent, and why."""

    reason: str


Target = str | Unmapped

_NO_POC = Unmapped("Ember has no PocEnv yet")
_NO_PROD = Unmapped("Ember has no ProdEnv yet")

MODULES: dict[str, str] = {
    "nvflare.client": "ember.client",
    "nvflare.client.tracking": "ember.client.tracking",
    "nvflare.client.config": "ember.client",
}

# Ember's ember.client exports these; NVFlare exposes them from several modules.
_CLIENT_MODEL = {
    "FLModel": "ember.client:FLModel",
    "ParamsType": "ember.client:ParamsType",
}
_META = ("NUM_STEPS_CURRENT_ROUND", "CURRENT_ROUND", "TOTAL_ROUNDS", "JOB_ID", "SITE_NAME")
_SAME_MODULE = ("nvflare.app_common.np.recipes", "nvflare.app_common.np.recipes.fedavg")
_PT_RECIPES = ("nvflare.app_opt.pt.recipes", "nvflare.app_opt.pt.recipes.fedavg")
_TF_RECIPES = (
    ("fedavg", "FedAvgRecipe"),
    ("cyclic", "CyclicRecipe"),
    ("fedopt", "FedOptRecipe"),
    ("scaffold", "ScaffoldRecipe"),
)
_PT_MORE = (
    ("cyclic", "CyclicRecipe"),
    ("fedeval", "FedEvalRecipe"),
    ("fedopt", "FedOptRecipe"),
    ("fedprox", "FedProxRecipe"),
    ("scaffold", "ScaffoldRecipe"),
    ("swarm", "SwarmLearningRecipe"),
)

NAMES: dict[str, Target] = {
    # Client API, its tracking writers and config enums.
    **{f"nvflare.client.{k}": v for k, v in _CLIENT_MODEL.items()},
    **{f"nvflare.app_common.abstract.fl_model.{k}": v for k, v in _CLIENT_MODEL.items()},
    "nvflare.client.config.TransferType": "ember.client:TransferType",
    "nvflare.client.config.ExchangeFormat": Unmapped(
        "Ember infers the exchange format from the recipe (numpy arrays or framework tensors)"
    ),
    "nvflare.client.tracking.WandBWriter": Unmapped("Ember tracks to TensorBoard only"),
    "nvflare.client.tracking.MLflowWriter": Unmapped("Ember tracks to TensorBoard only"),
    "nvflare.client.AnalyticsDataType": Unmapped(
        "use flare.log(key, value, data_type) with 'scalar' or 'scalars'"
    ),
    "nvflare.client.evaluate": Unmapped("Ember has no @flare.evaluate decorator yet"),
    "nvflare.client.train": Unmapped("Ember has no @flare.train decorator yet"),
    "nvflare.client.IPCAgent": Unmapped("Ember's external processes need no IPC agent"),
    "nvflare.client.shutdown": Unmapped("Ember shuts the client down when the job ends"),
    # Metadata keys: NVFlare's FLMetaKey (and MetaKey, its subclass) -> ember.client.MetaKey.
    **{f"nvflare.apis.fl_constant.FLMetaKey.{k}": f"ember.client:MetaKey.{k}" for k in _META},
    **{
        f"nvflare.app_common.abstract.fl_model.MetaKey.{k}": f"ember.client:MetaKey.{k}"
        for k in _META
    },
    # Recipe API: envs, Run, helpers.
    "nvflare.recipe.SimEnv": "ember:SimEnv",
    "nvflare.recipe.sim_env.SimEnv": "ember:SimEnv",
    "nvflare.recipe.Run": "ember:Run",
    "nvflare.recipe.run.Run": "ember:Run",
    "nvflare.recipe.PocEnv": _NO_POC,
    "nvflare.recipe.poc_env.PocEnv": _NO_POC,
    "nvflare.recipe.ProdEnv": _NO_PROD,
    "nvflare.recipe.prod_env.ProdEnv": _NO_PROD,
    "nvflare.recipe.FedAvgRecipe": "ember.recipes:FedAvgRecipe",
    "nvflare.recipe.fedavg.FedAvgRecipe": "ember.recipes:FedAvgRecipe",
    "nvflare.recipe.spec.Recipe": "ember:Recipe",
    "nvflare.recipe.add_experiment_tracking": "ember.recipes:add_experiment_tracking",
    "nvflare.recipe.utils.add_experiment_tracking": "ember.recipes:add_experiment_tracking",
    "nvflare.recipe.add_cross_site_evaluation": "ember.recipes:add_cross_site_evaluation",
    "nvflare.recipe.utils.add_cross_site_evaluation": "ember.recipes:add_cross_site_evaluation",
    # Numpy recipes and constants.
    **{f"{m}.NumpyFedAvgRecipe": "ember.recipes:NumpyFedAvgRecipe" for m in _SAME_MODULE},
    "nvflare.app_common.np.recipes.NumpyCrossSiteEvalRecipe": Unmapped(
        "Ember has no standalone cross-site evaluation recipe; use add_cross_site_evaluation"
    ),
    "nvflare.app_common.np.constants.NPConstants.NUMPY_KEY": "ember.client:NUMPY_KEY",
    # PyTorch recipes: ember-pt (see docs/migrating-from-nvflare.md).
    **{f"{m}.FedAvgRecipe": "ember_pt.recipes:FedAvgRecipe" for m in _PT_RECIPES},
    **{
        f"nvflare.app_opt.pt.recipes{sub}.{cls}": f"ember_pt.recipes:{cls}"
        for module, cls in _PT_MORE
        for sub in ("", f".{module}")
    },
    "nvflare.app_opt.pt.recipes.FedAvgRecipeWithHE": Unmapped(
        "Ember has no homomorphic-encryption recipe"
    ),
    "nvflare.app_opt.pt.fedproxloss.PTFedProxLoss": "ember_pt.fedprox:PTFedProxLoss",
    "nvflare.app_opt.pt.scaffold.PTScaffoldHelper": "ember_pt.scaffold:PTScaffoldHelper",
    "nvflare.app_opt.pt.scaffold.get_lr_values": "ember_pt.scaffold:get_lr_values",
    "nvflare.app_opt.pt.tensor_downloader.add_tensors": "ember_pt.tensor_downloader:add_tensors",
    "nvflare.app_opt.pt.tensor_downloader.download_tensors": (
        "ember_pt.tensor_downloader:download_tensors"
    ),
    # TensorFlow recipes and helpers: ember-tf (see docs/tensorflow.md).
    **{
        f"nvflare.app_opt.tf.recipes{sub}.{cls}": f"ember_tf.recipes:{cls}"
        for module, cls in _TF_RECIPES
        for sub in ("", f".{module}")
    },
    "nvflare.app_opt.tf.fedprox_loss.TFFedProxLoss": "ember_tf.fedprox:TFFedProxLoss",
    "nvflare.app_opt.tf.scaffold.TFScaffoldHelper": "ember_tf.scaffold:TFScaffoldHelper",
    "nvflare.app_opt.tf.scaffold.get_lr_values": "ember_tf.scaffold:get_lr_values",
}

# Keyword arguments renamed on calls to these (Ember) targets: {old: new}.
KEYWORDS: dict[str, dict[str, str]] = {
    "ember.recipes.NumpyFedAvgRecipe": {"initial_model": "model"},
    # NVFlare's TF recipes took initial_model before 2.7.2's model=
    **{f"ember_tf.recipes.{cls}": {"initial_model": "model"} for _, cls in _TF_RECIPES},
}


def module_of(target: str) -> tuple[str, str]:
    """``"ember.client:MetaKey.X"`` -> ``("ember.client", "MetaKey.X")``."""
    module, _, path = target.partition(":")
    return module, path


def _import(module: str) -> ModuleType | None:
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def resolve(qualname: str) -> Target | None:
    """The Ember target of a dotted NVFlare name, an :class:`Unmapped`, or None (not known)."""
    if qualname in NAMES:
        return NAMES[qualname]
    if qualname in MODULES:
        return MODULES[qualname] + ":"
    parent, _, attr = qualname.rpartition(".")
    if parent in MODULES:
        module = _import(MODULES[parent])
        if module is not None and hasattr(module, attr):
            return f"{MODULES[parent]}:{attr}"
        return Unmapped(f"{MODULES[parent]} has no {attr}")
    return None
