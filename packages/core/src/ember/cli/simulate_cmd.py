"""``ember simulate JOB_DIR``: run an exported job folder in SimEnv."""

from __future__ import annotations

from pathlib import Path

import click

from ember.cli.output import echo_json, format_option


@click.command()
@click.argument("job_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-n", "--num-clients", type=click.IntRange(min=1), help="Sites site-1..site-N.")
@click.option("--clients", help="Comma-separated site names (instead of -n).")
@click.option("-t", "--threads", type=click.IntRange(min=1), help="Sites training at once.")
@click.option(
    "-w",
    "--workspace-root",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("/tmp/ember/simulation"),
    show_default=True,
)
@click.option("--log-level", default="INFO", show_default=True)
@click.option(
    "--resume",
    is_flag=True,
    help="Go on from the workspace's last checkpointed round (a killed simulation).",
)
@format_option
def simulate(
    job_dir: Path,
    num_clients: int | None,
    clients: str | None,
    threads: int | None,
    workspace_root: Path,
    log_level: str,
    resume: bool,
    fmt: str,
) -> None:
    """Run the job in JOB_DIR (from recipe.export or --export) on simulated sites."""
    from ember.envs.sim import SimEnv

    names = [c.strip() for c in clients.split(",") if c.strip()] if clients else None
    if not names and not num_clients:
        raise click.UsageError("give the sites: -n N or --clients a,b")
    env = SimEnv(
        num_clients=num_clients or 0,
        clients=names,
        num_threads=threads,
        workspace_root=str(workspace_root),
        log_config=log_level,
        progress=False if fmt == "json" else None,  # stdout is the JSON's alone
        resume=resume,
    )
    run = env.run_job_dir(job_dir)
    outcome = {
        "job_id": run.get_job_id(),
        "status": run.get_status(),
        "result": run.get_result(),
        "message": run.get_message(),
    }
    if fmt == "json":
        echo_json(outcome)
    else:
        click.echo(f"job {outcome['job_id']}: {outcome['status']}")
        click.echo(f"result: {outcome['result']}")
        if outcome["message"]:
            click.echo(outcome["message"], err=True)
    if outcome["status"] != "FINISHED:COMPLETED":
        raise SystemExit(1)
