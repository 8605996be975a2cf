"""``ember config list``, ``ember config docs`` and ``ember config troubleshooting``."""

from __future__ import annotations

from pathlib import Path

import click

from ember.cli.output import echo_json, echo_table, format_option
from ember.config import current_config, declared_settings
from ember.config.reference import render_markdown, render_troubleshooting


@click.group()
def config() -> None:
    """Show every setting, or write the config reference."""


@config.command("list")
@format_option
def list_settings(fmt: str) -> None:
    """Settings in force here: value, where it comes from, unit and environment variable."""
    cfg = current_config()
    rows = [
        {
            "name": s.name,
            "value": cfg.get(s.name),
            "source": cfg.source(s.name),
            "unit": s.unit,
            "default": s.default,
            "env_var": s.env_var,
            "bounds": s.bounds,
        }
        for s in cfg.settings.values()
    ]
    if fmt == "json":
        echo_json(rows)
        return
    echo_table(
        ["name", "value", "source", "unit", "env_var"],
        [[r["name"], r["value"], r["source"], r["unit"], r["env_var"]] for r in rows],
        empty="No settings declared.",
    )


@config.command("docs")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to this file instead of standard output.",
)
def docs(output: Path | None) -> None:
    """Generate the Markdown config reference (docs/reference/config.md)."""
    text = render_markdown(list(declared_settings().values()))
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}")


@config.command("troubleshooting")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to this file instead of standard output.",
)
def troubleshooting(output: Path | None) -> None:
    """Generate the timeout troubleshooting guide (docs/troubleshooting.md)."""
    text = render_troubleshooting(list(declared_settings().values()))
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}")
