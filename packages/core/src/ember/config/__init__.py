"""The config registry: every tunable declared once, overridable per job and by environment."""

from ember.common.setting import ConfigError, Setting
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
    "Config",
    "ConfigError",
    "Setting",
    "current_config",
    "declared_settings",
    "get_setting",
    "reset_process_config",
    "use_config",
    "use_process_config",
]
