"""Early-stopping conditions written as text, e.g. ``"accuracy >= 0.9"`` (parsed, never eval'd)."""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
    "==": operator.eq,
}
_PATTERN = re.compile(
    r"^\s*([A-Za-z_][\w./-]*)\s*(>=|<=|==|>|<)\s*([-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?)\s*$"
)


@dataclass(frozen=True)
class StopCondition:
    """``metric op value``: true when the round's aggregated ``metric`` satisfies it."""

    metric: str
    op: str
    value: float

    @classmethod
    def parse(cls, text: str) -> StopCondition:
        match = _PATTERN.match(text)
        if match is None:
            raise ValueError(
                f"stop_cond {text!r} is not of the form '<metric> <op> <number>' with op one of "
                f"{', '.join(_OPS)} (for example 'accuracy >= 0.9')"
            )
        return cls(match.group(1), match.group(2), float(match.group(3)))

    def met(self, metrics: dict[str, float]) -> bool:
        value = metrics.get(self.metric)
        return value is not None and _OPS[self.op](value, self.value)

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.value:g}"
