"""Model frameworks for recipes: what a script receives and how the server keeps the model.

A framework package registers a :class:`Framework` (hook ``ember_frameworks``); any recipe
then takes ``framework="<name>"`` and gets, through :func:`get_framework`, the params format
its scripts receive and the persistor that loads the initial model and saves global ones.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ember.client.formats import NUMPY
from ember.job.definition import APP_DIR, JobFile
from ember.recipes.validation import RecipeArgumentError


@dataclass
class ModelSetup:
    """How a job holds its model: the server's persistor (``{"target": "module:Class",
    "args": {...}}``), the ``meta`` every task carries (e.g. the model's class), and what
    training scripts receive as ``FLModel.params`` (a registered params format)."""

    persistor: dict[str, Any]
    task_meta: dict[str, Any] = field(default_factory=dict)
    params_format: str = NUMPY


class Framework:
    """One framework's models in recipes. Subclass it and register it::

        # my_package/framework.py (imported only when a recipe uses it)
        from ember.recipes import Framework, ModelSetup, RecipeArgumentError, bundle_checkpoint

        class JaxFramework(Framework):
            name = "jax"
            checkpoint_suffixes = (".npz",)

            def setup(self, model, initial_ckpt, files):
                if initial_ckpt is None:
                    raise RecipeArgumentError("the jax framework needs initial_ckpt='x.npz'")
                ckpt = bundle_checkpoint(initial_ckpt, self.checkpoint_suffixes, files)
                return ModelSetup(
                    {"target": "my_package.persistor:JaxPersistor", "args": {"path": ckpt}},
                    params_format="jax",  # scripts get what "jax-from-numpy" converts to
                )

        # my_package/plugin.py (the entry point's module: imports no framework)
        from ember.plugins import FrameworkEntry, hookimpl

        @hookimpl
        def ember_frameworks():
            return [FrameworkEntry("jax", "my_package.framework:JaxFramework")]

    Then ``FedAvgRecipe(framework="jax", model=..., ...)`` works, and so does every recipe
    built on it.
    """

    #: the registered name (``FedAvgRecipe(framework=name)``)
    name: str = ""
    #: the file suffixes ``initial_ckpt`` may have
    checkpoint_suffixes: tuple[str, ...] = ()

    def setup(self, model: Any, initial_ckpt: str | None, files: dict[str, JobFile]) -> ModelSetup:
        """The persistor and task meta for ``model`` and/or ``initial_ckpt`` (at least one is
        given); adds the files to bundle into the job to ``files``. Bad input raises
        :class:`RecipeArgumentError` naming the argument and what it must be."""
        raise NotImplementedError(f"{type(self).__name__} must implement setup")


def get_framework(name: str) -> Framework:
    """The registered framework ``name``; an unknown name raises an error that lists the
    installed frameworks and names the package to install."""
    from ember.plugins.registry import get_registry

    target = get_registry().get("framework", name).item.load()
    framework = target() if isinstance(target, type) else target
    if not isinstance(framework, Framework):
        raise RecipeArgumentError(
            f"framework {name!r} is registered as {type(framework).__name__}, which is not "
            "an ember.recipes.Framework; its plugin must register a Framework subclass"
        )
    return framework


def model_factory(model: Any) -> dict[str, Any] | None:
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


class NumpyFramework(Framework):
    """numpy models: ``model`` is an array, a nested list, a dict of arrays, or
    ``{"path": "pkg.factory", "args": {...}}`` returning one; ``initial_ckpt`` is .npy/.npz."""

    name = NUMPY
    checkpoint_suffixes = (".npy", ".npz")

    def setup(self, model: Any, initial_ckpt: str | None, files: dict[str, JobFile]) -> ModelSetup:
        from ember.runtime.persistors import as_numpy_params, save_npz

        args: dict[str, Any] = {}
        if initial_ckpt is not None:
            args["initial_ckpt"] = bundle_checkpoint(initial_ckpt, self.checkpoint_suffixes, files)
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
        return ModelSetup({"target": "ember.runtime.persistors:NumpyPersistor", "args": args})
