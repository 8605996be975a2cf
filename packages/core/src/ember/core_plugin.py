"""ember-core's own plugin: core registers its built-ins through the same hooks as everyone."""

from __future__ import annotations

from ember.common.setting import Setting
from ember.config.core_settings import CORE_SETTINGS
from ember.plugins.entries import (
    CommandEntry,
    DecomposerEntry,
    FilterEntry,
    FrameworkEntry,
    RecipeEntry,
)
from ember.plugins.markers import hookimpl

_BUILTIN = "ember.fobs.builtin_decomposers"
_NUMPY = "ember.fobs.numpy_decomposers"
_ARRAYS = "ember.streaming.array_decomposers"


@hookimpl
def ember_fobs_decomposers() -> list[DecomposerEntry]:
    return [
        DecomposerEntry("datetime.datetime", f"{_BUILTIN}:DatetimeDecomposer"),
        DecomposerEntry("datetime.date", f"{_BUILTIN}:DateDecomposer"),
        DecomposerEntry("datetime.time", f"{_BUILTIN}:TimeDecomposer"),
        DecomposerEntry("datetime.timedelta", f"{_BUILTIN}:TimedeltaDecomposer"),
        DecomposerEntry("uuid.UUID", f"{_BUILTIN}:UUIDDecomposer"),
        DecomposerEntry("decimal.Decimal", f"{_BUILTIN}:DecimalDecomposer"),
        DecomposerEntry("collections.OrderedDict", f"{_BUILTIN}:OrderedDictDecomposer"),
        DecomposerEntry("numpy.ndarray", f"{_ARRAYS}:StreamedNDArrayDecomposer"),
        DecomposerEntry("numpy.memmap", f"{_ARRAYS}:StreamedMemmapDecomposer"),
        DecomposerEntry("numpy.generic", f"{_NUMPY}:NumpyScalarDecomposer"),
        DecomposerEntry(
            "ember.streaming.lazy.DeferredTensor", f"{_ARRAYS}:DeferredTensorDecomposer"
        ),
        DecomposerEntry("ember.common.model.FLModel", "ember.common.model:FLModel"),
        DecomposerEntry("ember.common.model.ParamsType", "ember.common.model:ParamsType"),
        DecomposerEntry("ember.common.messages.Task", "ember.common.messages:Task"),
        DecomposerEntry("ember.common.messages.TaskResult", "ember.common.messages:TaskResult"),
        DecomposerEntry("ember.common.messages.MetricRecord", "ember.common.messages:MetricRecord"),
    ]


@hookimpl
def ember_recipes() -> list[RecipeEntry]:
    return [
        RecipeEntry(
            "numpy-fedavg",
            "ember.recipes.fedavg:NumpyFedAvgRecipe",
            framework="numpy",
            algorithm="FedAvg",
            description="Federated averaging of numpy arrays",
        ),
        RecipeEntry(
            "numpy-fedavg-lr",
            "ember.recipes.fedavg_lr:FedAvgLrRecipe",
            framework="numpy",
            algorithm="FedAvgLR",
            description="Logistic regression by federated Newton-Raphson steps",
        ),
        RecipeEntry(
            "numpy-fedtask",
            "ember.recipes.fed_task:FedTaskRecipe",
            framework="numpy",
            algorithm="FedTask",
            description="A model-free task run once by all or a sample of the sites",
        ),
        RecipeEntry(
            "numpy-cyclic",
            "ember.recipes.cyclic:CyclicRecipe",
            framework="numpy",
            algorithm="Cyclic",
            description="The model travels from site to site, each trains it in turn",
        ),
        RecipeEntry(
            "numpy-cross-site-eval",
            "ember.recipes.cross_site_eval:NumpyCrossSiteEvalRecipe",
            framework="numpy",
            algorithm="CrossSiteEval",
            description="Every site evaluates pre-trained models; a matrix of the results",
        ),
        RecipeEntry(
            "numpy-fedstats",
            "ember.recipes.fedstats:FedStatsRecipe",
            framework="numpy",
            algorithm="FedStats",
            description="Federated statistics with privacy rules applied at each site",
        ),
        RecipeEntry(
            "dh-psi",
            "ember.recipes.psi:DhPSIRecipe",
            framework="numpy",
            algorithm="DhPSI",
            description="Private set intersection of the sites' ids (ECDH, server relays)",
        ),
    ]


@hookimpl
def ember_frameworks() -> list[FrameworkEntry]:
    return [
        FrameworkEntry(
            "numpy",
            "ember.recipes.framework:NumpyFramework",
            description="numpy arrays (a nested list, an array or a dict of arrays)",
        )
    ]


@hookimpl
def ember_cli_commands() -> list[CommandEntry]:
    return [
        CommandEntry(
            "plugins",
            "ember.cli.plugins_cmd:plugins",
            help="List installed plugins and what each registers.",
        ),
        CommandEntry("recipe", "ember.cli.recipe_cmd:recipe", help="List and describe recipes."),
        CommandEntry(
            "config",
            "ember.cli.config_cmd:config",
            help="Show settings and generate the config reference.",
        ),
        CommandEntry(
            "simulate", "ember.cli.simulate_cmd:simulate", help="Run an exported job in SimEnv."
        ),
        CommandEntry("migrate-nvflare", "ember.cli.migrate_cmd:migrate", help="Port NVFlare code."),
        CommandEntry(
            "poc", "ember.cli.poc_cmd:poc", help="Run a local PoC system (server, clients)."
        ),
        CommandEntry("job", "ember.cli.job_cmd:job", help="Submit and follow jobs (admin API)."),
        CommandEntry(
            "daemon", "ember.cli.daemon_cmd:daemon", help="Run a daemon from its startup kit."
        ),
        CommandEntry(
            "provision",
            "ember.cli.provision_cmd:provision",
            help="Make startup kits for a project.",
        ),
    ]


@hookimpl
def ember_filters() -> list[FilterEntry]:
    builtin = "ember.filters.builtin"
    return [
        FilterEntry("ExcludeVars", f"{builtin}:ExcludeVars", "remove variables by name or regex"),
        FilterEntry(
            "PercentilePrivacy",
            f"{builtin}:PercentilePrivacy",
            "share the largest updates, clipped",
        ),
        FilterEntry(
            "SVTPrivacy", f"{builtin}:SVTPrivacy", "sparse vector technique (reports epsilon)"
        ),
        FilterEntry(
            "GaussianPrivacy",
            f"{builtin}:GaussianPrivacy",
            "clip and Gaussian noise, RDP-accounted",
        ),
    ]


@hookimpl
def ember_config_settings() -> list[Setting]:
    from ember.system.settings import SYSTEM_SETTINGS

    return [*CORE_SETTINGS, *SYSTEM_SETTINGS]
