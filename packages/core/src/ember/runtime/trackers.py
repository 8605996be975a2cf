"""Experiment tracking: what scripts log and each round's metrics, written to TensorBoard,
MLflow or Weights & Biases (``add_experiment_tracking``; docs/tracking.md).

A job's ``tracking`` is a list of :class:`TrackingSpec` (``tracking_specs`` also reads the
older plain ``"tensorboard"``). A server-side spec is written by the server's
:class:`~ember.runtime.records.MetricSink` under the server folder: one run per site with what
its scripts streamed (``ember.client.tracking`` writers, ``flare.log``), and a run named
``global`` with, per round, the aggregated metrics, each site's reported metrics as
``<site>/<name>``, the job's parameters and, at the end, the files of the final model. A
client-side spec is written by each site in its own folder (:class:`TrackingLink`): one run
with what that site's scripts logged, which then stays at the site unless a server-side spec
asks for it too.

Each library is imported only when a job uses it, through :func:`ember.extras.require`:
tensorboardX (extra ``tracking``), mlflow-skinny (``mlflow``) and wandb (``wandb``).
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ember.client.link import ServerLink
from ember.client.tracking import param
from ember.common.messages import MetricRecord, Task, TaskResult
from ember.errors import EmberError
from ember.extras import require

TRACKING_TYPES = ("tensorboard", "mlflow", "wandb")
GLOBAL_RUN = "global"
"""The server-side run with each round's aggregated and per-site metrics, the job's
parameters and the final model."""

log = logging.getLogger(__name__)

# what each tracking_config may hold; NVFlare's nested "kw_args"/"kwargs" are read too
_CONFIG_KEYS: dict[str, tuple[str, ...]] = {
    "tensorboard": ("tb_folder",),
    "mlflow": (
        "tracking_uri",
        "experiment_name",
        "run_name",
        "experiment_tags",
        "run_tags",
        "artifact_location",
    ),
    "wandb": ("mode", "project", "entity", "group", "job_type", "name", "tags", "notes", "config"),
}
_WANDB_MODES = ("offline", "online", "disabled")
class TrackingError(EmberError, ValueError):
    """A tracking spec or ``tracking_config`` is malformed."""


@dataclass(frozen=True)
class TrackingSpec:
    """One ``add_experiment_tracking`` call: the library, its config and where it writes."""

    type: str
    config: dict[str, Any] = field(default_factory=dict)
    server_side: bool = True
    client_side: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def make_spec(
    tracking_type: Any, tracking_config: Any, client_side: Any, server_side: Any
) -> TrackingSpec:
    """A checked :class:`TrackingSpec`; :class:`TrackingError` naming what is wrong."""
    if tracking_type not in TRACKING_TYPES:
        raise TrackingError(
            f"tracking_type must be one of {list(TRACKING_TYPES)}, got {tracking_type!r}"
        )
    for name, value in (("client_side", client_side), ("server_side", server_side)):
        if not isinstance(value, bool):
            raise TrackingError(f"{name} must be True or False, got {value!r}")
    if not (client_side or server_side):
        raise TrackingError(
            "at least one of server_side and client_side must be True (server_side: the "
            "server writes what every site streams; client_side: each site writes its own)"
        )
    return TrackingSpec(tracking_type, check_config(tracking_type, tracking_config),
                        server_side, client_side)


def check_config(tracking_type: str, config: Any) -> dict[str, Any]:
    """``config`` checked against what ``tracking_type`` takes, NVFlare's nested
    ``kw_args``/``kwargs`` dict flattened into it."""
    if config is None:
        return {}
    if not isinstance(config, Mapping):
        raise TrackingError(f"tracking_config must be a dict, got {type(config).__name__}")
    flat = {k: v for k, v in config.items() if k not in ("kw_args", "kwargs")}
    for nested in ("kw_args", "kwargs"):
        inner = config.get(nested)
        if inner is not None:
            if not isinstance(inner, Mapping):
                raise TrackingError(f"tracking_config[{nested!r}] must be a dict")
            flat.update(inner)
    allowed = _CONFIG_KEYS[tracking_type]
    unknown = sorted(str(k) for k in flat if k not in allowed)
    if unknown:
        raise TrackingError(
            f"{tracking_type} tracking_config does not take {', '.join(map(repr, unknown))}; "
            f"it takes {', '.join(allowed)}"
        )
    for key in ("experiment_tags", "run_tags", "config"):
        if key in flat and not isinstance(flat[key], Mapping):
            raise TrackingError(f"tracking_config[{key!r}] must be a dict")
    if "tags" in flat and not (
        isinstance(flat["tags"], list | tuple) and all(isinstance(t, str) for t in flat["tags"])
    ):
        raise TrackingError("tracking_config['tags'] must be a list of strings")
    for key, value in flat.items():
        if key not in ("experiment_tags", "run_tags", "config", "tags") and not isinstance(
            value, str
        ):
            raise TrackingError(f"tracking_config[{key!r}] must be a string, got {value!r}")
    if tracking_type == "wandb" and flat.get("mode", "offline") not in _WANDB_MODES:
        raise TrackingError(f"wandb mode must be one of {list(_WANDB_MODES)}, got {flat['mode']!r}")
    try:
        json.dumps(flat)  # it travels in job.json
    except (TypeError, ValueError) as exc:
        raise TrackingError(f"tracking_config must be plain JSON data: {exc}") from exc
    return dict(flat)


def tracking_specs(value: Any) -> list[TrackingSpec]:
    """A job's ``tracking`` as specs: None, ``"tensorboard"`` (server-side TensorBoard, as
    older jobs have it), one spec dict or a list of them."""
    if value is None:
        return []
    if isinstance(value, str):
        return [make_spec(value, None, False, True)]
    if isinstance(value, Mapping):
        value = [value]
    if not isinstance(value, list):
        raise TrackingError(f"a job's tracking must be a list of specs, got {value!r}")
    specs = []
    for item in value:
        if isinstance(item, TrackingSpec):
            specs.append(item)
            continue
        if not isinstance(item, Mapping) or "type" not in item:
            raise TrackingError(f"a tracking spec must be a dict with a 'type', got {item!r}")
        specs.append(
            make_spec(
                item["type"],
                item.get("config"),
                item.get("client_side", False),
                item.get("server_side", True),
            )
        )
    return specs


@dataclass
class RunInfo:
    """What a tracker knows of the job when it opens a run."""

    job_name: str = "ember"
    job_id: str = ""
    params: dict[str, Any] = field(default_factory=dict)  # the global run's
    site_params: dict[str, dict[str, Any]] = field(default_factory=dict)


class Tracker:
    """One library's writer: runs opened on first use, records written as they come."""

    def __init__(self, folder: Path, config: dict[str, Any], info: RunInfo) -> None:
        self.folder = folder
        self.config = config
        self.info = info
        self._runs: dict[str, Any] = {}

    def run(self, name: str) -> Any:
        handle = self._runs.get(name)
        if handle is None:
            params = self.info.params if name == GLOBAL_RUN else self.info.site_params.get(name)
            handle = self._runs[name] = self._open(name, dict(params or {}))
        return handle

    def record(self, run: str, kind: str, tag: str, value: Any, step: int | None) -> None:
        raise NotImplementedError

    def round(self, rnd: int, values: dict[str, float]) -> None:
        """The global run's values for round ``rnd``, at step ``rnd``."""
        self.record(GLOBAL_RUN, "metrics", "round", values, rnd)

    def artifacts(self, run: str, files: list[Path], folder: str) -> None:
        """Files kept with ``run`` under ``folder`` (where the library has artifacts)."""

    def close(self, ok: bool) -> None:
        for name, handle in list(self._runs.items()):
            try:
                self._close(handle, ok)
            except Exception as exc:  # one run's failure must not keep the others open
                log.warning("could not close the %s run %s: %s", type(self).__name__, name, exc)
        self._runs.clear()

    def _open(self, name: str, params: dict[str, Any]) -> Any:
        raise NotImplementedError

    def _close(self, handle: Any, ok: bool) -> None:
        raise NotImplementedError


