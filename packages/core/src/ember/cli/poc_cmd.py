"""``ember poc prepare|start|stop|status|clean``: a local proof-of-concept system."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import click

from ember.cli.output import echo_json, echo_table, format_option

workspace_option = click.option(
    "-w",
    "--workspace",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("/tmp/ember/poc"),
    show_default=True,
    help="The PoC workspace.",
)


def _load(workspace: Path):  # type: ignore[no-untyped-def]
    from ember.system.poc import PocWorkspace

    return PocWorkspace.load(workspace)  # a PocError is printed by the `ember` group


@click.group()
def poc() -> None:
    """A server, clients and an admin as processes on this machine (gRPC, mutual TLS)."""


@poc.command()
@click.option("-n", "--num-clients", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--clients", help="Comma-separated client names (instead of -n).")
@click.option("--port", type=click.IntRange(1, 65535), help="Server port (default: a free one).")
@click.option("--force", is_flag=True, help="Replace an existing workspace.")
@workspace_option
@format_option
def prepare(
    num_clients: int, clients: str | None, port: int | None, force: bool, workspace: Path, fmt: str
) -> None:
    """Make the workspace: a project CA and one startup kit per participant."""
    from ember.system import daemon
    from ember.system.poc import PocWorkspace, prepare

    names = [c for c in clients.split(",")] if clients else None
    if force and (workspace / "project.json").is_file():
        old = PocWorkspace.load(workspace)
        if any(daemon.pid_of(k.folder) for k in old.participants):
            raise click.ClickException(
                f"the PoC in {workspace} is running; stop it first (`ember poc stop`)"
            )
    ws = prepare(workspace, num_clients, names, port, force=force)
    info = {
        "workspace": str(ws.root),
        "server": ws.server.address,
        "clients": [k.name for k in ws.clients],
        "admin": str(ws.admin.folder),
    }
    if fmt == "json":
        echo_json(info)
        return
    click.echo(f"prepared {ws.root}: server {ws.server.address}, clients {info['clients']}")
    click.echo(f"admin kit: {ws.admin.folder}  (start with `ember poc start -w {ws.root}`)")


@poc.command()
@workspace_option
@format_option
def start(workspace: Path, fmt: str) -> None:
    """Start the server and the clients (those not running yet)."""
    from ember.envs.poc import start_workspace

    ws = _load(workspace)
    start_workspace(ws)
    _status(ws, fmt)


@poc.command()
@workspace_option
@format_option
def stop(workspace: Path, fmt: str) -> None:
    """Stop every daemon of the workspace and the jobs they run."""
    from ember.envs.poc import stop_workspace

    stopped = stop_workspace(_load(workspace))
    if fmt == "json":
        echo_json({"stopped": stopped})
    else:
        click.echo(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")


@poc.command()
@workspace_option
@format_option
def status(workspace: Path, fmt: str) -> None:
    """Which daemons run (PID) and what the server reports."""
    _status(_load(workspace), fmt)


def _status(ws, fmt: str) -> None:  # type: ignore[no-untyped-def]
    from ember.system import daemon

    rows = [
        {"name": k.name, "kind": k.kind, "pid": daemon.pid_of(k.folder)}
        for k in (ws.server, *ws.clients)
    ]
    if fmt == "json":
        echo_json({"workspace": str(ws.root), "address": ws.server.address, "daemons": rows})
        return
    click.echo(f"workspace {ws.root}, server {ws.server.address}")
    echo_table(
        ["name", "kind", "pid"],
        [[r["name"], r["kind"], r["pid"] or "stopped"] for r in rows],
        "(none)",
    )


@poc.command()
@workspace_option
def clean(workspace: Path) -> None:
    """Stop everything and remove the workspace."""
    from ember.envs.poc import stop_workspace
    from ember.system.poc import PocError, PocWorkspace

    with contextlib.suppress(PocError):  # not prepared (or half removed): nothing runs
        stop_workspace(PocWorkspace.load(workspace))
    if workspace.exists():
        shutil.rmtree(workspace)
    click.echo(f"removed {workspace}")
