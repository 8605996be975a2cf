"""Which decomposer handles which type: plugin registrations plus runtime ``register`` calls."""

from __future__ import annotations

import dataclasses
import enum
import threading
from typing import Any

from ember.fobs.decomposer import Context, Decomposer, type_name
from ember.fobs.errors import FOBSError
from ember.plugins.errors import PluginError
from ember.plugins.registry import Registry, get_registry

_REGISTER_HINT = (
    "register it with ember.fobs.register(cls) (Enums and dataclasses), "
    "ember.fobs.register(decomposer) at run time, or from a plugin's "
    "ember_fobs_decomposers hook"
)


class EnumDecomposer:
    """A registered :class:`enum.Enum`, sent by value."""

    def __init__(self, cls: type[enum.Enum]) -> None:
        self.cls = cls

    def supported_type(self) -> type:
        return self.cls

    def decompose(self, obj: enum.Enum, ctx: Context) -> Any:
        return obj.value

    def recompose(self, data: Any, ctx: Context) -> enum.Enum:
        try:
            return self.cls(data)
        except ValueError as exc:
            raise FOBSError(f"{data!r} is not a value of {type_name(self.cls)}") from exc


class DataclassDecomposer:
    """A registered dataclass, sent as a dict of its fields."""

    def __init__(self, cls: type) -> None:
        self.cls = cls
        self.fields = [f for f in dataclasses.fields(cls)]

    def supported_type(self) -> type:
        return self.cls

    def decompose(self, obj: Any, ctx: Context) -> Any:
        return {f.name: getattr(obj, f.name) for f in self.fields}

    def recompose(self, data: Any, ctx: Context) -> Any:
        names = {f.name for f in self.fields}
        if not isinstance(data, dict) or set(data) != names:
            raise FOBSError(f"malformed {type_name(self.cls)}: expected fields {sorted(names)}")
        obj = self.cls(**{f.name: data[f.name] for f in self.fields if f.init})
        for f in self.fields:
            if not f.init:
                object.__setattr__(obj, f.name, data[f.name])
        return obj


def as_decomposer(target: Any) -> Decomposer:
    """Accept a decomposer instance, a decomposer class, an Enum class or a dataclass."""
    if isinstance(target, type):
        if issubclass(target, enum.Enum):
            return EnumDecomposer(target)
        if dataclasses.is_dataclass(target):
            return DataclassDecomposer(target)
        try:
            target = target()
        except TypeError as exc:
            raise FOBSError(
                f"{type_name(target)} is neither an Enum, a dataclass nor a decomposer class "
                f"that builds with no arguments: {exc}"
            ) from exc
    if not isinstance(target, Decomposer):
        raise FOBSError(
            f"{target!r} is not a decomposer: it needs supported_type(), decompose(obj, ctx) "
            "and recompose(data, ctx)"
        )
    return target


class DecomposerTable:
    """Decomposers by wire name; plugin entries are imported on first use."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._lock = threading.Lock()
        self._loaded: dict[str, Decomposer] = {}
        self._runtime: dict[str, Decomposer] = {}
        self._by_type: dict[type, tuple[str, Decomposer] | None] = {}

    def register(self, target: Any) -> Decomposer:
        """Register a decomposer (or an Enum / dataclass) for this process."""
        dec = as_decomposer(target)
        name = type_name(dec.supported_type())
        with self._lock:
            plugin = self.registry.items("decomposer").get(name)
            if plugin is not None:
                raise FOBSError(
                    f"{name} already has a decomposer from plugin {plugin.plugin!r}; "
                    "a second one would make decoding ambiguous"
                )
            current = self._runtime.get(name)
            if current is not None and not _same(current, dec):
                raise FOBSError(f"{name} is already registered with {current!r}")
            self._runtime[name] = dec
            self._by_type.clear()
        return dec

    def by_name(self, name: str) -> Decomposer | None:
        """The decomposer registered under the wire name ``name``, or None."""
        dec = self._runtime.get(name) or self._loaded.get(name)
        if dec is not None:
            return dec
        reg = self.registry.items("decomposer").get(name)
        if reg is None:
            return None
        try:
            dec = as_decomposer(reg.item.load())
        except (PluginError, FOBSError) as exc:
            raise FOBSError(f"decomposer for {name} from plugin {reg.plugin!r}: {exc}") from exc
        actual = type_name(dec.supported_type())
        if actual != name:
            raise FOBSError(
                f"plugin {reg.plugin!r} registers {reg.item.target} for {name}, but it "
                f"supports {actual}"
            )
        with self._lock:
            self._loaded.setdefault(name, dec)
        return dec

    def for_type(self, cls: type) -> tuple[str, Decomposer]:
        """The wire name and decomposer that serialize instances of ``cls``."""
        try:
            found = self._by_type[cls]
        except KeyError:
            found = self._lookup(cls)
            self._by_type[cls] = found
        if found is None:
            raise FOBSError(f"cannot serialize type {type_name(cls)}: {_REGISTER_HINT}")
        return found

    def _lookup(self, cls: type) -> tuple[str, Decomposer] | None:
        for i, base in enumerate(cls.__mro__):
            name = type_name(base)
            dec = self.by_name(name)
            if dec is not None and (i == 0 or getattr(dec, "match_subclasses", False)):
                return name, dec
        return None

    def names(self) -> list[str]:
        """Every wire name this table can decode."""
        return sorted(set(self.registry.items("decomposer")) | set(self._runtime))


def _same(a: Decomposer, b: Decomposer) -> bool:
    if (
        type(a) is type(b)
        and isinstance(a, EnumDecomposer | DataclassDecomposer)
        and isinstance(b, EnumDecomposer | DataclassDecomposer)
    ):
        return a.cls is b.cls
    return a is b


_table_lock = threading.Lock()
_table: DecomposerTable | None = None


def get_table() -> DecomposerTable:
    """The table of the current plugin registry (rebuilt when plugins are reloaded)."""
    global _table
    registry = get_registry()
    table = _table
    if table is not None and table.registry is registry:
        return table
    with _table_lock:
        if _table is None or _table.registry is not registry:
            previous = _table
            _table = DecomposerTable(registry)
            if previous is not None:
                for dec in previous._runtime.values():
                    _table.register(dec)
        return _table
