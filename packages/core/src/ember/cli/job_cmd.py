"""``ember job submit|list|status|abort|download|logs``: the admin API from the shell."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from ember.cli.output import echo_json, echo_table, format_option

kit_option = click.option(
    "-k",
    "--kit",
    type=click.Path(file_okay=False, path_type=Path),
    help="The admin's startup kit folder (default: the PoC workspace's admin).",
)


def _admin(kit: Path | None):  # type: ignore[no-untyped-def]
    from ember.provision.manifest import KitError
    from ember.system.admin import AdminClient
    from ember.system.poc import PocError, PocWorkspace

    try:
        folder = kit or PocWorkspace.load().admin.folder
        return AdminClient(folder).connect()
    except (KitError, PocError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    except Exception as exc:
        raise click.ClickException(f"cannot reach the server: {exc}") from None


def _call(kit: Path | None, method: str, *args: Any, **kwargs: Any) -> Any:
    admin = _admin(kit)
    try:
        return getattr(admin, method)(*args, **kwargs)
    except Exception as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        admin.close()


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def _show(record: dict[str, Any], fmt: str) -> None:
    if fmt == "json":
        echo_json(record)
        return
    keys = ("id", "name", "status", "message", "resumed", "submitter", "sites", "rounds_completed")
    for key in keys:
        if key in record and record[key] not in ("", None):
            click.echo(f"{key:>16}: {record[key]}")
    for key in ("submitted_at", "started_at", "finished_at"):
        click.echo(f"{key:>16}: {_when(record.get(key))}")


@click.group()
def job() -> None:
    """Submit and follow jobs on a running server (admin startup kit)."""


@job.command()
@click.argument("job_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--sites", help="Comma-separated sites (default: every connected client).")
@kit_option
@format_option
def submit(job_dir: Path, sites: str | None, kit: Path | None, fmt: str) -> None:
    """Submit the exported job in JOB_DIR."""
    names = [s.strip() for s in sites.split(",") if s.strip()] if sites else None
    record = _call(kit, "submit", job_dir, names)
    if fmt == "json":
        echo_json(record)
    else:
        click.echo(f"submitted job {record['id']} ({record['name']}): {record['status']}")


@job.command("list")
@kit_option
@format_option
def list_jobs(kit: Path | None, fmt: str) -> None:
    """Every job the server knows, oldest first."""
    jobs = _call(kit, "list_jobs")
    if fmt == "json":
        echo_json(jobs)
        return
    echo_table(
        ["id", "name", "status", "submitter", "submitted"],
        [[j["id"], j["name"], j["status"], j["submitter"], _when(j["submitted_at"])] for j in jobs],
        "(no jobs)",
    )


@job.command()
@click.argument("job_id")
@click.option("--wait", type=float, default=0.0, help="Wait up to this many seconds for the end.")
@kit_option
@format_option
def status(job_id: str, wait: float, kit: Path | None, fmt: str) -> None:
    """A job's status (and why it failed)."""
    _show(_call(kit, "status", job_id, wait), fmt)


@job.command()
@click.argument("job_id")
@kit_option
@format_option
def abort(job_id: str, kit: Path | None, fmt: str) -> None:
    """Abort a queued or running job."""
    _show(_call(kit, "abort", job_id), fmt)


@job.command()
@click.argument("job_id")
@click.option(
    "-o", "--output", type=click.Path(file_okay=False, path_type=Path), help="Destination folder."
)
@kit_option
@format_option
def download(job_id: str, output: Path | None, kit: Path | None, fmt: str) -> None:
    """Download a job's result workspace."""
    dest = _call(kit, "download", job_id, output or Path.cwd() / f"{job_id}-result")
    if fmt == "json":
        echo_json({"job_id": job_id, "path": str(dest)})
    else:
        click.echo(f"downloaded job {job_id} to {dest}")


@job.command()
@click.argument("job_id")
@click.option("--site", help="A site's logs instead of the server's.")
@click.option(
    "-f",
    "--follow",
    is_flag=True,
    help="Print the log as it grows until the job ends (a site's: the copy it streams with "
    "recipe.enable_log_streaming).",
)
@click.option(
    "--file",
    "file_name",
    default="log.txt",
    show_default=True,
    help="With --follow: which streamed file (one of logs.stream_files).",
)
@kit_option
@format_option
def logs(
    job_id: str, site: str | None, follow: bool, file_name: str, kit: Path | None, fmt: str
) -> None:
    """A job's log (the server's, or a site's); --follow prints it live."""
    if follow:
        _follow(job_id, site, file_name, kit, fmt)
        return
    text = _call(kit, "logs", job_id, site)
    if fmt == "json":
        echo_json({"job_id": job_id, "site": site or "server", "text": text})
    else:
        click.echo(text, nl=False)


def _follow(job_id: str, site: str | None, file_name: str, kit: Path | None, fmt: str) -> None:
    """Print each new piece of the log as it arrives (JSON: one object per line)."""
    admin = _admin(kit)
    try:
        for text in admin.follow_logs(job_id, site, file_name):
            if fmt == "json":
                click.echo(json.dumps({"job_id": job_id, "site": site or "server", "text": text}))
            else:
                click.echo(text, nl=False)
    except Exception as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        admin.close()


@job.command()
@kit_option
@format_option
def system(kit: Path | None, fmt: str) -> None:
    """Connected clients, running and queued jobs."""
    info = _call(kit, "system")
    if fmt == "json":
        echo_json(info)
        return
    for key, value in info.items():
        click.echo(f"{key:>12}: {value}")


@job.command("stop-site")
@click.argument("site")
@kit_option
@format_option
def stop_site(site: str, kit: Path | None, fmt: str) -> None:
    """Stop a site's daemon and the jobs it runs (the operate right)."""
    reply = _call(kit, "stop_site", site)
    if fmt == "json":
        echo_json(reply)
    else:
        click.echo(f"site {site} is stopping")