class TensorBoardTracker(Tracker):
    """Event files under ``<folder>/<tb_folder>/<run>/`` (tensorboardX)."""

    def __init__(self, folder: Path, config: dict[str, Any], info: RunInfo) -> None:
        super().__init__(folder, config, info)
        self.tb = require("tensorboardX", "tracking", "TensorBoard experiment tracking")
        self.dir = folder / config.get("tb_folder", "tb_events")

    def _open(self, name: str, params: dict[str, Any]) -> Any:
        writer = self.tb.SummaryWriter(logdir=str(self.dir / name))
        if params and name == GLOBAL_RUN:  # a site's folder holds only what it logged
            table = "\n".join(f"| {k} | {v} |" for k, v in params.items())
            writer.add_text("params", "| param | value |\n|---|---|\n" + table, 0)
        return writer

    def record(self, run: str, kind: str, tag: str, value: Any, step: int | None) -> None:
        writer = self.run(run)
        if kind == "scalar":
            writer.add_scalar(tag, value, step)
        elif kind == "scalars":
            writer.add_scalars(tag, value, step)
        elif kind == "metrics":
            for key, number in value.items():
                writer.add_scalar(key, number, step)
        elif kind in ("param", "tag"):
            writer.add_text(f"{kind}s/{tag}", str(value), 0)
        elif kind in ("params", "tags"):
            for key, text in value.items():
                writer.add_text(f"{kind}/{key}", str(text), 0)
        elif kind == "text":
            writer.add_text(tag, value, step or 0)

    def _close(self, handle: Any, ok: bool) -> None:
        handle.close()


