"""The plugin manager: core's built-ins plus every ``ember`` entry point installed."""

from __future__ import annotations

import importlib
import importlib.metadata as metadata
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType

import pluggy

from ember.plugins import hookspecs
from ember.plugins.errors import PluginConflictError, PluginError
from ember.plugins.markers import ENTRY_POINT_GROUP, PROJECT_NAME

CORE_PLUGIN = "core"
CORE_MODULE = "ember.core_plugin"

ENV_DISABLE_AUTOLOAD = "EMBER_DISABLE_PLUGIN_AUTOLOAD"
ENV_DISABLED_PLUGINS = "EMBER_DISABLED_PLUGINS"
ENV_EXTRA_PLUGINS = "EMBER_PLUGINS"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


@dataclass(frozen=True)
class PluginInfo:
    """Where a registered plugin came from."""

    name: str
    module: str
    distribution: str | None
    version: str | None
    source: str  # "builtin", "entry point" or "EMBER_PLUGINS"


@dataclass
class LoadReport:
    """What the manager loaded, and what it skipped on purpose."""

    plugins: list[PluginInfo] = field(default_factory=list)
    disabled: list[str] = field(default_factory=list)
    autoload: bool = True


def _env_flag(name: str) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise PluginError(
        f"environment variable {name}={os.environ[name]!r} is not a boolean: "
        f"use one of {sorted(_TRUE)} or {sorted(_FALSE - {''})}"
    )


def _env_list(name: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


class EmberPluginManager(pluggy.PluginManager):
    """A pluggy manager for the ``ember`` project that records where each plugin came from."""

    def __init__(self) -> None:
        super().__init__(PROJECT_NAME)
        self.add_hookspecs(hookspecs)
        self.report = LoadReport()

    def register_module(
        self,
        module: ModuleType,
        name: str,
        *,
        distribution: str | None = None,
        version: str | None = None,
        source: str = "entry point",
    ) -> None:
        """Register one plugin module under ``name``."""
        if self.has_plugin(name):
            previous = self.info(name)
            raise PluginConflictError(
                f"two plugins are named {name!r}: {previous.module} "
                f"(from {previous.distribution or previous.source}) and {module.__name__} "
                f"(from {distribution or source}); uninstall one of them"
            )
        try:
            self.register(module, name=name)
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"plugin {name!r} ({module.__name__}) is invalid: {exc}") from exc
        self.report.plugins.append(PluginInfo(name, module.__name__, distribution, version, source))

    def info(self, name: str) -> PluginInfo:
        """The :class:`PluginInfo` of a registered plugin."""
        return next(p for p in self.report.plugins if p.name == name)

    def load_all(self) -> None:
        """Register core, the installed entry points and ``EMBER_PLUGINS`` modules."""
        core_dist = _dist_version("ember-core")
        self.register_module(
            importlib.import_module(CORE_MODULE),
            CORE_PLUGIN,
            distribution="ember-core",
            version=core_dist,
            source="builtin",
        )
        disabled = set(_env_list(ENV_DISABLED_PLUGINS))
        if CORE_PLUGIN in disabled or "ember-core" in disabled:
            raise PluginError(
                f"{ENV_DISABLED_PLUGINS} lists the core plugin, which cannot be disabled; "
                "remove 'core' from it"
            )
        self.report.autoload = not _env_flag(ENV_DISABLE_AUTOLOAD)
        if self.report.autoload:
            self._load_entry_points(disabled)
        for module_name in _env_list(ENV_EXTRA_PLUGINS):
            try:
                module = importlib.import_module(module_name)
            except ImportError as exc:
                raise PluginError(
                    f"{ENV_EXTRA_PLUGINS} names module {module_name!r}, which cannot be "
                    f"imported: {exc}"
                ) from exc
            self.register_module(module, module_name, source=ENV_EXTRA_PLUGINS)
        self.check_pending()

    def check_pending(self) -> None:
        """Refuse hook implementations whose name matches no hook (a typo, usually)."""
        try:
            super().check_pending()
        except pluggy.PluginValidationError as exc:
            raise PluginError(
                f"{exc}; hook names must be one of: {', '.join(_hook_names())}"
            ) from exc

    def _load_entry_points(self, disabled: set[str]) -> None:
        for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            dist = ep.dist.name if ep.dist is not None else None
            version = ep.dist.version if ep.dist is not None else None
            if ep.name in disabled or (dist is not None and dist in disabled):
                self.report.disabled.append(ep.name)
                continue
            try:
                module = ep.load()
            except Exception as exc:
                raise PluginError(
                    f"plugin {ep.name!r} from {dist or 'an unknown distribution'} failed to load "
                    f"({ep.value}): {type(exc).__name__}: {exc}. Fix or uninstall it, or set "
                    f"{ENV_DISABLED_PLUGINS}={ep.name} to skip it"
                ) from exc
            if not isinstance(module, ModuleType):
                raise PluginError(
                    f"entry point {ep.name!r} ({ep.value}) of {dist} must name a module, "
                    f"not a {type(module).__name__}"
                )
            self.register_module(module, ep.name, distribution=dist, version=version)


def _hook_names() -> list[str]:
    return sorted(n for n in dir(hookspecs) if n.startswith("ember_"))


def _dist_version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


_lock = threading.Lock()
_manager: EmberPluginManager | None = None
_on_reset: list[Callable[[], None]] = []


def on_reset(callback: Callable[[], None]) -> None:
    """Call ``callback`` after every :func:`reset_plugin_manager`: a layer above that keeps
    something built from the plugins (the config registry) forgets it there."""
    if callback not in _on_reset:
        _on_reset.append(callback)


def get_plugin_manager() -> EmberPluginManager:
    """The process-wide plugin manager, loaded on first use."""
    global _manager
    with _lock:
        if _manager is None:
            manager = EmberPluginManager()
            manager.load_all()
            _manager = manager
        return _manager


def reset_plugin_manager() -> None:
    """Forget the loaded plugins (and everything built from them); the next use reloads."""
    global _manager
    with _lock:
        _manager = None
    from ember.plugins import registry

    registry.reset_registry()
    for callback in list(_on_reset):
        callback()
