"""Cross-site evaluation: every site validates the global model and every site's model.

Results (under ``server/cross_site_eval/``):

- ``cross_val_results.json``: ``{validating site: {model owner: metrics}}``;
- ``cross_val_matrix.json``: ``{"sites": [...], "models": [...], "metrics": {name:
  [[value or null for each model] for each site]}}``, one matrix per numeric metric
  (rows: the sites that validated, columns: the models, in the order they were sent);
- ``cross_val_matrix.png``: a heat map of each matrix (matplotlib, the ``plots`` extra;
  without it a warning is logged and the PNG skipped: a missing plot never fails a job).
"""

from __future__ import annotations

import json
import numbers
from pathlib import Path
from typing import Any

from ember.common.messages import TaskName, TaskResult
from ember.common.model import FLModel, MetaKey, ParamsType
from ember.extras import require
from ember.runtime.context import ServerContext
from ember.runtime.errors import JobError
from ember.runtime.persistors import load_numpy_file

SERVER_MODEL = "SRV_global_model"
#: the prefix of a server-side model's owner name (``SRV_<model id>``)
SERVER_PREFIX = "SRV_"
RESULTS_DIR = "cross_site_eval"
RESULTS_FILE = "cross_val_results.json"
MATRIX_FILE = "cross_val_matrix.json"
MATRIX_PLOT = "cross_val_matrix.png"


class CrossSiteEvalController:
    """``submit_model`` tasks (when ``submit_models``), then one ``validate`` task per model.

    The models validated are the global model of the workflows before (``SRV_global_model``,
    when ``include_global`` and one ran), the server-side ``models`` (``{model id: .npy/.npz
    path}``, relative to the job folder or absolute; sent as ``SRV_<id>``) and, when
    ``submit_models``, each participating site's own model. ``participating_clients`` (None:
    every alive site) are the sites asked to submit and to validate; a name that is not a
    site of the job is a :class:`JobError`. ``submit_model_timeout`` and
    ``validation_timeout`` are the seconds each kind of task may take (None: the job's
    ``runtime.task_timeout``); a site that does not answer in time is left out of the results while
    ``min_clients`` (at most the number of participants) still answer.
    """

    def __init__(
        self,
        min_clients: int = 1,
        submit_models: bool = True,
        *,
        include_global: bool = True,
        require_global: bool = False,
        models: dict[str, str] | None = None,
        participating_clients: list[str] | None = None,
        submit_model_timeout: float | None = None,
        validation_timeout: float | None = None,
        task_meta: dict[str, Any] | None = None,
    ) -> None:
        self.min_clients = min_clients
        self.submit_models = submit_models
        self.include_global = include_global
        self.require_global = require_global
        self.models = dict(models or {})
        self.participating_clients = (
            None if participating_clients is None else list(participating_clients)
        )
        self.submit_model_timeout = submit_model_timeout
        self.validation_timeout = validation_timeout
        self.task_meta = dict(task_meta or {})

    def participants(self, ctx: ServerContext) -> list[str]:
        """The participating sites that are alive, in the job's site order."""
        alive = ctx.board.alive_sites()
        if self.participating_clients is None:
            return alive
        known = list(ctx.board.sites)
        unknown = [s for s in self.participating_clients if s not in known]
        if unknown:
            raise JobError(
                f"participating_clients names {', '.join(unknown)}, not sites of this job "
                f"(its sites: {', '.join(known)})"
            )
        return [s for s in alive if s in self.participating_clients]

    def run(self, ctx: ServerContext) -> None:
        models: dict[str, dict[str, Any]] = {}
        if self.include_global and "global_params" in ctx.state:
            models[SERVER_MODEL] = ctx.state["global_params"]
        elif self.require_global:
            raise JobError(
                "final global evaluation found no global model: add it to a recipe whose "
                "workflow trains one (FedAvg, Cyclic, ...)"
            )
        for model_id, path in self.models.items():
            file = Path(path) if Path(path).is_absolute() else ctx.job_dir / path
            models[SERVER_PREFIX + model_id] = load_numpy_file(file)
        sites = self.participants(ctx)
        needed = self.min_clients
        if self.participating_clients is not None:
            needed = min(needed, len(self.participating_clients))
        submit_timeout = _timeout(self.submit_model_timeout, ctx.task_timeout)
        validate_timeout = _timeout(self.validation_timeout, ctx.task_timeout)
        if self.submit_models:

            def keep(site: str, result: TaskResult) -> None:
                if result.data is not None and result.data.params:
                    models[site] = result.data.params

            ctx.board.broadcast(
                TaskName.SUBMIT_MODEL, FLModel(), sites, needed, submit_timeout, keep
            )
        if not models:
            raise JobError("cross-site evaluation has no model to evaluate")
        ctx.log.info("cross-site evaluation of %s on %s", ", ".join(models), ", ".join(sites))
        results: dict[str, dict[str, Any]] = {site: {} for site in sites}
        for owner in list(models):
            task = FLModel(
                params_type=ParamsType.FULL,
                params=models[owner],
                meta={**self.task_meta, MetaKey.MODEL_OWNER: owner},
            )

            def record(site: str, result: TaskResult, owner: str = owner) -> None:
                results[site][owner] = dict((result.data.metrics if result.data else None) or {})

            validators = [s for s in ctx.board.alive_sites() if s in sites]
            ctx.board.broadcast(
                TaskName.VALIDATE, task, validators, needed, validate_timeout, record
            )
        out_dir = ctx.server_dir / RESULTS_DIR
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / RESULTS_FILE).write_text(
            json.dumps(results, indent=2, sort_keys=True, default=float)
        )
        matrix = cross_val_matrix(results, list(models))
        (out_dir / MATRIX_FILE).write_text(json.dumps(matrix, indent=2, default=float))
        try:
            plot_cross_val_matrix(matrix, out_dir / MATRIX_PLOT)
        except Exception as exc:  # a missing plot must not fail a finished evaluation
            ctx.log.warning("could not plot the cross-site evaluation matrix: %s", exc)
        ctx.state["cross_site_results"] = results


