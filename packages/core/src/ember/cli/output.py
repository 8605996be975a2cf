"""Printing for CLI commands: aligned text tables or JSON (``--format json``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import click

format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Output format.",
)


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def echo_table(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], empty: str, indent: str = ""
) -> None:
    """Print rows as left-aligned columns, or ``empty`` when there are none."""
    if not rows:
        click.echo(indent + empty)
        return
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    click.echo(
        indent
        + "  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()
    )
    for row in cells:
        click.echo(
            indent + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        )
