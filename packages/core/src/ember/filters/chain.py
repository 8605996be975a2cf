"""Filters in a job and at a site: the specs a job carries, and the chains that apply them.

A job carries each filter as a spec (``JobDefinition.filters``)::

    {"side": "client", "direction": "output", "path": "ember.filters.ExcludeVars",
     "args": {"exclude_vars": ["fc.bias"]}, "tasks": ["train"], "clients": null}

(``tasks``/``clients`` null: every task, every site). A site's privacy policy adds specs of
the same form (``path``, or ``name`` of a registered filter type; see
:mod:`ember.filters.policy`). :class:`FilterChain` is what the runtime applies: the site's
chain once where its link to the server sends results and receives tasks, the server's once
where its handlers answer ``get_task`` and ``submit_result``.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ember.common.model import FLModel
from ember.filters.base import (
    CLIENT,
    DIRECTIONS,
    INPUT,
    OUTPUT,
    SIDES,
    Filter,
    FilterContext,
    FilterError,
)
from ember.plugins.errors import PluginError

SPEC_KEYS = ("side", "direction", "path", "name", "args", "tasks", "clients", "origin")


def _names(owner: str, what: str, value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if (
        not isinstance(value, list | tuple)
        or not value
        or not all(isinstance(v, str) and v for v in value)
    ):
        raise FilterError(
            f"{owner}: {what}= takes a list of {what[:-1]} names (or None for all), got {value!r}"
        )
    return list(dict.fromkeys(value))


def check_spec(spec: Any, where: str = "filter spec") -> dict[str, Any]:
    """``spec`` checked and normalised (the error names the key to fix)."""
    if not isinstance(spec, dict):
        raise FilterError(
            f"{where} must be an object with 'path' (or 'name') and 'args', got {spec!r}"
        )
    extra = sorted(set(spec) - set(SPEC_KEYS))
    if extra:
        raise FilterError(
            f"{where}: unknown keys {extra}; a filter spec takes {', '.join(SPEC_KEYS)}"
        )
    side, direction = spec.get("side"), spec.get("direction")
    if side not in SIDES:
        raise FilterError(f"{where}: side must be one of {SIDES}, got {side!r}")
    if direction not in DIRECTIONS:
        raise FilterError(f"{where}: direction must be one of {DIRECTIONS}, got {direction!r}")
    path, name = spec.get("path"), spec.get("name")
    if (path is None) == (name is None) or not isinstance(path or name, str):
        raise FilterError(
            f"{where}: give the filter's class as 'path' ('module.Class') or a registered "
            f"filter type as 'name' ('ExcludeVars'), exactly one of them; got {spec!r}"
        )
    args = spec.get("args", {}) or {}
    if not isinstance(args, dict):
        raise FilterError(f"{where}: args must be an object of constructor arguments, got {args!r}")
    return {
        "side": side,
        "direction": direction,
        **({"path": path} if path is not None else {"name": name}),
        "args": args,
        "tasks": _names(where, "tasks", spec.get("tasks")),
        "clients": _names(where, "clients", spec.get("clients")),
        **({"origin": spec["origin"]} if "origin" in spec else {}),
    }


def filter_class(spec: dict[str, Any]) -> type[Filter]:
    """The class a spec names (by ``path``, or ``name`` through the ``filter`` registry)."""
    from ember.plugins.entries import load_dotted

    try:
        if "path" in spec:
            cls = load_dotted(spec["path"])
        else:
            from ember.plugins.registry import get_registry

            cls = get_registry().get("filter", spec["name"]).item.load()
    except PluginError as exc:
        raise FilterError(f"filter {spec.get('path') or spec.get('name')!r}: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, Filter)):
        raise FilterError(
            f"filter {spec.get('path') or spec.get('name')!r} is not a subclass of "
            "ember.filters.Filter"
        )
    return cls


def build_filter(spec: dict[str, Any], app_dir: Path | None = None) -> Filter:
    """A new instance of the spec's filter, checked; ``app_dir`` (the job's ``app/``
    folder, where the recipe bundled a filter's module) is importable first."""
    if app_dir is not None and str(app_dir) not in sys.path:
        sys.path.insert(0, str(app_dir))
    cls = filter_class(spec)
    try:
        instance = cls(**spec.get("args", {}))
    except TypeError as exc:
        raise FilterError(
            f"filter {cls.__name__} cannot be made from args {spec.get('args')!r}: {exc}"
        ) from None
    instance.check()
    return instance


def spec_json(args: dict[str, Any], owner: str) -> dict[str, Any]:
    """``args`` checked to be JSON values (they travel in job.json)."""
    for key, value in args.items():
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            raise FilterError(
                f"{owner}'s argument {key}= is a {type(value).__name__}, which cannot travel in "
                "a job (arguments must be JSON values)"
            ) from None
    return dict(json.loads(json.dumps(args)))


@dataclasses.dataclass
class _Bound:
    spec: dict[str, Any]
    filters: dict[str, Filter]  # by site (one instance per site: state is per site)
    app_dir: Path | None = None

    def applies(self, task: str, site: str) -> bool:
        tasks, clients = self.spec["tasks"], self.spec["clients"]
        return (tasks is None or task in tasks) and (clients is None or site in clients)

    def instance(self, site: str) -> Filter:
        found = self.filters.get(site)
        if found is None:
            found = self.filters[site] = build_filter(self.spec, self.app_dir)
        return found


