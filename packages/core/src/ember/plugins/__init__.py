"""Ember's plugin system (pluggy, project name and entry-point group ``ember``).

A plugin is a module with ``@hookimpl`` functions for the hooks in
:mod:`ember.plugins.hookspecs`, announced by an entry point in the group ``ember``.
"""

from ember.plugins.entries import (
    CommandEntry,
    DecomposerEntry,
    FrameworkEntry,
    ParamsConverterEntry,
    RecipeEntry,
    TensorAdapterEntry,
    load_dotted,
    load_target,
)
from ember.plugins.errors import PluginConflictError, PluginError, UnknownNameError
from ember.plugins.manager import get_plugin_manager, reset_plugin_manager
from ember.plugins.markers import ENTRY_POINT_GROUP, hookimpl, hookspec
from ember.plugins.registry import get_registry

__all__ = [
    "ENTRY_POINT_GROUP",
    "CommandEntry",
    "DecomposerEntry",
    "FrameworkEntry",
    "ParamsConverterEntry",
    "PluginConflictError",
    "PluginError",
    "RecipeEntry",
    "TensorAdapterEntry",
    "UnknownNameError",
    "get_plugin_manager",
    "get_registry",
    "hookimpl",
    "hookspec",
    "load_dotted",
    "load_target",
    "reset_plugin_manager",
]
