"""Resolving settings: per-job overrides, then the environment, then the declared default."""

from __future__ import annotations

import contextlib
import contextvars
import difflib
import os
from collections.abc import Iterator, Mapping
from typing import Any

from ember.common.setting import ConfigError, Setting
from ember.plugins.manager import on_reset


def declared_settings() -> dict[str, Setting]:
    """Every setting declared by core and the loaded plugins, by name."""
    from ember.plugins.registry import get_registry  # loads the plugins on first use

    return {name: reg.item for name, reg in get_registry().items("setting").items()}


def _unknown(name: str, known: Mapping[str, Setting]) -> ConfigError:
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return ConfigError(
        f"unknown setting {name!r}.{hint} Run `ember config list` to see every setting."
    )


class Config:
    """The settings of one job (or of the process, when no job overrides anything).

    Precedence: ``overrides`` (the job's own config) > environment variable > default.
    Unknown names and values of the wrong type are refused when the config is built.
    """

    def __init__(
        self, overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
    ) -> None:
        self.settings = declared_settings()
        env = os.environ if environ is None else environ
        self._values: dict[str, Any] = {}
        self._sources: dict[str, str] = {}
        for name, setting in self.settings.items():
            if setting.env_var in env:
                self._values[name] = setting.parse(env[setting.env_var], setting.env_var)
                self._sources[name] = "env"
        for name, value in (overrides or {}).items():
            declared = self.settings.get(name)
            if declared is None:
                raise _unknown(name, self.settings)
            self._values[name] = declared.validate(value, "the job config")
            self._sources[name] = "job"

    def get(self, name: str) -> Any:
        """The value of setting ``name``."""
        if name in self._values:
            return self._values[name]
        setting = self.settings.get(name)
        if setting is None:
            raise _unknown(name, self.settings)
        return setting.default

    def source(self, name: str) -> str:
        """Where the value of ``name`` comes from: ``job``, ``env`` or ``default``."""
        self.get(name)
        return self._sources.get(name, "default")

    def as_dict(self) -> dict[str, Any]:
        return {name: self.get(name) for name in self.settings}


_current: contextvars.ContextVar[Config | None] = contextvars.ContextVar(
    "ember_config", default=None
)
_process: Config | None = None


def current_config() -> Config:
    """The config in force: the job's (see :func:`use_config`) or the process default.

    The process default reads the environment once; :func:`reset_process_config` re-reads it.
    """
    global _process
    cfg = _current.get()
    if cfg is not None:
        return cfg
    if _process is None:
        _process = Config()
    return _process


def get_setting(name: str) -> Any:
    """The value of one setting in the current config."""
    return current_config().get(name)


@contextlib.contextmanager
def use_config(config: Config) -> Iterator[Config]:
    """Make ``config`` the current one in this thread/context (a job does this for its work)."""
    token = _current.set(config)
    try:
        yield config
    finally:
        _current.reset(token)


def use_process_config(config: Config) -> None:
    """Make ``config`` this process's default (a script's process takes its job's config)."""
    global _process
    _process = config


def reset_process_config() -> None:
    """Re-read the environment on next use (tests, after changing ``os.environ``)."""
    global _process
    _process = None


on_reset(reset_process_config)  # the declared settings come from the plugins
