"""``ember recipe list`` and ``ember recipe show NAME``."""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterable
from typing import Any

import click

from ember.cli.output import echo_json, echo_table, format_option
from ember.plugins.catalog import ALIASES
from ember.plugins.errors import PluginError
from ember.plugins.registry import Registered, get_registry


@click.group()
def recipe() -> None:
    """List and describe the recipes installed plugins provide."""


def framework_name(name: str) -> str:
    """A framework name in the catalog's spelling: ``pt``/``torch`` -> ``pytorch``, ..."""
    name = name.strip().lower()
    return ALIASES.get(name, name)


def recipe_name(name: str, installed: Iterable[str]) -> str:
    """The installed recipe ``name`` means: itself, or an NVFlare-style alias of one.

    ``<algorithm>-<framework>`` (``fedavg-pt``, ``fedavg-tensorflow``, ``fedavg-numpy``) and
    an aliased framework prefix (``pt-fedavg``) both name ``<framework>-<algorithm>``
    (``pytorch-fedavg``), framework aliases as in :data:`ember.plugins.catalog.ALIASES`.
    A name that matches nothing is returned as it is (the registry then says what is there).
    """
    names = set(installed)
    if name in names:
        return name
    lowered = name.strip().lower()
    candidates = [lowered]
    first, sep, rest = lowered.partition("-")
    if sep:
        candidates.append(f"{framework_name(first)}-{rest}")  # pt-fedavg
        head, _, last = lowered.rpartition("-")
        candidates.append(f"{framework_name(last)}-{head}")  # fedavg-pt
    return next((c for c in candidates if c in names), name)


def get_recipe(name: str) -> Registered:
    """The registration of recipe ``name`` (or of the recipe its alias names)."""
    registry = get_registry()
    return registry.get("recipe", recipe_name(name, registry.items("recipe")))


def _matches(row: dict[str, Any], framework: str | None, text: str | None) -> bool:
    if framework is not None and str(row.get("framework", "")).lower() != framework:
        return False
    if text is not None:
        fields = (row.get("name"), row.get("algorithm"), row.get("description"))
        return any(text.lower() in str(f or "").lower() for f in fields)
    return True


@recipe.command("list")
@click.option(
    "--framework",
    "framework",
    metavar="NAME",
    help="Only this framework's recipes (pytorch, tensorflow, sklearn, numpy; pt, tf, ...).",
)
@click.option(
    "--filter",
    "text",
    metavar="TEXT",
    help="Only recipes whose name, algorithm or description contains TEXT (any case).",
)
@format_option
def list_recipes(framework: str | None, text: str | None, fmt: str) -> None:
    """List every installed recipe (or those --framework and --filter select)."""
    wanted = framework_name(framework) if framework is not None else None
    rows = [
        {**reg.item.describe(), "plugin": reg.plugin}
        for reg in get_registry().items("recipe").values()
    ]
    selected = [r for r in rows if _matches(r, wanted, text)]
    if fmt == "json":
        echo_json(selected)
        return
    if rows and not selected:
        what = [f"framework {wanted!r}"] if wanted is not None else []
        what += [f"text {text!r}"] if text is not None else []
        frameworks = ", ".join(sorted({str(r["framework"]) for r in rows}))
        click.echo(f"No installed recipe matches {' and '.join(what)} (frameworks: {frameworks}).")
        return
    echo_table(
        ["name", "framework", "algorithm", "description"],
        [[r["name"], r["framework"], r["algorithm"], r["description"]] for r in selected],
        empty="No recipes installed. Framework packages provide them: pip install ember-pt, "
        "ember-sklearn, ...",
    )


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return repr(value)


def describe_parameters(cls: type) -> list[dict[str, Any]]:
    """The constructor's parameters: name, annotation, default (or required)."""
    params = []
    for p in inspect.signature(cls).parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        annotation = p.annotation
        if annotation is not p.empty and not isinstance(annotation, str):
            annotation = inspect.formatannotation(annotation)
        params.append(
            {
                "name": p.name,
                "type": None if annotation is p.empty else annotation,
                "required": p.default is p.empty,
                "default": None if p.default is p.empty else _jsonable(p.default),
            }
        )
    return params


@recipe.command("show")
@click.argument("name")
@format_option
def show_recipe(name: str, fmt: str) -> None:
    """Describe recipe NAME and its parameters.

    NAME may be NVFlare-style, algorithm first: ``fedavg-pt`` is ``pytorch-fedavg``.
    """
    reg = get_recipe(name)
    cls = reg.item.load()
    if not isinstance(cls, type):
        raise PluginError(f"recipe {name!r} ({reg.item.target}) is not a class")
    data = {
        **reg.item.describe(),
        "plugin": reg.plugin,
        "class": f"{cls.__module__}.{cls.__qualname__}",
        "doc": inspect.getdoc(cls) or "",
        "parameters": describe_parameters(cls),
    }
    if fmt == "json":
        echo_json(data)
        return
    click.echo(f"{data['name']}: {data['description']}")
    click.echo(f"  framework: {data['framework']}    algorithm: {data['algorithm']}")
    click.echo(f"  class: {data['class']}  (plugin {data['plugin']})")
    click.echo("  parameters:")
    echo_table(
        ["name", "type", "default"],
        [
            [p["name"], p["type"] or "", "(required)" if p["required"] else repr(p["default"])]
            for p in data["parameters"]
        ],
        empty="(none)",
        indent="    ",
    )