class MLflowTracker(Tracker):
    """Runs in one experiment (the job's name) of an MLflow tracking store: by default a file
    store, ``file:<folder>/mlruns`` (``MlflowClient``; mlflow-skinny)."""

    def __init__(self, folder: Path, config: dict[str, Any], info: RunInfo) -> None:
        super().__init__(folder, config, info)
        uri = config.get("tracking_uri") or (folder / "mlruns").resolve().as_uri()
        if uri.startswith("file:"):
            # MLflow 3 keeps its file store "in maintenance mode" behind this switch
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # no usage reports
        self.tracking = require("mlflow.tracking", "mlflow", "MLflow experiment tracking")
        self.entities = require("mlflow.entities", "mlflow", "MLflow experiment tracking")
        self.uri = uri
        self.client = self.tracking.MlflowClient(tracking_uri=uri)
        name = config.get("experiment_name") or info.job_name
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            self.experiment_id = experiment.experiment_id
        else:
            location = config.get("artifact_location")
            if location and "://" not in location and not location.startswith("file:"):
                location = (folder / location).resolve().as_uri()
            self.experiment_id = self.client.create_experiment(
                name, artifact_location=location, tags=config.get("experiment_tags")
            )

    def _open(self, name: str, params: dict[str, Any]) -> Any:
        run_name = f"{self.config['run_name']}-{name}" if self.config.get("run_name") else name
        tags = {"site": name, "job_id": self.info.job_id, "job_name": self.info.job_name}
        tags.update({str(k): str(v) for k, v in (self.config.get("run_tags") or {}).items()})
        run = self.client.create_run(self.experiment_id, run_name=run_name, tags=tags)
        run_id = run.info.run_id
        if params:
            self._params(run_id, params)
        return run_id

    def _params(self, run_id: str, params: Mapping[str, Any]) -> None:
        batch = [self.entities.Param(str(k), param(v)) for k, v in params.items()]
        for i in range(0, len(batch), 100):  # MLflow takes at most 100 params a batch
            self.client.log_batch(run_id, params=batch[i : i + 100])

    def record(self, run: str, kind: str, tag: str, value: Any, step: int | None) -> None:
        run_id = self.run(run)
        now = int(time.time() * 1000)
        if kind == "scalar":
            self.client.log_metric(run_id, tag, value, now, step or 0)
        elif kind in ("scalars", "metrics"):
            prefix = f"{tag}/" if kind == "scalars" else ""
            metrics = [
                self.entities.Metric(f"{prefix}{k}", v, now, step or 0) for k, v in value.items()
            ]
            self.client.log_batch(run_id, metrics=metrics)
        elif kind == "param":
            self._params(run_id, {tag: value})
        elif kind == "params":
            self._params(run_id, value)
        elif kind == "tag":
            self.client.set_tag(run_id, tag, str(value))
        elif kind == "tags":
            tags = [self.entities.RunTag(str(k), str(v)) for k, v in value.items()]
            self.client.log_batch(run_id, tags=tags)
        elif kind == "text":
            self.client.log_text(run_id, value, tag)

    def artifacts(self, run: str, files: list[Path], folder: str) -> None:
        run_id = self.run(run)
        for path in files:
            self.client.log_artifact(run_id, str(path), folder)

    def _close(self, handle: Any, ok: bool) -> None:
        self.client.set_terminated(handle, "FINISHED" if ok else "FAILED")