def _timeout(value: float | None, default: float) -> float:
    return default if value is None else float(value)


def cross_val_matrix(results: dict[str, dict[str, Any]], models: list[str]) -> dict[str, Any]:
    """``{"sites", "models", "metrics": {name: rows}}``: for each numeric metric, one row per
    validating site, one value per model (None where that site sent no such value)."""
    sites = list(results)
    names: list[str] = []
    for by_owner in results.values():
        for metrics in by_owner.values():
            for name, value in metrics.items():
                if _numeric(value) and name not in names:
                    names.append(name)
    matrices = {
        name: [
            [
                float(v) if _numeric(v := results[site].get(owner, {}).get(name)) else None
                for owner in models
            ]
            for site in sites
        ]
        for name in names
    }
    return {"sites": sites, "models": models, "metrics": matrices}


def _numeric(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def plot_cross_val_matrix(matrix: dict[str, Any], path: Path) -> bool:
    """A heat map per metric (sites down, models across, each cell annotated); False when
    there is no numeric metric. Raises MissingDependencyError (naming the ``plots`` extra)
    when matplotlib is missing."""
    names = list(matrix["metrics"])
    if not names:
        return False
    import numpy as np

    figure = require("matplotlib.figure", "plots", "the cross-site evaluation heat map")
    sites, models = matrix["sites"], matrix["models"]
    width = 2.5 + 1.3 * len(models)
    fig = figure.Figure(figsize=(width, (1.5 + 0.6 * len(sites)) * len(names) + 0.5))
    for i, name in enumerate(names):
        values = np.array(
            [[np.nan if v is None else v for v in row] for row in matrix["metrics"][name]],
            dtype=float,
        ).reshape(len(sites), len(models))
        ax = fig.add_subplot(len(names), 1, i + 1)
        image = ax.imshow(values, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(models)), models, rotation=30, ha="right")
        ax.set_yticks(range(len(sites)), sites)
        ax.set_title(name)
        middle = (np.nanmin(values) + np.nanmax(values)) / 2 if np.isfinite(values).any() else 0
        for r in range(len(sites)):
            for c in range(len(models)):
                if not np.isnan(values[r, c]):
                    color = "k" if values[r, c] > middle else "w"  # readable on viridis
                    ax.text(c, r, f"{values[r, c]:.4g}", ha="center", va="center", color=color)
        fig.colorbar(image, ax=ax)
    fig.suptitle("cross-site evaluation (rows: validating site, columns: model)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return True
