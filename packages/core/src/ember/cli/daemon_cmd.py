"""``ember daemon start|stop|status --kit DIR``: one participant's daemon from its startup kit
(what a provisioned kit's start.sh / stop.sh run)."""

from __future__ import annotations

from pathlib import Path

import click

from ember.cli.output import echo_json, format_option

kit_option = click.option(
    "-k",
    "--kit",
    "folder",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    required=True,
    help="The participant's folder (or its startup/ folder).",
)


def _kit(folder: Path):  # type: ignore[no-untyped-def]
    from ember.system.kit import Kit

    kit = Kit.load(folder)  # a KitError is printed by the `ember` group, as every EmberError
    if kit.kind not in ("server", "client"):
        raise click.ClickException(f"{kit.folder} is an {kit.kind} kit: no daemon runs from it")
    return kit


@click.group()
def daemon() -> None:
    """Run a server or client daemon from its startup kit."""


@daemon.command()
@kit_option
@format_option
def start(folder: Path, fmt: str) -> None:
    """Start the daemon (returns once it is up: listening, or connected to the server)."""
    from ember.system import daemon as daemons

    kit = _kit(folder)
    pid = daemons.start(kit.kind, kit.folder)
    if fmt == "json":
        echo_json({"name": kit.name, "kind": kit.kind, "pid": pid})
    else:
        click.echo(f"{kit.kind} {kit.name} running (pid {pid})")


@daemon.command()
@kit_option
@format_option
def stop(folder: Path, fmt: str) -> None:
    """Stop the daemon and the jobs it runs."""
    from ember.system import daemon as daemons

    kit = _kit(folder)
    stopped = daemons.stop(kit.folder)
    if fmt == "json":
        echo_json({"name": kit.name, "stopped": stopped})
    else:
        click.echo(f"{kit.name}: {'stopped' if stopped else 'was not running'}")


@daemon.command()
@kit_option
@format_option
def status(folder: Path, fmt: str) -> None:
    """Whether the daemon runs (its PID)."""
    from ember.system import daemon as daemons

    kit = _kit(folder)
    pid = daemons.pid_of(kit.folder)
    if fmt == "json":
        echo_json({"name": kit.name, "kind": kit.kind, "pid": pid})
    else:
        click.echo(f"{kit.kind} {kit.name}: {f'running (pid {pid})' if pid else 'stopped'}")
