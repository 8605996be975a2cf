"""Everything the loaded plugins register, by kind and name, with conflict detection."""

from __future__ import annotations

import difflib
import threading
from dataclasses import dataclass
from typing import Any, Protocol

from ember.common.setting import Setting
from ember.plugins.catalog import provider_for
from ember.plugins.entries import (
    CommandEntry,
    DecomposerEntry,
    FilterEntry,
    FrameworkEntry,
    ParamsConverterEntry,
    RecipeEntry,
    TensorAdapterEntry,
)
from ember.plugins.errors import PluginConflictError, PluginError, UnknownNameError
from ember.plugins.manager import EmberPluginManager, get_plugin_manager


class Named(Protocol):
    """What every registered item has: a name, unique within its kind."""

    @property
    def name(self) -> str: ...


@dataclass(frozen=True)
class Kind:
    """One kind of registration: the hook that returns it and the type of its items."""

    name: str
    hook: str
    item_type: type[Named]
    label: str


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind("recipe", "ember_recipes", RecipeEntry, "recipes"),
        Kind("decomposer", "ember_fobs_decomposers", DecomposerEntry, "FOBS decomposers"),
        Kind("tensor_adapter", "ember_tensor_adapters", TensorAdapterEntry, "tensor adapters"),
        Kind(
            "params_converter", "ember_params_converters", ParamsConverterEntry, "params converters"
        ),
        Kind("framework", "ember_frameworks", FrameworkEntry, "frameworks"),
        Kind("command", "ember_cli_commands", CommandEntry, "CLI commands"),
        Kind("filter", "ember_filters", FilterEntry, "filters"),
        Kind("setting", "ember_config_settings", Setting, "config settings"),
    )
}


@dataclass(frozen=True)
class Registered:
    """An item and the plugin that registered it."""

    item: Any
    plugin: str


class Registry:
    """The union of every plugin's registrations, checked for duplicate names."""

    def __init__(self, manager: EmberPluginManager) -> None:
        self.manager = manager
        self._items: dict[str, dict[str, Registered]] = {}
        for kind in KINDS.values():
            self._items[kind.name] = self._collect(kind)

    def _collect(self, kind: Kind) -> dict[str, Registered]:
        found: dict[str, Registered] = {}
        caller = getattr(self.manager.hook, kind.hook)
        # Call each implementation on its own so every item keeps the plugin that gave it.
        for impl in reversed(caller.get_hookimpls()):
            result = impl.function()
            if result is None:
                continue
            if not isinstance(result, list | tuple):
                raise PluginError(
                    f"plugin {impl.plugin_name!r}: hook {kind.hook} must return a list of "
                    f"{kind.item_type.__name__}, not {type(result).__name__}"
                )
            for item in result:
                if not isinstance(item, kind.item_type):
                    raise PluginError(
                        f"plugin {impl.plugin_name!r}: hook {kind.hook} returned "
                        f"{item!r}; expected {kind.item_type.__name__} instances"
                    )
                if item.name in found:
                    first = found[item.name].plugin
                    raise PluginConflictError(
                        f"{kind.name} {item.name!r} is registered by two plugins: "
                        f"{self._who(first)} and {self._who(impl.plugin_name)}; uninstall or "
                        f"disable one of them (EMBER_DISABLED_PLUGINS=<name>)"
                    )
                found[item.name] = Registered(item, impl.plugin_name)
        return dict(sorted(found.items()))

    def _who(self, plugin: str) -> str:
        info = self.manager.info(plugin)
        return f"{plugin!r} ({info.distribution or info.module})"

    def items(self, kind: str) -> dict[str, Registered]:
        """Every registration of ``kind``, by name."""
        try:
            return self._items[kind]
        except KeyError:
            raise PluginError(
                f"unknown registration kind {kind!r}; known: {', '.join(KINDS)}"
            ) from None

    def get(self, kind: str, name: str) -> Registered:
        """The registration of ``name``; an :class:`UnknownNameError` says what to install."""
        items = self.items(kind)
        try:
            return items[name]
        except KeyError:
            raise UnknownNameError(unknown_name_message(kind, name, list(items))) from None

    def by_plugin(self) -> dict[str, dict[str, list[str]]]:
        """For each plugin, the names it registers, by kind."""
        out: dict[str, dict[str, list[str]]] = {p.name: {} for p in self.manager.report.plugins}
        for kind, items in self._items.items():
            for name, reg in items.items():
                out[reg.plugin].setdefault(kind, []).append(name)
        return out


def unknown_name_message(kind: str, name: str, installed: list[str]) -> str:
    """An error message for a name nothing registers: what is there and what to install."""
    label = KINDS[kind].label if kind in KINDS else kind
    parts = [f"no {kind} named {name!r} is installed."]
    close = difflib.get_close_matches(name, installed, n=3, cutoff=0.6)
    if close:
        parts.append(f"Did you mean {', '.join(repr(c) for c in close)}?")
    parts.append(f"Installed {label}: {', '.join(installed) if installed else '(none)'}.")
    provider = provider_for(kind, name)
    if provider is not None:
        parts.append(
            f"{name!r} would come from {provider.distribution}: pip install {provider.distribution}"
        )
    else:
        parts.append("Install the package that provides it, then check `ember plugins`.")
    return " ".join(parts)


_lock = threading.Lock()
_registry: Registry | None = None


def get_registry() -> Registry:
    """The registry of the process-wide plugin manager."""
    global _registry
    manager = get_plugin_manager()
    with _lock:
        if _registry is None or _registry.manager is not manager:
            _registry = Registry(manager)
        return _registry


def reset_registry() -> None:
    """Forget the registry; the next use rebuilds it (used after ``reset_plugin_manager``)."""
    global _registry
    with _lock:
        _registry = None
