"""Errors raised by the plugin system."""

from __future__ import annotations

from ember.errors import EmberError


class PluginError(EmberError):
    """A plugin could not be loaded or a registration is invalid."""


class UnknownNameError(PluginError, LookupError):
    """A name that no installed plugin registers."""


class PluginConflictError(PluginError):
    """Two plugins register the same name for the same kind of component."""
