"""A user component (data loader, statistics generator, PSI loader) in a job: checked and
written as ``{"path": "module.Class", "args": {...}}``, its module bundled into ``app/``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from ember.common.components import Component, constructor_arguments
from ember.job.definition import APP_DIR, JobFile
from ember.plugins.entries import load_dotted
from ember.plugins.errors import PluginError
from ember.recipes.validation import RecipeArgumentError


def component_spec(
    name: str,
    value: Any,
    base: type[Component],
    files: dict[str, JobFile],
    base_name: str | None = None,
) -> tuple[dict[str, Any], type]:
    """``({"path", "args"}, class)`` of ``value``: an instance of a ``base`` subclass (its
    recorded constructor arguments) or such a dict. The class's top-level module is added
    to ``files`` unless it is installed (sites have it too); arguments must be JSON values.
    ``base_name``: how errors name ``base`` (its public import path).
    """
    what = base_name or f"{base.__module__}.{base.__qualname__}"
    if isinstance(value, dict):
        extra = set(value) - {"path", "args"}
        path, args = value.get("path"), value.get("args", {})
        if not isinstance(path, str) or "." not in path or extra or not isinstance(args, dict):
            raise RecipeArgumentError(
                f"{name} given by path must be {{'path': 'module.Class', 'args': {{...}}}}"
                + (f"; unexpected keys {sorted(extra)}" if extra else f", got {value!r}")
            )
        try:
            cls = load_dotted(path)
        except PluginError as exc:
            raise RecipeArgumentError(
                f"{name} {path!r} cannot be imported here ({exc}); the recipe bundles its "
                "module into the job, so it must be importable where job.py runs"
            ) from None
        module_name = path.rpartition(".")[0]
    elif isinstance(value, base):
        cls = type(value)
        module_name = cls.__module__
        if module_name == "__main__" or "." in cls.__qualname__:
            raise RecipeArgumentError(
                f"{name}'s class {cls.__qualname__} must be defined at the top level of a "
                "module beside job.py (not in job.py itself): the sites import it"
            )
        path = f"{module_name}.{cls.__qualname__}"
        try:
            args = constructor_arguments(value)
        except ValueError as exc:
            raise RecipeArgumentError(f"{name}: {exc}") from None
    else:
        raise RecipeArgumentError(
            f"{name} must be an instance of an {what} subclass or "
            f"{{'path': 'module.Class', 'args': {{...}}}}, got {type(value).__name__}"
        )
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise RecipeArgumentError(f"{name} {path!r} is not a subclass of {what}")
    for arg, item in args.items():
        try:
            json.dumps(item, allow_nan=False)
        except (TypeError, ValueError):
            raise RecipeArgumentError(
                f"{name}'s argument {arg}= is a {type(item).__name__}, which cannot travel "
                "in a job (arguments must be JSON values); pass where to load the data from "
                "and load it at the site"
            ) from None
    bundle_module(module_name, files)
    return {"path": path, "args": json.loads(json.dumps(args))}, cls


def _installed(module: Any) -> bool:
    """Whether a module comes from an installation (sites have it), not a user's folder."""
    name = module.__name__.partition(".")[0]
    if name == "ember" or name.startswith("ember_"):
        return True
    file = getattr(module, "__file__", None)
    parts = Path(file).parts if file else ()
    return file is None or "site-packages" in parts or "dist-packages" in parts


def bundle_module(module_name: str, files: dict[str, JobFile]) -> None:
    """Add ``module_name``'s top-level module or package to the job's ``app/`` (nothing
    for an installed one)."""
    top = sys.modules.get(module_name.partition(".")[0])
    if top is None or _installed(top):
        return
    file = Path(str(top.__file__))
    if hasattr(top, "__path__"):  # a package: its whole folder
        files[f"{APP_DIR}/{top.__name__}"] = file.parent
    else:
        files[f"{APP_DIR}/{file.name}"] = file
