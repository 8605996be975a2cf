"""What each NVFlare 2.7 public name becomes in Ember: the data behind ``ember migrate-nvflare``.

``NAMES`` maps a dotted NVFlare name to ``"ember.module:Attr.Path"`` or to an :class:`Unmapped`
with the reason. ``MODULES`` maps whole modules; a name under a mapped module maps when the
Ember module has it. ``KEYWORDS`` renames recipe keyword arguments that differ.
``COMPONENTS`` says what each component class of a config-based NVFlare job (its
``config_fed_server.json``/``config_fed_client.json``) becomes in Ember, if anything.
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

_NO_FEDJOB = Unmapped(
    "Ember has no FedJob API: build the job with a recipe (`ember recipe list`, e.g. "
    "ember.recipes.FedAvgRecipe) and run it with recipe.execute(env)"
)

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
_SKLEARN_RECIPES = (
    ("fedavg", "SklearnFedAvgRecipe"),
    ("kmeans", "KMeansFedAvgRecipe"),
    ("svm", "SVMFedAvgRecipe"),
)
_STATS_SPEC = ("Statistics", "Feature", "DataType", "Histogram", "Bin", "HistogramType")
_PT_MORE = (
    ("cyclic", "CyclicRecipe"),
    ("fedeval", "FedEvalRecipe"),
    ("fedopt", "FedOptRecipe"),
    ("fedprox", "FedProxRecipe"),
    ("scaffold", "ScaffoldRecipe"),
    ("swarm", "SwarmLearningRecipe"),
)

_FILTERS = (
    ("exclude_vars", "ExcludeVars"),
    ("percentile_privacy", "PercentilePrivacy"),
    ("svt_privacy", "SVTPrivacy"),
)

_FRAMEWORK_TYPE = (
    "nvflare.job_config.script_runner.FrameworkType",
    "nvflare.fuel.utils.constants.FrameworkType",
)
_FRAMEWORKS = {  # each holds the framework's name, the string Ember's framework= takes
    "NUMPY": "ember.client.formats:NUMPY",
    "PYTORCH": "ember_pt.framework:PyTorchFramework.name",
    "TENSORFLOW": "ember_tf.framework:TensorFlowFramework.name",
}
# NVFlare's SCAFFOLD meta keys: the same strings as Ember's
_SCAFFOLD_KEYS = {
    "SCAFFOLD_CTRL_GLOBAL": "SCAFFOLD_C_GLOBAL",
    "SCAFFOLD_CTRL_DIFF": "SCAFFOLD_C_DIFF",
}

NAMES: dict[str, Target] = {
    # Client API, its tracking writers and config enums.
    **{f"nvflare.client.{k}": v for k, v in _CLIENT_MODEL.items()},
    **{f"nvflare.app_common.abstract.fl_model.{k}": v for k, v in _CLIENT_MODEL.items()},
    "nvflare.client.config.TransferType": "ember.client:TransferType",
    "nvflare.client.config.ExchangeFormat": Unmapped(
        "Ember infers the exchange format from the recipe (numpy arrays or framework tensors)"
    ),
    "nvflare.client.tracking.WandBWriter": "ember.client.tracking:WandBWriter",
    "nvflare.client.tracking.MLflowWriter": "ember.client.tracking:MLflowWriter",
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
    "nvflare.recipe.PocEnv": "ember:PocEnv",
    "nvflare.recipe.poc_env.PocEnv": "ember:PocEnv",
    "nvflare.recipe.ProdEnv": "ember:ProdEnv",
    "nvflare.recipe.prod_env.ProdEnv": "ember:ProdEnv",
    # The unified (framework=...) recipes.
    "nvflare.recipe.FedAvgRecipe": "ember.recipes:FedAvgRecipe",
    "nvflare.recipe.fedavg.FedAvgRecipe": "ember.recipes:FedAvgRecipe",
    # XGBoost: recipes, the data-loader contract
    **{
        f"nvflare.app_opt.xgboost.recipes{sub}.{cls}": f"ember_xgboost.recipes:{cls}"
        for sub, cls in (
            ("", "XGBBaggingRecipe"),
            ("", "XGBHorizontalRecipe"),
            ("", "XGBVerticalRecipe"),
            (".bagging", "XGBBaggingRecipe"),
            (".histogram", "XGBHorizontalRecipe"),
            (".vertical", "XGBVerticalRecipe"),
        )
    },
    "nvflare.app_opt.xgboost.data_loader.XGBDataLoader": "ember_xgboost:XGBDataLoader",
    "nvflare.recipe.CyclicRecipe": "ember.recipes:CyclicRecipe",
    "nvflare.recipe.cyclic.CyclicRecipe": "ember.recipes:CyclicRecipe",
    "nvflare.recipe.cyclic_recipe.CyclicRecipe": "ember.recipes:CyclicRecipe",
    "nvflare.recipe.fedstats.FedStatsRecipe": "ember.recipes:FedStatsRecipe",
    # Private set intersection: the recipe and the loader base class (docs/psi.md)
    "nvflare.app_common.psi.recipes.DhPSIRecipe": "ember.recipes:DhPSIRecipe",
    "nvflare.app_common.psi.recipes.dh_psi.DhPSIRecipe": "ember.recipes:DhPSIRecipe",
    "nvflare.app_common.psi.psi_spec.PSI": "ember.psi:PSIDataLoader",
    # framework=FrameworkType.X: Ember's recipes take the framework's name ("numpy", ...)
    **{f"{m}.{k}": v for m in _FRAMEWORK_TYPE for k, v in _FRAMEWORKS.items()},
    **{
        f"{m}.RAW": Unmapped(
            "Ember has no raw framework: use a framework's recipe, e.g."
            " ember_sklearn.recipes.SklearnFedAvgRecipe"
        )
        for m in _FRAMEWORK_TYPE
    },
    # The Job API: no Ember equivalent, recipes only.
    "nvflare.FedJob": _NO_FEDJOB,
    "nvflare.job_config.api.FedJob": _NO_FEDJOB,
    "nvflare.job_config.base_fed_job.BaseFedJob": _NO_FEDJOB,
    "nvflare.app_opt.pt.job_config.fed_avg.FedAvgJob": _NO_FEDJOB,
    "nvflare.app_opt.tf.job_config.fed_avg.FedAvgJob": _NO_FEDJOB,
    "nvflare.job_config.script_runner.ScriptRunner": Unmapped(
        "Ember recipes run the client script themselves: pass train_script= (and train_args=,"
        " launch_external_process=) to the recipe"
    ),
    # Federated statistics: the generator's spec.
    **{
        f"nvflare.app_common.abstract.statistics_spec.{k}": f"ember.statistics:{k}"
        for k in _STATS_SPEC
    },
    # what a generator's initialize(fl_ctx) receives (get_identity_name() is the site's name)
    "nvflare.apis.fl_context.FLContext": "ember.statistics:StatsContext",
    "nvflare.recipe.spec.Recipe": "ember:Recipe",
    "nvflare.recipe.add_experiment_tracking": "ember.recipes:add_experiment_tracking",
    "nvflare.recipe.utils.add_experiment_tracking": "ember.recipes:add_experiment_tracking",
    "nvflare.recipe.add_cross_site_evaluation": "ember.recipes:add_cross_site_evaluation",
    "nvflare.recipe.utils.add_cross_site_evaluation": "ember.recipes:add_cross_site_evaluation",
    "nvflare.app_common.np.recipes.lr.fedavg.FedAvgLrRecipe": "ember.recipes:FedAvgLrRecipe",
    "nvflare.recipe.FedTaskRecipe": "ember.recipes:FedTaskRecipe",
    "nvflare.recipe.fed_task.FedTaskRecipe": "ember.recipes:FedTaskRecipe",
    "nvflare.recipe.add_final_global_evaluation": "ember.recipes:add_final_global_evaluation",
    "nvflare.recipe.utils.add_final_global_evaluation": (
        "ember.recipes:add_final_global_evaluation"
    ),
    # Numpy recipes and constants.
    **{f"{m}.NumpyFedAvgRecipe": "ember.recipes:NumpyFedAvgRecipe" for m in _SAME_MODULE},
    "nvflare.app_common.np.recipes.NumpyCrossSiteEvalRecipe": (
        "ember.recipes:NumpyCrossSiteEvalRecipe"
    ),
    "nvflare.app_common.np.recipes.cross_site_eval.NumpyCrossSiteEvalRecipe": (
        "ember.recipes:NumpyCrossSiteEvalRecipe"
    ),
    "nvflare.app_common.np.constants.NPConstants.NUMPY_KEY": "ember.client:NUMPY_KEY",
    # PyTorch recipes: ember-pt (see docs/migrating-from-nvflare.md).
    **{f"{m}.FedAvgRecipe": "ember_pt.recipes:FedAvgRecipe" for m in _PT_RECIPES},
    **{
        f"nvflare.app_opt.pt.recipes{sub}.{cls}": f"ember_pt.recipes:{cls}"
        for module, cls in _PT_MORE
        for sub in ("", f".{module}")
    },
    # homomorphic encryption: ember-pt[he] (docs/he.md)
    "nvflare.app_opt.pt.recipes.FedAvgRecipeWithHE": "ember_pt.recipes:FedAvgRecipeWithHE",
    "nvflare.app_opt.pt.recipes.fedavg_he.FedAvgRecipeWithHE": (
        "ember_pt.recipes:FedAvgRecipeWithHE"
    ),
    # privacy filters (docs/privacy.md); recipe.add_client_output_filter & co. keep their names
    **{
        f"nvflare.app_common.filters{sub}.{cls}": f"ember.filters:{cls}"
        for module, cls in _FILTERS
        for sub in ("", f".{module}")
    },
    "nvflare.app_opt.pt.fedproxloss.PTFedProxLoss": "ember_pt.fedprox:PTFedProxLoss",
    **{
        f"nvflare.app_common.app_constant.AlgorithmConstants.{k}": (
            f"ember.runtime.controllers.scaffold:{v}"
        )
        for k, v in _SCAFFOLD_KEYS.items()
    },
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
    # scikit-learn recipes: ember-sklearn (see docs/sklearn.md).
    **{
        f"nvflare.app_opt.sklearn{sub}.{cls}": f"ember_sklearn.recipes:{cls}"
        for module, cls in _SKLEARN_RECIPES
        for sub in ("", ".recipes", f".recipes.{module}")
    },
}

_MODEL = {"initial_model": "model"}  # NVFlare's recipes took initial_model= before model=

# Keyword arguments renamed on calls to these (Ember) targets: {old: new}.
KEYWORDS: dict[str, dict[str, str]] = {
    **{
        f"ember.recipes.{cls}": _MODEL
        for cls in ("FedAvgRecipe", "NumpyFedAvgRecipe", "CyclicRecipe")
    },
    **{f"ember_tf.recipes.{cls}": _MODEL for _, cls in _TF_RECIPES},
    **{
        f"ember_pt.recipes.{cls}": _MODEL
        for cls in (
            *("FedAvgRecipe", "CyclicRecipe", "FedOptRecipe"),
            *("FedProxRecipe", "ScaffoldRecipe", "SwarmLearningRecipe"),
        )
    },
    # NVFlare's FedEvalRecipe: initial_model= (2.7.0) and eval_ckpt= for the weights
    "ember_pt.recipes.FedEvalRecipe": {**_MODEL, "eval_ckpt": "initial_ckpt"},
    # ProdEnv's startup_kit_dir= (2.7.0) is startup_kit_location= (2.7.1 on, and Ember)
    "ember.ProdEnv": {"startup_kit_dir": "startup_kit_location"},
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
    if attr in COMPONENTS and qualname.startswith("nvflare."):
        # a workflow or component class of the Job API (FedJob scripts): what Ember has for it
        return Unmapped(f"Ember has no {attr} component; {COMPONENTS[attr]}")
    return None


# Config-based NVFlare jobs (config_fed_server.json, config_fed_client.json): what each
# component class becomes in Ember, by class name. Such a job is not rewritten: it is ported
# by hand to a recipe script; the report names each component and its Ember counterpart.
_FEDAVG = "ember.recipes.FedAvgRecipe (or ember_pt/ember_tf.recipes.FedAvgRecipe) runs this"
_CSE = "ember.recipes.add_cross_site_evaluation(recipe) does this"
_TRACKING = "ember.recipes.add_experiment_tracking(recipe, 'tensorboard') does this"
_SCRIPT = "the recipe's train_script= (launch_external_process= for a separate process)"
_MODEL_ARGS = "the recipe's model= and initial_ckpt="
COMPONENTS: dict[str, str] = {
    # server workflows
    "ScatterAndGather": _FEDAVG,
    "FedAvg": _FEDAVG,
    "FedAvgController": _FEDAVG,
    "CyclicController": "ember.recipes.CyclicRecipe (or ember_pt/ember_tf's) runs this",
    "CrossSiteModelEval": _CSE,
    "CrossSiteEval": _CSE,
    "ScatterAndGatherScaffold": "ember_pt/ember_tf.recipes.ScaffoldRecipe runs this",
    "Scaffold": "ember_pt/ember_tf.recipes.ScaffoldRecipe runs this",
    "FedOpt": "ember_pt/ember_tf.recipes.FedOptRecipe runs this",
    "PTFedOptModelShareableGenerator": "ember_pt.recipes.FedOptRecipe does this",
    "GlobalModelEval": "ember_pt.recipes.FedEvalRecipe runs this",
    "StatisticsController": "ember.recipes.FedStatsRecipe runs this",
    "StatisticsExecutor": "ember.recipes.FedStatsRecipe runs this (stats_generator=)",
    "DhPSIController": "ember.recipes.DhPSIRecipe runs this",
    "DhPSIWorkFlow": "ember.recipes.DhPSIRecipe runs this",
    "PSIExecutor": "ember.recipes.DhPSIRecipe runs this (local_psi=)",
    "DhPSITaskHandler": "ember.recipes.DhPSIRecipe runs this",
    "FilePSIWriter": "ember.recipes.DhPSIRecipe writes the file (output_path=)",
    "SwarmServerController": "ember_pt.recipes.SwarmLearningRecipe runs this",
    "SwarmClientController": "ember_pt.recipes.SwarmLearningRecipe runs this",
    "FedAvgLR": "ember.recipes.FedAvgLrRecipe runs this",
    "LRModelPersistor": "ember.recipes.FedAvgLrRecipe starts from zeros (num_features=)",
    "CmdTaskController": "ember.recipes.FedTaskRecipe runs this",
    # server components
    "InTimeAccumulateWeightedAggregator": "built into the recipe (aggregation_weights=)",
    "FullModelShareableGenerator": "built into the recipe",
    "PTFileModelPersistor": _MODEL_ARGS,
    "TFModelPersistor": _MODEL_ARGS,
    "NPModelPersistor": _MODEL_ARGS,
    "JoblibModelParamPersistor": "ember_sklearn's recipes keep the model themselves",
    "IntimeModelSelector": "FedAvgRecipe's key_metric= and key_metric_mode=",
    "ValidationJsonGenerator": _CSE,
    "PTFileModelLocator": _CSE,
    "NPModelLocator": _CSE,
    "TBAnalyticsReceiver": _TRACKING,
    "ConvertToFedEvent": _TRACKING,
    # client executors and their plumbing
    "ClientAPILauncherExecutor": _SCRIPT,
    "PTClientAPILauncherExecutor": _SCRIPT,
    "TFClientAPILauncherExecutor": _SCRIPT,
    "InProcessClientAPIExecutor": _SCRIPT,
    "PTInProcessClientAPIExecutor": _SCRIPT,
    "TFInProcessClientAPIExecutor": _SCRIPT,
    "ScriptRunner": _SCRIPT,
    "SubprocessLauncher": "Ember launches the script itself (launch_external_process=True)",
    "ExternalConfigurator": "Ember configures the Client API itself",
    "CellPipe": "Ember's external processes need no pipe",
    "FilePipe": "Ember's external processes need no pipe",
    "MetricRelay": "Ember relays the script's metrics itself",
    "NPTrainer": "write a Client API script (ember.client) and pass it as train_script=",
    "NPValidator": "write a Client API script (ember.client) that answers flare.is_evaluate()",
}