class FilterChain:
    """The filters of one side of a job, in order, for both directions.

    ``specs`` are the job's filters then the site policy's (a client's chain): on the way
    out the job's run first and the policy's last, closest to the wire, so nothing a job
    adds runs after the site's own; on the way in the policy's run first. ``app_dir``: the
    job's ``app/`` folder, from which a filter class the recipe bundled is imported."""

    def __init__(
        self,
        side: str,
        specs: Iterable[dict[str, Any]],
        job_id: str = "",
        app_dir: Path | None = None,
    ) -> None:
        self.side = side
        self.job_id = job_id
        self._bound: dict[str, list[_Bound]] = {INPUT: [], OUTPUT: []}
        for spec in specs:
            spec = check_spec(spec)
            if spec["side"] != side:
                continue
            bound = _Bound(spec, {}, app_dir)
            self._bound[spec["direction"]].append(bound)
        policy_first = sorted(self._bound[INPUT], key=lambda b: b.spec.get("origin") != "site")
        self._bound[INPUT] = policy_first
        self._bound[OUTPUT] = sorted(
            self._bound[OUTPUT], key=lambda b: b.spec.get("origin") == "site"
        )

    def __bool__(self) -> bool:
        return any(self._bound.values())

    def build(self, sites: Sequence[str]) -> None:
        """Make every filter that applies to one of ``sites`` now (bad arguments fail
        before the job runs, not at its first task)."""
        for bounds in self._bound.values():
            for bound in bounds:
                for site in sites:
                    if bound.spec["clients"] is None or site in bound.spec["clients"]:
                        bound.instance(site)

    def selected(self, direction: str, task: str, site: str) -> list[Filter]:
        return [b.instance(site) for b in self._bound[direction] if b.applies(task, site)]

    def apply(
        self,
        direction: str,
        task: str,
        site: str,
        model: FLModel | None,
        received: FLModel | None = None,
        fetcher: Any = None,
    ) -> FLModel | None:
        """``model`` through the filters selected for ``(direction, task, site)``; tensors
        still at their owner are pulled first (through ``fetcher`` when relayed)."""
        if model is None:
            return None
        chosen = self.selected(direction, task, site)
        if not chosen:
            return model
        # the server's task data may be shared by every site's task: pull it, never release
        model = materialize(
            model, fetcher, release=not (self.side != CLIENT and direction == OUTPUT)
        )
        ctx = FilterContext(self.side, direction, task, site, self.job_id, received)
        for item in chosen:
            out = item.process(model, ctx)
            if not isinstance(out, FLModel):
                raise FilterError(
                    f"filter {type(item).__name__}.process returned {type(out).__name__}; "
                    "it must return an FLModel"
                )
            model = out
        return model

    def wants_received(self, task: str, site: str) -> bool:
        """Whether a client output filter for ``task`` may use the task data received."""
        return self.side == CLIENT and bool(self.selected(OUTPUT, task, site))


def materialize(model: FLModel, fetcher: Any = None, release: bool = True) -> FLModel:
    """A copy of ``model`` whose params are in memory: deferred tensors pulled (a relayed
    one through ``fetcher``) and, with ``release``, released at their owner."""
    from ember.streaming.lazy import DeferredTensor, RelayedRef, release_all, resolve_relayed

    if not model.params:
        return dataclasses.replace(model, meta=dict(model.meta))
    params: dict[str, Any] = {}
    relayed: set[tuple[str, str]] = set()
    for name, value in model.params.items():
        if isinstance(value, RelayedRef):
            relayed.add((str(value.wire["ref"][0]), str(value.wire["ref"][1])))
        if fetcher is not None and (
            isinstance(value, RelayedRef) or callable(getattr(value, "resolve_relayed", None))
        ):
            value = resolve_relayed(value, fetcher)
        elif isinstance(value, DeferredTensor):
            value = value.fetch(keep=not release, writable=False)
        params[name] = value
    if release:
        release_all(model.params)
        for owner, ref_id in relayed:
            fetcher.release(owner, ref_id)
    return dataclasses.replace(model, params=params, meta=dict(model.meta))


def add_filter_spec(
    method: str,
    side: str,
    direction: str,
    value: Any,
    tasks: Any,
    clients: Any,
) -> dict[str, Any]:
    """The job spec of ``value`` (a :class:`Filter` instance) for ``recipe.<method>``: its
    class path and recorded constructor arguments (the recipe bundles a module beside
    job.py into the job, as it does data loaders). Errors name the fix."""
    from ember.common.components import constructor_arguments

    if isinstance(value, type) and issubclass(value, Filter):
        raise FilterError(
            f"recipe.{method} takes a filter instance, got the class {value.__name__}; "
            f"write {value.__name__}(...)"
        )
    if not isinstance(value, Filter):
        raise FilterError(
            f"recipe.{method} takes an instance of an ember.filters.Filter subclass (for "
            f"example ExcludeVars(['fc.bias'])), got {type(value).__name__}"
        )
    cls = type(value)
    if cls.__module__ == "__main__" or "." in cls.__qualname__:
        raise FilterError(
            f"recipe.{method}: filter class {cls.__qualname__} must be defined at the top level "
            "of a module beside job.py (not in job.py itself): the sites import it"
        )
    try:
        args = constructor_arguments(value)
    except ValueError as exc:
        raise FilterError(f"recipe.{method}: {exc}") from None
    value.check()
    spec = check_spec(
        {
            "side": side,
            "direction": direction,
            "path": f"{cls.__module__}.{cls.__qualname__}",
            "args": spec_json(args, cls.__name__),
            "tasks": tasks,
            "clients": clients,
        },
        f"recipe.{method}",
    )
    return spec
