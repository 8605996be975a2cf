"""``FedAvgRecipe`` (framework-neutral base) and ``NumpyFedAvgRecipe``."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from ember.client.formats import NUMPY
from ember.common.model import TransferType
from ember.job.definition import APP_DIR, JobDefinition, JobFile
from ember.recipes.base import Recipe
from ember.recipes.client_app import client_app
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
from ember.runtime.persistors import as_numpy_params, save_npz
from ember.runtime.stop_condition import StopCondition

FEDAVG_CONTROLLER = "ember.runtime.controllers.fedavg:FedAvgController"


class FedAvgRecipe(Recipe):
    """Federated averaging: each round every site trains on the global model, the server
    averages their results (weighted by ``NUM_STEPS_CURRENT_ROUND`` and
    ``aggregation_weights``) as they arrive.

    Framework packages subclass it and implement :meth:`model_persistor`; they may run
    another server workflow (:attr:`controller`, :meth:`controller_args`).
    """

    framework = "neutral"
    controller: str = FEDAVG_CONTROLLER
    #: what training scripts receive as ``FLModel.params`` (a registered params format)
    params_format: str = NUMPY

    def __init__(
        self,
        *,
        name: str = "fedavg",
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
    ) -> None:
        name = check_job_name(name)
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
        app.params_format = self.params_format
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

        persistor = self.model_persistor(model, initial_ckpt, files)
        args: dict[str, Any] = {
            "num_rounds": num_rounds,
            "min_clients": min_clients,
            "persistor": persistor,
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
        job = JobDefinition(
            name=name,
            min_clients=min_clients,
            workflows=[{"target": self.controller, "args": self.controller_args(args)}],
            client=app,
            meta={"recipe": type(self).__name__, "framework": self.framework},
        )
        super().__init__(job, files)

    def controller_args(self, args: dict[str, Any]) -> dict[str, Any]:
        """The arguments of :attr:`controller`, given FedAvg's; subclasses add their own."""
        return args

    def model_persistor(
        self, model: Any, initial_ckpt: str | None, files: dict[str, JobFile]
    ) -> dict[str, Any]:
        """The persistor spec (``target`` and ``args``) for ``model``/``initial_ckpt``;
        may add files to bundle into the job."""
        raise NotImplementedError(f"{type(self).__name__} must implement model_persistor")


def model_factory(model: dict[str, Any]) -> dict[str, Any] | None:
    """``{"path": "pkg.Class", "args": {...}}`` (``class_path`` accepted too), or None."""
    if not isinstance(model, dict) or not ({"path", "class_path"} & set(model)):
        return None
    path = model.get("path", model.get("class_path"))
    extra = set(model) - {"path", "class_path", "args"}
    if not isinstance(path, str) or "." not in path or extra:
        raise RecipeArgumentError(
            "model given by path must be {'path': 'package.module.Class', 'args': {...}}"
            + (f"; unexpected keys {sorted(extra)}" if extra else "")
        )
    args = model.get("args", {})
    if not isinstance(args, dict):
        raise RecipeArgumentError("model['args'] must be a dict of constructor arguments")
    return {"path": path, "args": args}


def bundle_checkpoint(
    initial_ckpt: str, suffixes: tuple[str, ...], files: dict[str, JobFile]
) -> str:
    """Absolute: left to the server at run time. Relative: checked now and bundled."""
    if not isinstance(initial_ckpt, str) or Path(initial_ckpt).suffix not in suffixes:
        raise RecipeArgumentError(
            f"initial_ckpt must be a path ending in {' or '.join(suffixes)}, got {initial_ckpt!r}"
        )
    path = Path(initial_ckpt)
    if path.is_absolute():
        return initial_ckpt
    if not path.is_file():
        raise RecipeArgumentError(
            f"initial_ckpt {initial_ckpt!r} does not exist (a relative "
            "path is bundled into the job, so it must exist now)"
        )
    dest = f"{APP_DIR}/ckpt/{path.name}"
    files[dest] = path.resolve()
    return dest


class NumpyFedAvgRecipe(FedAvgRecipe):
    """FedAvg for numpy models: ``model`` is an array, a nested list, a dict of arrays, or
    ``{"path": "pkg.factory", "args": {...}}`` returning one; ``initial_ckpt`` is .npy/.npz."""

    framework = "numpy"

    def model_persistor(
        self, model: Any, initial_ckpt: str | None, files: dict[str, JobFile]
    ) -> dict[str, Any]:
        args: dict[str, Any] = {}
        if initial_ckpt is not None:
            args["initial_ckpt"] = bundle_checkpoint(initial_ckpt, (".npy", ".npz"), files)
        elif (factory := model_factory(model)) is not None:
            args["factory"] = factory
        else:
            if not isinstance(model, np.ndarray | list | tuple | dict):
                raise RecipeArgumentError(
                    "model must be a numpy array, a nested list, a dict of arrays or "
                    f"{{'path': ..., 'args': ...}}, got {type(model).__name__}"
                )
            try:
                params = as_numpy_params(model, "model")
            except Exception as exc:
                raise RecipeArgumentError(f"model cannot become numpy arrays: {exc}") from None
            # written when the job is exported: the recipe holds the arrays, not a copy
            files[f"{APP_DIR}/initial_model.npz"] = functools.partial(save_npz, params)
            args["initial_file"] = f"{APP_DIR}/initial_model.npz"
        return {"target": "ember.runtime.persistors:NumpyPersistor", "args": args}
