"""Migrate every Python file under a path and collect what changed and what could not."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import libcst as cst

from ember.migrate.configs import config_problems, is_config
from ember.migrate.transformer import Change, Problem, migrate_source

_SKIP_DIRS = {"__pycache__", "node_modules"}


@dataclass
class FileReport:
    path: str
    changes: list[Change] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    error: str | None = None
    written: bool = False


@dataclass
class Report:
    files: list[FileReport]
    dry_run: bool

    @property
    def ok(self) -> bool:
        """Everything mapped and every file parsed."""
        return all(not f.problems and f.error is None for f in self.files)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "dry_run": self.dry_run, "files": [asdict(f) for f in self.files]}


def python_files(path: Path) -> list[Path]:
    """``path`` itself, or the ``.py`` files and NVFlare job configs under it (hidden
    folders and caches skipped)."""
    if path.is_file():
        return [path]
    return sorted(
        p
        for p in path.rglob("*")
        if (p.suffix == ".py" or is_config(p)) and p.is_file() and not _skipped(p.relative_to(path))
    )


def _skipped(relative: Path) -> bool:
    return any(part.startswith(".") or part in _SKIP_DIRS for part in relative.parts)


def migrate_file(path: Path, dry_run: bool = False) -> FileReport:
    report = FileReport(str(path))
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        report.error = f"cannot read: {exc}"
        return report
    if is_config(path):
        report.problems = config_problems(source)  # reported, never rewritten
        return report
    if "nvflare" not in source:
        return report
    try:
        result = migrate_source(source)
    except cst.ParserSyntaxError as exc:
        where = f"line {exc.raw_line}, column {exc.raw_column}"
        report.error = f"syntax error at {where}: {exc.message}"
        return report
    report.changes, report.problems = result.changes, result.problems
    if result.code != source and not dry_run:
        path.write_text(result.code, encoding="utf-8")
        report.written = True
    return report


def migrate_path(path: str | Path, dry_run: bool = False) -> Report:
    """Migrate ``path`` (a file or a folder); with ``dry_run`` nothing is written."""
    return Report([migrate_file(p, dry_run) for p in python_files(Path(path))], dry_run)
