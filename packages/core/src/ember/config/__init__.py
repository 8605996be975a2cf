"""The config registry: every tunable declared once, overridable per job and by environment."""

from ember.common.setting import SCENARIOS, ConfigError, Setting
from ember.config.relations import (
    ConfigRelationError,
    Relation,
    SettingTimeout,
    check_relations,
    declared_relations,
    describe_setting,
    describe_timeout,
    setting_timeout,
)
from ember.config.store import (
    Config,
    current_config,
    declared_settings,
    get_setting,
    reset_process_config,
    use_config,
    use_process_config,
)

__all__ = [
    "SCENARIOS",
    "Config",
    "ConfigError",
    "ConfigRelationError",
    "Relation",
    "Setting",
    "SettingTimeout",
    "check_relations",
    "current_config",
    "declared_relations",
    "declared_settings",
    "describe_setting",
    "describe_timeout",
    "get_setting",
    "reset_process_config",
    "setting_timeout",
    "use_config",
    "use_process_config",
]
