"""``FedAvgRecipe``: the unified base recipe, for every framework; ``NumpyFedAvgRecipe``."""

from __future__ import annotations

import inspect
import json
import warnings
from typing import Any

from ember.client.formats import NUMPY
from ember.common.model import TransferType
from ember.recipes.base import Recipe
from ember.recipes.client_apps import check_per_site_config, client_app
from ember.recipes.validation import (
    RecipeArgumentError,
    check_choice,
    check_int,
    check_job_name,
    check_optional_int,
    check_params_format,
    check_regex,
    check_str,
    check_weights,
)
from ember.runtime.stop_condition import StopCondition

FEDAVG_CONTROLLER = "ember.runtime.controllers.fedavg:FedAvgController"
#: where enable_tensor_disk_offload keeps models, under the job's server folder
OFFLOAD_FOLDER = "offload"


class FedAvgRecipe(Recipe):
    """Federated averaging: each round every site trains on the global model, the server
    averages their results (weighted by ``NUM_STEPS_CURRENT_ROUND`` and
    ``aggregation_weights``) as they arrive.

    ``framework`` names the model's framework (``"numpy"``; ``"pytorch"`` with ember-pt;
    any registered through the ``ember_frameworks`` hook): it decides what ``model`` and
    ``initial_ckpt`` may be, what scripts receive, and how the server saves global models.
    Framework packages subclass it with their framework fixed (``ember_pt.recipes``); a
    recipe built on FedAvg takes its parameters through ``**kwargs`` (see :class:`Recipe`)
    and may run another server workflow (:attr:`controller`, :meth:`controller_args`) or
    set up its model itself (:meth:`model_setup`).
    """

    #: the server workflow (a ``module:Class`` target built with :meth:`controller_args`)
    controller: str = FEDAVG_CONTROLLER

    def __init__(
        self,
        *,
        name: str = "fedavg",
        framework: str | None = None,
        min_clients: int,
        num_rounds: int = 2,
        model: Any = None,
        initial_ckpt: str | None = None,
        train_script: str,
        train_args: str = "",
        launch_external_process: bool = False,
        command: str | None = None,
        params_transfer_type: str | TransferType = "FULL",
        aggregation_weights: dict[str, float] | None = None,
        key_metric: str | None = "accuracy",
        key_metric_mode: str = "max",
        stop_cond: str | None = None,
        patience: int | None = None,
        exclude_vars: str | list[str] | None = None,
        server_memory_gc_rounds: int = 0,
        client_memory_gc_rounds: int = 0,
        server_expected_format: str = NUMPY,
        save_filename: str | None = None,
        best_model_filename: str | None = None,
        cuda_empty_cache: bool = True,
        enable_tensor_disk_offload: bool = False,
        per_site_config: dict[str, dict[str, Any]] | None = None,
        aggregator: Any = None,
        aggregator_data_kind: str | None = None,
        model_persistor: Any = None,
        model_locator: Any = None,
        launch_once: bool = True,
        launch_timeout: float | None = None,
        shutdown_timeout: float | None = None,
        initial_model: Any = None,
    ) -> None:
        if initial_model is not None:
            if model is not None:
                raise RecipeArgumentError(
                    "initial_model is the deprecated name of model; give model= only"
                )
            warnings.warn(
                "initial_model is deprecated; use model= (the same value)",
                DeprecationWarning,
                stacklevel=2,
            )
            model = initial_model
        name = check_job_name(name)
        if model_locator is not None:
            raise RecipeArgumentError(
                "model_locator is for cross-site evaluation, which FedAvg does not run: "
                "add_cross_site_evaluation(recipe) evaluates the models this job's persistor "
                "saves (server/models); drop model_locator="
            )
        params_transfer_type = data_kind_transfer(aggregator_data_kind, params_transfer_type)
        aggregator_spec = component_spec("aggregator", aggregator, ("add", "result"))
        persistor_spec = component_spec(
            "model_persistor", model_persistor, ("initial_params", "save", "load")
        )
        framework = self.framework_name(framework)
        min_clients = check_int("min_clients", min_clients, 1)
        num_rounds = check_int("num_rounds", num_rounds, 1)
        app, files = client_app(
            train_script,
            train_args,
            launch_external_process,
            command,
            params_transfer_type,
            client_memory_gc_rounds,
        )
        app.per_site = check_per_site_config(per_site_config)
        timeouts = check_launch(
            launch_external_process, launch_once, launch_timeout, shutdown_timeout
        )
        app.launch_once = launch_once
        model_files = check_model_filenames(save_filename, best_model_filename)
        for flag, value in (
            ("cuda_empty_cache", cuda_empty_cache),
            ("enable_tensor_disk_offload", enable_tensor_disk_offload),
        ):
            if not isinstance(value, bool):
                raise RecipeArgumentError(f"{flag} must be True or False, got {value!r}")
        app.cuda_empty_cache = cuda_empty_cache
        server_format = check_params_format("server_expected_format", server_expected_format)
        weights = check_weights(aggregation_weights)
        check_str("key_metric", key_metric, allow_none=True)
        mode = check_choice("key_metric_mode", key_metric_mode, ["max", "min"])
        if stop_cond is not None:
            try:
                StopCondition.parse(check_str("stop_cond", stop_cond) or "")
            except ValueError as exc:
                raise RecipeArgumentError(str(exc)) from None
        patience = check_optional_int("patience", patience, 1)
        if patience is not None and key_metric is None:
            raise RecipeArgumentError(
                "patience needs key_metric: it counts rounds in which key_metric did not improve"
            )
        exclude = check_regex("exclude_vars", exclude_vars)
        check_int("server_memory_gc_rounds", server_memory_gc_rounds, 0)
        if model is None and initial_ckpt is None:
            raise RecipeArgumentError("give the initial model: model=... or initial_ckpt=...")

        setup = self.model_setup(framework, model, initial_ckpt, files)
        if persistor_spec is not None:
            setup.persistor = {"target": persistor_spec["path"], "args": persistor_spec["args"]}
        app.params_format = setup.params_format
        args: dict[str, Any] = {
            "num_rounds": num_rounds,
            "min_clients": min_clients,
            "persistor": setup.persistor,
            "params_transfer_type": app.params_transfer_type,
            "aggregation_weights": weights,
            "key_metric": key_metric,
            "key_metric_mode": mode,
            "stop_cond": stop_cond,
            "patience": patience,
            "exclude_vars": exclude,
            "server_memory_gc_rounds": server_memory_gc_rounds,
        }
        if server_format != NUMPY:
            args["server_expected_format"] = server_format
        args.update(model_files)
        if aggregator_spec is not None:
            args["aggregator"] = aggregator_spec
        if not cuda_empty_cache:
            args["cuda_empty_cache"] = False
        if setup.task_meta:
            args["task_meta"] = dict(setup.task_meta)
        self.assemble(
            name=name,
            min_clients=min_clients,
            workflows=[{"target": self.controller, "args": self.controller_args(args)}],
            client=app,
            files=files,
            framework=framework,
        )
        for setting, seconds in timeouts.items():
            self.set_config(setting, seconds)
        if enable_tensor_disk_offload:
            # a relative streaming.offload_dir is under the job's server folder; a job's own
            # set_config("streaming.offload_dir", ...) afterwards overrides it
            self.set_config("streaming.offload_dir", OFFLOAD_FOLDER)

    def controller_args(self, args: dict[str, Any]) -> dict[str, Any]:
        """The arguments of :attr:`controller`, given FedAvg's; subclasses add their own."""
        return args


