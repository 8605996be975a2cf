"""A declared tunable: name, type, default, unit and what it is for."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ember.errors import EmberError

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
    """

    name: str
    type: type
    default: Any
    unit: str
    bounds: str
    advice: str
    minimum: float | None = None

    def __post_init__(self) -> None:
        if self.type not in (int, float, bool, str):
            raise ConfigError(f"setting {self.name}: type must be int, float, bool or str")
        self.validate(self.default, origin="its declared default")

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