class WandBTracker(Tracker):
    """Weights & Biases runs, offline by default: ``<folder>/wandb/offline-run-*/`` (wandb)."""

    def __init__(self, folder: Path, config: dict[str, Any], info: RunInfo) -> None:
        super().__init__(folder, config, info)
        self.wandb = require("wandb", "wandb", "Weights & Biases experiment tracking")
        self.mode = config.get("mode", "offline")
        folder.mkdir(parents=True, exist_ok=True)

    def _open(self, name: str, params: dict[str, Any]) -> Any:
        wandb = self.wandb
        config = {"site": name, "job_id": self.info.job_id, "job_name": self.info.job_name}
        config.update(params)
        config.update(self.config.get("config") or {})
        settings = wandb.Settings(
            silent=True,
            console="off",  # the script's output is the site's log, not the run's
            x_disable_stats=True,  # no system-metrics sampler (it probes cloud metadata)
            x_disable_meta=True,
            disable_git=True,
            disable_code=True,
            save_code=False,
            x_save_requirements=False,
        )
        run_name = f"{self.config['name']}-{name}" if self.config.get("name") else name
        return wandb.init(
            project=self.config.get("project") or self.info.job_name,
            entity=self.config.get("entity"),
            group=self.config.get("group") or f"{self.info.job_name}-{self.info.job_id}",
            job_type=self.config.get("job_type") or ("server" if name == GLOBAL_RUN else "site"),
            name=run_name,
            tags=list(self.config.get("tags") or []) or None,
            notes=self.config.get("notes"),
            config=config,
            dir=str(self.folder),
            mode=self.mode,
            reinit="create_new",  # one run per site, side by side in this process
            settings=settings,
        )

    def record(self, run: str, kind: str, tag: str, value: Any, step: int | None) -> None:
        handle = self.run(run)
        if kind == "scalar":
            handle.log({tag: value}, step=step)
        elif kind == "scalars":
            handle.log({f"{tag}/{k}": v for k, v in value.items()}, step=step)
        elif kind == "metrics":
            handle.log(dict(value), step=step)
        elif kind in ("param", "tag"):
            handle.config.update({tag: param(value)}, allow_val_change=True)
        elif kind in ("params", "tags"):
            handle.config.update({k: param(v) for k, v in value.items()}, allow_val_change=True)
        elif kind == "text":
            path = Path(handle.dir) / tag
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(value, encoding="utf-8")

    def artifacts(self, run: str, files: list[Path], folder: str) -> None:
        handle = self.run(run)
        artifact = self.wandb.Artifact(f"{self.info.job_name}-{folder}", type=folder)
        for path in files:
            # immutable: referenced where it is, not copied to wandb's staging folder
            artifact.add_file(str(path), name=path.name, policy="immutable")
        handle.log_artifact(artifact)

    def _close(self, handle: Any, ok: bool) -> None:
        handle.finish(exit_code=0 if ok else 1)


TRACKERS: dict[str, type[Tracker]] = {
    "tensorboard": TensorBoardTracker,
    "mlflow": MLflowTracker,
    "wandb": WandBTracker,
}


def numeric(values: Mapping[str, Any]) -> dict[str, float]:
    """The finite real numbers among ``values``."""
    out = {}
    for key, value in values.items():
        real = isinstance(value, numbers.Real) and not isinstance(value, bool)
        if real and math.isfinite(float(value)):
            out[str(key)] = float(value)
    return out


def job_params(job: Any, job_id: str, sites: Iterable[str]) -> dict[str, Any]:
    """The global run's parameters: the job, its script and its workflows' plain arguments."""
    params: dict[str, Any] = {
        "job_name": job.name,
        "job_id": job_id,
        "min_clients": job.min_clients,
        "sites": ",".join(sites),
        "train_script": job.client.script,
        "train_args": job.client.args,
    }
    params.update({k: v for k, v in job.meta.items() if isinstance(v, str | int | float)})
    for i, spec in enumerate(job.workflows):
        prefix = "" if i == 0 else f"workflow{i}."
        params[f"{prefix}workflow"] = str(spec.get("target", "")).rpartition(":")[2]
        for key, value in (spec.get("args") or {}).items():
            if isinstance(value, str | int | float | bool):
                params.setdefault(f"{prefix}{key}", value)
    for key, value in job.config.items():
        params[f"config.{key}"] = value
    return params


def site_params(job: Any, site: str) -> dict[str, Any]:
    app = job.client.for_site(site)
    return {"site": site, "train_script": app.script, "train_args": app.args}


class TrackingLink:
    """A site's link to the server that writes what the site's scripts log with the job's
    client-side trackers, in the site's folder, and forwards it to the server only when a
    server-side spec asks for it."""

    def __init__(self, inner: ServerLink, sink: Any, forward: bool) -> None:
        self.inner = inner
        self.sink = sink
        self.forward = forward

    def get_task(self, wait: float) -> Task | str | None:
        return self.inner.get_task(wait)

    def submit_result(self, result: TaskResult) -> bool:
        return self.inner.submit_result(result)

    def log_metrics(self, records: list[MetricRecord]) -> None:
        self.sink.add(records)
        if self.forward:
            self.inner.log_metrics(records)

    def report_failure(self, reason: str) -> None:
        self.sink.close(ok=False)
        self.inner.report_failure(reason)

    def report_done(self) -> None:
        self.sink.close(ok=True)
        self.inner.report_done()

    def __getattr__(self, name: str) -> Any:  # what a site workflow's link adds
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)
