"""User components that travel in a job as their class and constructor arguments.

A data loader, a statistics generator or a PSI item loader is written by the user, made in
``job.py`` and run at the sites. A job carries it as ``{"path": "module.Class", "args":
{...}}``: :class:`Component` records the arguments each instance was made with, so a recipe
can write them into ``job.json`` (they must be JSON values) and the site makes the same
object again. Example::

    class CsvLoader(Component):
        def __init__(self, folder: str, label: str = "y") -> None:
            self.folder, self.label = folder, label

    constructor_arguments(CsvLoader("/data", label="target"))
    # {'folder': '/data', 'label': 'target'}
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

_INIT_ARGS = "_ember_init_args"


class Component:
    """A base class whose instances remember their constructor's arguments by name."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None:
            return

        @functools.wraps(init)
        def recording(self: Component, *args: Any, **kw: Any) -> None:
            if _INIT_ARGS not in self.__dict__:  # the outermost constructor's arguments
                self.__dict__[_INIT_ARGS] = _bound_arguments(init, self, args, kw)
            init(self, *args, **kw)

        cls.__init__ = recording  # type: ignore[method-assign,assignment]


def _bound_arguments(
    init: Any, instance: Component, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> dict[str, Any] | str:
    """The constructor's arguments by name, or why they cannot be named."""
    try:
        bound = inspect.signature(init).bind(instance, *args, **kwargs)
    except TypeError as exc:
        return f"its constructor arguments do not match {init.__qualname__}: {exc}"
    out: dict[str, Any] = {}
    for name, value in list(bound.arguments.items())[1:]:  # not self
        kind = inspect.signature(init).parameters[name].kind
        if kind is inspect.Parameter.VAR_POSITIONAL:
            if value:
                return f"{init.__qualname__} takes *{name}, which cannot be named in a job"
        elif kind is inspect.Parameter.VAR_KEYWORD:
            out.update(value)
        else:
            out[name] = value
    return out


def constructor_arguments(component: Component) -> dict[str, Any]:
    """The arguments ``component`` was made with (ValueError when they cannot be named)."""
    recorded = component.__dict__.get(_INIT_ARGS, {})
    if isinstance(recorded, str):
        raise ValueError(recorded)
    return dict(recorded)
