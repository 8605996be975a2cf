"""What a plugin registers: small, import-free descriptions of its components.

Every hook returns a list of these entries. An entry names its component by a lazy
``"module:attribute"`` target, so listing plugins never imports a framework: the target is
imported only when the component is used (``entry.load()``).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from ember.plugins.errors import PluginError


def load_target(target: str) -> Any:
    """Import ``"package.module:attr.path"`` and return the attribute."""
    module_name, sep, attr_path = target.partition(":")
    if not sep or not module_name or not attr_path:
        raise PluginError(
            f"plugin target {target!r} is malformed: write it as 'package.module:attribute'"
        )
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise PluginError(
            f"cannot import {module_name!r} for plugin target {target!r}: {exc}"
        ) from exc
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            raise PluginError(
                f"plugin target {target!r}: module {module_name!r} has no attribute {attr_path!r}"
            ) from exc
    return obj


def load_dotted(path: str) -> Any:
    """Import ``"package.module.Class"`` (the dotted form model factories, optimizers and
    NVFlare's configs use) or ``"package.module:Class"`` and return the attribute."""
    if ":" not in path and "." in path:
        module, _, attr = path.rpartition(".")
        path = f"{module}:{attr}"
    return load_target(path)


@dataclass(frozen=True)
class Entry:
    """Base of every registration: a unique ``name`` within its kind and a lazy ``target``."""

    name: str
    target: str

    def load(self) -> Any:
        """Import and return the registered object."""
        return load_target(self.target)

    def describe(self) -> dict[str, Any]:
        """A JSON-friendly description, used by ``ember plugins``."""
        return {"name": self.name, "target": self.target}


@dataclass(frozen=True)
class RecipeEntry(Entry):
    """A recipe class.

    ``name`` is what ``ember recipe show NAME`` takes, by convention ``<framework>-<algorithm>``.
    """

    framework: str = ""
    algorithm: str = ""
    description: str = ""

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "framework": self.framework,
            "algorithm": self.algorithm,
            "description": self.description,
        }


@dataclass(frozen=True)
class DecomposerEntry(Entry):
    """A FOBS decomposer. ``name`` is the wire name of the type it handles.

    ``target`` resolves to a :class:`ember.fobs.Decomposer` instance or to a class that
    builds one with no arguments.
    """


@dataclass(frozen=True)
class TensorAdapterEntry(Entry):
    """Lets the downloader stream one framework's tensors (``name`` is the framework)."""


@dataclass(frozen=True)
class ParamsConverterEntry(Entry):
    """Converts model parameters between a framework format and an exchange format.

    ``converts_results`` (on a ``<format>-to-numpy`` converter): the Client API also applies
    it to what a script sends, before the params travel. A format whose params are not a
    flat dict of arrays or tensors (Keras's ``{layer name: [arrays]}``) needs it; one whose
    tensors travel as they are (torch) does not.
    """

    from_format: str = ""
    to_format: str = ""
    converts_results: bool = False

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "from_format": self.from_format,
            "to_format": self.to_format,
            "converts_results": self.converts_results,
        }


@dataclass(frozen=True)
class FrameworkEntry(Entry):
    """A model framework recipes can take (``FedAvgRecipe(framework=name)``).

    ``name`` is the framework (``"pytorch"``); ``target`` resolves to a
    :class:`ember.recipes.Framework` subclass (built with no arguments) or instance.
    """

    description: str = ""

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "description": self.description}


@dataclass(frozen=True)
class FilterEntry(Entry):
    """A filter type (``name``, such as ``"ExcludeVars"``, is what a site's privacy policy
    names); ``target`` resolves to an :class:`ember.filters.Filter` subclass."""

    description: str = ""

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "description": self.description}


@dataclass(frozen=True)
class CommandEntry(Entry):
    """A top-level ``ember`` subcommand; ``target`` resolves to a :class:`click.Command`."""

    help: str = ""

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "help": self.help}
