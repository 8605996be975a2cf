"""``Recipe``: a job described in Python, runnable in every env and exportable to a folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ember.job.definition import JobDefinition, JobFile, write_job

if TYPE_CHECKING:
    from ember.envs.base import Env
    from ember.envs.run import Run

DEFAULT_EXPORT_DIR = "/tmp/ember/jobs"


class Recipe:
    """A job (``self.job``) plus the files it carries (``self.files``: job path -> source)."""

    def __init__(self, job: JobDefinition, files: dict[str, JobFile]) -> None:
        self.job = job
        self.files = dict(files)

    @property
    def name(self) -> str:
        return self.job.name

    def set_config(self, name: str, value: Any) -> None:
        """Override a setting of the config registry for this job only (a timeout, a limit)."""
        from ember.config import Config

        Config({**self.job.config, name: value}, environ={})  # refuses unknown names and types
        self.job.config[name] = value

    def export(self, job_dir: str | Path) -> Path:
        """Write a self-contained job folder that every env and ``ember simulate`` can run."""
        return write_job(self.job, self.files, Path(job_dir))

    def execute(self, env: Env) -> Run:
        """Run the job in ``env``; with ``--export [--export-dir DIR]`` on the command line,
        export it instead (to DIR/<name>) and return a Run in status ``EXPORTED``."""
        parser = argparse.ArgumentParser(add_help=False)
        parser.add_argument("--export", action="store_true")
        parser.add_argument("--export-dir", default=DEFAULT_EXPORT_DIR)
        known, _ = parser.parse_known_args(sys.argv[1:])
        if known.export:
            from ember.envs.run import ExportedRun

            job_dir = self.export(Path(known.export_dir) / self.name)
            print(f"exported job {self.name!r} to {job_dir}")
            return ExportedRun(job_dir)
        return env.deploy(self)
