"""The ``ember`` command. Its subcommands come from plugins (core's included), loaded lazily."""

from __future__ import annotations

import sys
from typing import Any

import click

from ember.errors import EmberError
from ember.plugins.errors import PluginError
from ember.plugins.registry import get_registry


class PluginCommandGroup(click.Group):
    """A group whose subcommands are the ``CommandEntry`` registrations of all plugins."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(get_registry().items("command"))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        reg = get_registry().items("command").get(cmd_name)
        if reg is None:
            return None
        cmd = reg.item.load()
        if not isinstance(cmd, click.Command):
            raise PluginError(
                f"plugin {reg.plugin!r} registers CLI command {cmd_name!r} as "
                f"{reg.item.target}, which is not a click command"
            )
        return cmd

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EmberError as exc:  # every error Ember raises names its fix: no traceback
            raise click.ClickException(str(exc)) from exc


@click.group(cls=PluginCommandGroup)
@click.version_option(package_name="ember-core", prog_name="ember")
def cli() -> None:
    """Ember: federated learning from one script to many organisations."""


def main() -> None:
    """Console-script entry point."""
    try:
        cli.main(prog_name="ember")
    except EmberError as exc:  # raised while listing commands
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
