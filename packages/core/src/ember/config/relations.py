"""What an error says about a setting, and the relations between settings a job must keep.

Every timeout error Ember raises names the setting behind it, the value in force and where
that value came from, through :func:`describe_setting` (or :func:`describe_timeout` for a
timeout handed down as a :class:`SettingTimeout`)::

    runtime.task_timeout = 600 s (default)
    streaming.transaction_timeout = 60 s (env EMBER_STREAMING_TRANSACTION_TIMEOUT)
    runtime.task_timeout = 30 s (job config)

``Setting.at_least`` declares that one setting must not be below others (a result waits in
a transaction while the server waits for the round, so ``streaming.transaction_timeout``
must be at least ``runtime.task_timeout``); :func:`check_relations` refuses a job whose
config breaks one, naming both settings, their values and their sources. Recipe export,
SimEnv and the admin API's submit (PocEnv, ProdEnv, ``ember job submit``) call it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ember.common.setting import ConfigError, Setting
from ember.config.store import Config, current_config

_UNSET: Any = object()


class ConfigRelationError(ConfigError):
    """A job's settings break a declared relation (one must be at least another)."""


def _source_words(setting: Setting, source: str) -> str:
    if source == "env":
        return f"env {setting.env_var}"
    if source == "job":
        return "job config"
    return source


def describe_setting(
    name: str, value: Any = _UNSET, *, config: Config | None = None, source: str | None = None
) -> str:
    """``"runtime.task_timeout = 600 s (default)"``: the setting, its value in ``config``
    (the current one by default) and where that value comes from (``default``, ``env
    EMBER_...``, ``job config``).

    ``value``: the value actually used, when the caller was given one of its own (a task's
    own timeout); it is shown with the setting's value beside it when they differ.
    """
    cfg = config or current_config()
    setting = cfg.settings.get(name)
    if setting is None:
        cfg.get(name)  # raises the unknown-setting error, with close matches
        raise AssertionError  # pragma: no cover
    if source is not None and value is not _UNSET:  # the caller knows both (SettingTimeout)
        return f"{name} = {setting.format_value(value)} ({_source_words(setting, source)})"
    current = cfg.get(name)
    where = _source_words(setting, source or cfg.source(name))
    if value is _UNSET or value == current:
        return f"{name} = {setting.format_value(current)} ({where})"
    return (
        f"{name} = {setting.format_value(value)} (set for this call; the job's value is "
        f"{setting.format_value(current)}, {where})"
    )


class SettingTimeout(float):
    """A timeout in seconds that remembers the setting (and source) it was read from, so a
    layer that only receives a number can still say which setting to change."""

    setting: str
    source: str

    def __new__(cls, value: float, setting: str, source: str = "default") -> SettingTimeout:
        self = super().__new__(cls, value)
        self.setting = setting
        self.source = source
        return self

    def __reduce__(self) -> Any:  # copies and pickles keep the provenance
        return (SettingTimeout, (float(self), self.setting, self.source))


def setting_timeout(name: str, config: Config | None = None) -> SettingTimeout:
    """The value of the timeout setting ``name`` (in ``config``, else the current one), as a
    :class:`SettingTimeout`."""
    cfg = config or current_config()
    return SettingTimeout(float(cfg.get(name)), name, cfg.source(name))


def describe_timeout(timeout: float | None, fallback: str | None = None) -> str:
    """What a raise site says about ``timeout``: :func:`describe_setting` of the setting it
    came from (a :class:`SettingTimeout`), else of ``fallback`` with the value it had here,
    else the bare value (a limit the caller chose, such as ``get_result(timeout=...)``)."""
    if isinstance(timeout, SettingTimeout):
        try:
            return describe_setting(timeout.setting, float(timeout), source=timeout.source)
        except ConfigError:  # a plugin's setting that is no longer registered
            return f"{timeout.setting} = {float(timeout):g} s ({timeout.source})"
    if fallback is not None and timeout is not None:
        return describe_setting(fallback, float(timeout))
    if timeout is None:
        return "no time limit"
    return f"{float(timeout):g} s (the limit the caller passed)"


@dataclass(frozen=True)
class Relation:
    """``high`` must be at least ``low`` (both numeric settings of the same unit)."""

    high: str
    low: str

    def describe(self, settings: Mapping[str, Setting]) -> str:
        return f"`{self.high}` >= `{self.low}`"


def declared_relations(settings: Mapping[str, Setting]) -> list[Relation]:
    """Every ``at_least`` of the registered settings, in name order. A relation naming a
    setting nobody registered is an error (a typo in a declaration)."""
    out = []
    for setting in sorted(settings.values(), key=lambda s: s.name):
        for low in setting.at_least:
            if low not in settings:
                raise ConfigError(
                    f"setting {setting.name} must be at least {low!r}, which is not a "
                    "registered setting"
                )
            out.append(Relation(setting.name, low))
    return out


def check_relations(
    config: Config | Mapping[str, Any] | None = None, what: str = "this job"
) -> None:
    """Refuse a config (a :class:`Config`, or a job's overrides) that breaks a declared
    relation: :class:`ConfigRelationError` naming both settings, their values and sources."""
    if config is None:
        cfg = current_config()
    elif isinstance(config, Config):
        cfg = config
    else:
        cfg = Config(config)
    problems = []
    for rel in declared_relations(cfg.settings):
        if cfg.get(rel.high) < cfg.get(rel.low):
            problems.append(
                f"{describe_setting(rel.high, config=cfg)} is below "
                f"{describe_setting(rel.low, config=cfg)}; raise {rel.high} (or lower "
                f"{rel.low}): {cfg.settings[rel.high].advice}"
            )
    if problems:
        raise ConfigRelationError(
            f"{what} cannot run with these settings: "
            + "; ".join(problems)
            + " (see docs/troubleshooting.md)"
        )
