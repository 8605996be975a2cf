"""The job definition: ``job.json`` plus the files under ``app/`` in a job folder."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from ember.errors import EmberError

JOB_FILE = "job.json"
APP_DIR = "app"
FORMAT = 1
_IGNORED = shutil.ignore_patterns(
    "__pycache__", "*.pyc", ".git", ".ipynb_checkpoints", ".pytest_cache", ".venv"
)


JobFile = Path | bytes | Callable[[Path], None]
"""What a job carries at a path: a file or folder to copy, bytes, or a function writing it."""


class Deployable(Protocol):
    """What an env deploys (every ``Recipe``): a named job that writes itself to a folder."""

    @property
    def name(self) -> str: ...

    @property
    def job(self) -> JobDefinition: ...

    def export(self, job_dir: str | Path) -> Path: ...


class JobDefinitionError(EmberError, ValueError):
    """A job folder or ``job.json`` is missing or malformed."""


@dataclass
class ClientApp:
    """How each site runs the training script (paths relative to the job folder)."""

    script: str
    args: str = ""
    launch_external_process: bool = False
    command: str | None = None
    params_transfer_type: str = "FULL"
    client_memory_gc_rounds: int = 0
    params_format: str = "numpy"  # what the script receives (a registered params converter)
    # a site-side runtime wrapping the site's link to the server ({"target", "args"}): the
    # client-controlled part of a workflow (swarm learning)
    site_workflow: dict[str, Any] | None = None
    # site name -> what that site runs differently (``train_args``, ``command``,
    # ``client_memory_gc_rounds``): a recipe's ``per_site_config``, applied by the site runner
    per_site: dict[str, dict[str, Any]] = field(default_factory=dict)
    cuda_empty_cache: bool = True  # memory releases also empty the CUDA cache
    # with launch_external_process: start the script once for the job (True; it loops on
    # flare.receive()) or anew for each task (False; it handles that one task and exits)
    launch_once: bool = True

    def for_site(self, site: str) -> ClientApp:
        """This app as ``site`` runs it: with its ``per_site`` entry applied."""
        own = self.per_site.get(site)
        if not own:
            return self
        return replace(
            self,
            args=own.get("train_args", self.args),
            command=own.get("command", self.command),
            client_memory_gc_rounds=own.get(
                "client_memory_gc_rounds", self.client_memory_gc_rounds
            ),
        )


@dataclass
class JobDefinition:
    """Everything an env needs to run a job, as plain data."""

    name: str
    min_clients: int
    workflows: list[dict[str, Any]]
    client: ClientApp
    # experiment tracking: a list of {"type", "config", "server_side", "client_side"}
    # (ember.runtime.trackers; older jobs: "tensorboard", server side)
    tracking: str | list[dict[str, Any]] | None = None
    config: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    # the workflow needs every site training at once (XGBoost's collectives, Flower): an env
    # must not cap concurrent training below the number of sites
    all_sites_at_once: bool = False
    # filters on the task data and result paths (ember.filters.chain: {"side", "direction",
    # "path", "args", "tasks", "clients"}), added by recipe.add_client_output_filter & co.
    filters: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, **asdict(self)}, indent=2, sort_keys=True)

    @classmethod
    def from_dir(cls, job_dir: Path) -> JobDefinition:
        path = Path(job_dir) / JOB_FILE
        if not path.is_file():
            raise JobDefinitionError(
                f"{job_dir} is not a job folder: it has no {JOB_FILE} (make one with "
                "recipe.export(DIR) or `python job.py --export --export-dir DIR`)"
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise JobDefinitionError(f"{path} is not valid JSON: {exc}") from exc
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise JobDefinitionError(f"{path}: unsupported job format {data.get('format')!r}")
        try:
            client = ClientApp(**data["client"])
            job = cls(
                name=data["name"],
                min_clients=int(data["min_clients"]),
                workflows=list(data["workflows"]),
                client=client,
                tracking=data.get("tracking"),
                config=dict(data.get("config") or {}),
                meta=dict(data.get("meta") or {}),
                all_sites_at_once=bool(data.get("all_sites_at_once", False)),
                filters=list(data.get("filters") or []),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise JobDefinitionError(f"{path} is malformed: {exc}") from exc
        if not (Path(job_dir) / job.client.script).is_file():
            raise JobDefinitionError(f"{path} names script {job.client.script}, which is missing")
        return job


def _ignoring(job_dir: Path) -> Callable[[str, list[str]], set[str]]:
    """What a folder copy leaves out: caches and VCS folders, and the job folder itself
    (a workspace inside the script's folder would otherwise be copied into itself)."""
    inside = job_dir.resolve()

    def ignore(folder: str, names: list[str]) -> set[str]:
        skipped = set(_IGNORED(folder, names))
        base = Path(folder).resolve()
        for name in names:
            path = base / name
            if path == inside or path in inside.parents:
                skipped.add(name)
        return skipped

    return ignore


def write_job(job: JobDefinition, files: dict[str, JobFile], job_dir: Path) -> Path:
    """Write ``job.json`` and ``files`` (job-relative destination -> source folder, source
    file or the bytes to write) into ``job_dir``, replacing what was there."""
    job_dir = Path(job_dir)
    if job_dir.exists():
        shutil.rmtree(job_dir)
    job_dir.mkdir(parents=True)
    for dest, src in files.items():
        target = job_dir / dest
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(src, bytes):
            target.write_bytes(src)
        elif callable(src):
            src(target)
        elif src.is_dir():
            shutil.copytree(src, target, ignore=_ignoring(job_dir), dirs_exist_ok=True)
        else:
            shutil.copy2(src, target)
    (job_dir / JOB_FILE).write_text(job.to_json() + "\n", encoding="utf-8")
    return job_dir
