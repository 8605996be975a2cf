"""``ember plugins``: what is installed and what each plugin registers."""

from __future__ import annotations

from typing import Any

import click

from ember.cli.output import echo_json, format_option
from ember.plugins.registry import KINDS, get_registry


@click.command()
@format_option
def plugins(fmt: str) -> None:
    """List installed plugins, their versions and what each registers."""
    registry = get_registry()
    report = registry.manager.report
    by_plugin = registry.by_plugin()
    rows: list[dict[str, Any]] = [
        {
            "name": p.name,
            "distribution": p.distribution,
            "version": p.version,
            "module": p.module,
            "source": p.source,
            "registers": by_plugin.get(p.name, {}),
        }
        for p in report.plugins
    ]
    data = {"autoload": report.autoload, "disabled": report.disabled, "plugins": rows}
    if fmt == "json":
        echo_json(data)
        return
    for p in rows:
        origin = (
            f"{p['distribution']} {p['version'] or ''}".strip()
            if p["distribution"]
            else p["source"]
        )
        click.echo(f"{p['name']}  ({origin}; {p['module']})")
        registers = p["registers"]
        if not registers:
            click.echo("    registers nothing")
        for kind, names in registers.items():
            click.echo(f"    {KINDS[kind].label}: {', '.join(names)}")
    if not report.autoload:
        click.echo("plugin autoloading is off (EMBER_DISABLE_PLUGIN_AUTOLOAD)")
    if report.disabled:
        click.echo(f"disabled (EMBER_DISABLED_PLUGINS): {', '.join(report.disabled)}")