#: NVFlare's aggregator_data_kind -> Ember's params_transfer_type
DATA_KINDS = {"WEIGHTS": TransferType.FULL.value, "WEIGHT_DIFF": TransferType.DIFF.value}


def data_kind_transfer(kind: Any, transfer: Any) -> Any:
    """``params_transfer_type`` given NVFlare's ``aggregator_data_kind`` (None: unchanged)."""
    if kind is None:
        return transfer
    name = check_choice("aggregator_data_kind", kind, list(DATA_KINDS))
    wanted = DATA_KINDS[name]
    given = transfer.value if isinstance(transfer, TransferType) else transfer
    if given not in (wanted, TransferType.FULL.value):
        raise RecipeArgumentError(
            f"aggregator_data_kind={name!r} means params_transfer_type={wanted!r}, but "
            f"params_transfer_type={given!r} was given; give one of them"
        )
    return wanted


def component_spec(arg: str, value: Any, methods: tuple[str, ...]) -> dict[str, Any] | None:
    """``{"path": "module:Class", "args": {...}}`` for a server component given as that
    dict or as an object of an importable class (its arguments read back from its
    same-named attributes); checked to import and to have ``methods``."""
    if value is None:
        return None
    from ember.plugins.entries import load_target

    if isinstance(value, dict):
        unknown = sorted(set(value) - {"path", "args"})
        path, args = value.get("path"), value.get("args", {})
        if unknown or not isinstance(path, str) or not isinstance(args, dict):
            raise RecipeArgumentError(
                f"{arg} must be {{'path': 'module:Class', 'args': {{...}}}} or an object of "
                f"an importable class, got {value!r}"
            )
    else:
        cls = type(value)
        path = f"{cls.__module__}:{cls.__qualname__}"
        if cls.__module__ == "__main__" or "<locals>" in cls.__qualname__:
            raise RecipeArgumentError(
                f"{arg}: {cls.__qualname__} is defined in {cls.__module__!r}, which the "
                "server cannot import; define the class in a module of its own (beside the "
                "training script or in an installed package)"
            )
        args = {}
        for name, param in list(inspect.signature(cls).parameters.items()):
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            if hasattr(value, name):
                args[name] = getattr(value, name)
            elif param.default is param.empty:
                raise RecipeArgumentError(
                    f"{arg}: {cls.__qualname__} keeps no attribute {name!r} for its argument "
                    f"of that name, so the job cannot rebuild it; give {arg}={{'path': "
                    f"{path!r}, 'args': {{...}}}} instead"
                )
    if ":" not in path and "." in path:  # NVFlare's dotted module.Class
        module, _, attr = path.rpartition(".")
        path = f"{module}:{attr}"
    try:
        target = load_target(path)
    except Exception as exc:
        raise RecipeArgumentError(f"{arg}: {exc}") from None
    missing = [m for m in methods if not callable(getattr(target, m, None))]
    if missing:
        raise RecipeArgumentError(
            f"{arg}: {path} has no {', '.join(m + '()' for m in missing)} method"
            + ("s" if len(missing) > 1 else "")
        )
    try:
        json.dumps(args)
    except (TypeError, ValueError) as exc:
        raise RecipeArgumentError(
            f"{arg}: the arguments {args!r} must be JSON values (they go into job.json): {exc}"
        ) from None
    return {"path": path, "args": dict(args)}


