"""A declared tunable: name, type, default, unit and what it is for."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ember.errors import EmberError

#: the situations a setting matters in; the troubleshooting guide has a section for each
SCENARIOS = ("large models", "slow sites", "many sites", "edge devices", "production")

_BOOL_WORDS = {
    "1": True,
    "true": True,
    "yes": True,
    "on": True,
    "0": False,
    "false": False,
    "no": False,
    "off": False,
}


class ConfigError(EmberError, ValueError):
    """A setting's name or value is wrong."""


@dataclass(frozen=True)
class Setting:
    """One tunable, declared once.

    ``bounds`` says what the value limits; ``advice`` says when to raise (or lower) it.
    The environment variable is ``EMBER_`` + the name upper-cased with dots as underscores.

    For the troubleshooting guide (``docs/troubleshooting.md``, generated): ``symptom`` is
    what a user sees when the value is too small (the error's words), ``scenarios`` the
    situations it matters in (from :data:`SCENARIOS`), and ``at_least`` the settings this
    one must not be below; a job whose config breaks that is refused when it is submitted
    (``ember.config.check_relations``).
    """

    name: str
    type: type
    default: Any
    unit: str
    bounds: str
    advice: str
    minimum: float | None = None
    symptom: str = ""
    scenarios: tuple[str, ...] = ()
    at_least: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.type not in (int, float, bool, str):
            raise ConfigError(f"setting {self.name}: type must be int, float, bool or str")
        unknown = [s for s in self.scenarios if s not in SCENARIOS]
        if unknown or not isinstance(self.scenarios, tuple):
            raise ConfigError(
                f"setting {self.name}: scenarios must be a tuple of {SCENARIOS}, got "
                f"{self.scenarios!r}"
            )
        if self.at_least and (self.type not in (int, float) or self.name in self.at_least):
            raise ConfigError(
                f"setting {self.name}: at_least relates numbers to other settings, got "
                f"{self.at_least!r}"
            )
        self.validate(self.default, origin="its declared default")

    def format_value(self, value: Any) -> str:
        """``value`` with its unit, as messages show it: ``600 s``, ``4194304 bytes``."""
        if self.type is bool:
            return "true" if value else "false"
        if self.type is str:
            return repr(value)
        unit = {"seconds": "s"}.get(self.unit, self.unit)
        number = f"{value:g}" if isinstance(value, float) else str(value)
        return f"{number} {unit}" if unit else number

    @property
    def env_var(self) -> str:
        return "EMBER_" + self.name.upper().replace(".", "_")

    @property
    def group(self) -> str:
        return self.name.split(".", 1)[0]

    def validate(self, value: Any, origin: str) -> Any:
        """Check (and coerce int to float) a value for this setting."""
        ok = isinstance(value, self.type) and not (
            self.type is not bool and isinstance(value, bool)
        )
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            raise ConfigError(
                f"setting {self.name} from {origin} must be {self.type.__name__}, "
                f"got {type(value).__name__} {value!r}"
            )
        if self.minimum is not None and value < self.minimum:
            raise ConfigError(
                f"setting {self.name} from {origin} must be >= {self.minimum} {self.unit}, "
                f"got {value!r}"
            )
        return value

    def parse(self, raw: str, origin: str) -> Any:
        """Parse a value given as text (an environment variable)."""
        text = raw.strip()
        try:
            if self.type is bool:
                value: Any = _BOOL_WORDS[text.lower()]
            elif self.type is int:
                value = int(text.replace("_", ""))
            elif self.type is float:
                value = float(text.replace("_", ""))
            else:
                value = raw
        except (KeyError, ValueError):
            raise ConfigError(
                f"{origin}={raw!r} is not a valid {self.type.__name__} for setting {self.name}"
                + (f" (use one of {sorted(_BOOL_WORDS)})" if self.type is bool else "")
            ) from None
        return self.validate(value, origin)
