"""``ember recipe list`` and ``ember recipe show NAME``."""

from __future__ import annotations

import inspect
import json
from typing import Any

import click

from ember.cli.output import echo_json, echo_table, format_option
from ember.plugins.errors import PluginError
from ember.plugins.registry import get_registry


@click.group()
def recipe() -> None:
    """List and describe the recipes installed plugins provide."""


@recipe.command("list")
@format_option
def list_recipes(fmt: str) -> None:
    """List every installed recipe."""
    rows = [
        {**reg.item.describe(), "plugin": reg.plugin}
        for reg in get_registry().items("recipe").values()
    ]
    if fmt == "json":
        echo_json(rows)
        return
    echo_table(
        ["name", "framework", "algorithm", "description"],
        [[r["name"], r["framework"], r["algorithm"], r["description"]] for r in rows],
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
    """Describe recipe NAME and its parameters."""
    reg = get_registry().get("recipe", name)
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