#: the recipe parameter -> the setting it overrides for the job
LAUNCH_TIMEOUTS = {
    "launch_timeout": "runtime.subprocess_connect_timeout",
    "shutdown_timeout": "runtime.site_stop_timeout",
}


def check_launch(
    external: Any, launch_once: Any, launch_timeout: Any, shutdown_timeout: Any
) -> dict[str, float]:
    """The job settings ``launch_timeout``/``shutdown_timeout`` override (checked against
    the settings' bounds); ``launch_once=False`` is refused without an external process."""
    if not isinstance(launch_once, bool):
        raise RecipeArgumentError(f"launch_once must be True or False, got {launch_once!r}")
    if not launch_once and external is not True:
        raise RecipeArgumentError(
            "launch_once=False (a new script process per task) is not supported for a "
            "script that runs in its site's process: it needs launch_external_process=True "
            "(or keep launch_once=True, the default)"
        )
    if launch_timeout is not None and external is not True:
        raise RecipeArgumentError(
            "launch_timeout is how long a site waits for its script's process to connect; "
            "it needs launch_external_process=True"
        )
    from ember.config import declared_settings

    declared = declared_settings()
    settings: dict[str, float] = {}
    for arg, value in (("launch_timeout", launch_timeout), ("shutdown_timeout", shutdown_timeout)):
        if value is None:
            continue
        name = LAUNCH_TIMEOUTS[arg]
        minimum = declared[name].minimum
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or (minimum is not None and value < minimum)
        ):
            raise RecipeArgumentError(
                f"{arg} must be a number of seconds >= {minimum:g} (it sets {name} for this "
                f"job), got {value!r}"
            )
        settings[name] = float(value)
    return settings


def check_model_filenames(save: Any, best: Any) -> dict[str, str]:
    """The controller arguments for ``save_filename``/``best_model_filename`` (file names in
    ``server/models``; the persistor's extension is added when missing); none when unset."""
    names: dict[str, str] = {}
    for arg, value in (("save_filename", save), ("best_model_filename", best)):
        if value is None:
            continue
        text = check_str(arg, value)
        if not text or "/" in text or "\\" in text or text in (".", ".."):
            raise RecipeArgumentError(
                f"{arg} must be a file name (no folders: it is saved in server/models), "
                f"got {value!r}"
            )
        names[arg] = text
    if (save or "global_model") == (best or "best_model"):
        raise RecipeArgumentError(
            f"save_filename and best_model_filename are both {save or best!r}: they must "
            "differ, or the best model would overwrite the global one"
        )
    return names


class NumpyFedAvgRecipe(FedAvgRecipe):
    """FedAvg for numpy models: ``model`` is an array, a nested list, a dict of arrays, or
    ``{"path": "pkg.factory", "args": {...}}`` returning one; ``initial_ckpt`` is .npy/.npz.
    The same as ``FedAvgRecipe(framework="numpy")``."""

    framework = NUMPY
