"""``ember migrate-nvflare PATH``: rewrite NVFlare imports and names to Ember."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from ember.cli.output import echo_json, format_option

if TYPE_CHECKING:
    from ember.migrate.runner import Report


@click.command("migrate-nvflare")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Print the changes without writing them.")
@format_option
def migrate(path: Path, dry_run: bool, fmt: str) -> None:
    """Rewrite the NVFlare 2.7 imports and names in the Python files under PATH to Ember.

    Prints every change (file:line old -> new) and every name that could not be mapped; exits
    with 1 when something could not be mapped or parsed, else 0.
    """
    from ember.migrate.runner import migrate_path  # libcst: imported only when used

    report = migrate_path(path, dry_run=dry_run)
    if fmt == "json":
        echo_json(report.to_dict())
    else:
        _echo_text(report)
    if not report.ok:
        raise click.exceptions.Exit(1)


def _echo_text(report: Report) -> None:
    changed = problems = 0
    for f in report.files:
        if f.error:
            click.echo(f"{f.path}: error: {f.error}")
        for c in f.changes:
            click.echo(f"{f.path}:{c.line} {c.old} -> {c.new}")
        for p in f.problems:
            click.echo(f"{f.path}:{p.line} unmapped: {p.name}: {p.reason}")
        changed += bool(f.changes)
        problems += len(f.problems) + (f.error is not None)
    verb = "would change" if report.dry_run else "changed"
    click.echo(
        f"{verb} {changed} of {len(report.files)} file(s); {problems} problem(s)"
        + (" (nothing written: --dry-run)" if report.dry_run else "")
    )
