"""The server-side workflow contract: ``Controller`` and the helpers every workflow shares.

Import these from :mod:`ember.controllers` (the public facade), not from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from ember.common.model import FLModel
from ember.plugins.entries import load_dotted, load_target
from ember.runtime.context import ServerContext
from ember.runtime.errors import JobError
from ember.runtime.persistors import ModelPersistor


@runtime_checkable
class Controller(Protocol):
    """A server-side workflow: a job runs its controllers in order, each once.

    A job names a controller by a ``"module:Class"`` target and keyword arguments (JSON
    values, written into ``job.json`` by the recipe); the server builds it with those
    arguments and calls :meth:`run` with the job's :class:`ServerContext`. ``run`` drives
    tasks through ``ctx.board`` (``broadcast``, or ``post`` then ``collect``), which feeds
    results to the controller one at a time in the job's site order, so an aggregate that
    adds them as they come is the same run after run. A controller that cannot go on raises
    :class:`~ember.runtime.errors.JobError` with a message naming the site and the fix; the
    job then ends ``FINISHED:EXECUTION_EXCEPTION`` with that message.

    Example: each round, the coordinate-wise median of the sites' models::

        import numpy as np
        from ember.controllers import (
            FLModel, ServerContext, TaskName, TaskResult, build_persistor, resolve_deferred,
        )

        class MedianController:
            def __init__(self, num_rounds: int, min_clients: int, persistor: dict) -> None:
                self.num_rounds, self.min_clients = num_rounds, min_clients
                self.persistor = build_persistor(persistor)

            def run(self, ctx: ServerContext) -> None:
                params = self.persistor.initial_params(ctx.job_dir)
                for rnd in range(self.num_rounds):
                    results: list[dict] = []

                    def on_result(site: str, result: TaskResult) -> None:
                        results.append(resolve_deferred(result.data.params))

                    ctx.board.broadcast(
                        TaskName.TRAIN, FLModel(params=params, current_round=rnd),
                        ctx.board.alive_sites(), self.min_clients, ctx.task_timeout, on_result,
                    )
                    params = {k: np.median([r[k] for r in results], axis=0) for k in params}
                    self.persistor.save(params, ctx.server_dir / "models" / "global_model.npz")
    """

    def run(self, ctx: ServerContext) -> None:
        """Run the workflow to its end (or raise ``JobError``)."""
        ...


@runtime_checkable
class Aggregator(Protocol):
    """One round's aggregation of the sites' results, for :class:`FedAvgController` and
    the controllers built on it (a recipe's ``aggregator=``, in place of the weighted
    average).

    The controller builds a fresh aggregator each round from the job's spec
    (``{"path": "module:Class", "args": {...}}``, :func:`build_aggregator`), calls
    :meth:`add` once per result, in the job's site order, then :meth:`result` once.
    ``model.params`` holds numpy arrays (pulled from the site, without the keys matching
    ``exclude_vars``), ``model.params_type`` is FULL or DIFF (the same for every site),
    ``model.metrics`` is what the site reported, and ``weight`` is
    ``aggregation_weights[site] * NUM_STEPS_CURRENT_ROUND``. ``result()`` returns the
    round's aggregate: its ``params`` (a DIFF is added to the global model), its
    ``params_type`` (None: the sites'), and its ``metrics`` (None: the weighted mean of the
    sites' metrics, which ``key_metric``, ``stop_cond`` and ``patience`` read).

    Example: the coordinate-wise median::

        import numpy as np
        from ember.controllers import FLModel

        class MedianAggregator:
            def __init__(self) -> None:
                self.models: list[dict] = []

            def add(self, site: str, model: FLModel, weight: float) -> None:
                self.models.append(model.params)

            def result(self) -> FLModel:
                keys = self.models[0]
                return FLModel(params={k: np.median([m[k] for m in self.models], axis=0)
                                       for k in keys})
    """

    def add(self, site: str, model: FLModel, weight: float) -> None:
        """Take one site's result."""
        ...

    def result(self) -> FLModel:
        """The round's aggregate, after every result was added."""
        ...


def build_aggregator(spec: dict[str, Any]) -> Aggregator:
    """The aggregator a recipe named (``{"path": "module:Class", "args": {...}}``)."""
    target = spec["path"]
    aggregator = load_target(target)(**spec.get("args", {}))
    if not isinstance(aggregator, Aggregator):
        raise JobError(
            f"aggregator {target} has no add(site, model, weight) and result() methods "
            "(see ember.controllers.Aggregator)"
        )
    return aggregator


def resolve_class(what: str, path: str) -> Any:
    """The class (or function) ``"package.module.Class"`` a controller argument names; a
    :class:`JobError` naming ``what`` when it cannot be loaded."""
    try:
        return load_dotted(path)
    except Exception as exc:
        raise JobError(f"{what}: cannot load {path!r}: {exc}") from exc


def build_persistor(spec: dict[str, Any]) -> ModelPersistor:
    """The persistor a recipe named (``{"target": "module:Class", "args": {...}}``)."""
    persistor: ModelPersistor = load_target(spec["target"])(**spec.get("args", {}))
    return persistor


@dataclass
class BestModelTracker:
    """Which round's model was best on ``key_metric``, and whether ``patience`` ran out.

    ``update(rnd, metrics)`` after each round returns True when the round improved on the
    best so far (``mode`` ``"max"`` or ``"min"``); a round without the metric changes
    nothing. :meth:`patience_exhausted` says whether ``patience`` rounds in a row did not
    improve (never, with ``patience=None``).
    """

    key_metric: str | None
    mode: str = "max"
    patience: int | None = None
    best_value: float | None = None
    best_round: int | None = None
    rounds_without_improvement: int = 0

    def update(self, rnd: int, metrics: dict[str, float]) -> bool:
        """Record round ``rnd``'s aggregated metrics; True when it is the best so far."""
        if not self.key_metric or self.key_metric not in metrics:
            return False
        value = metrics[self.key_metric]
        best = self.best_value
        better = best is None or (value > best if self.mode == "max" else value < best)
        if better:
            self.best_value, self.best_round = value, rnd
            self.rounds_without_improvement = 0
        else:
            self.rounds_without_improvement += 1
        return better

    def patience_exhausted(self) -> str | None:
        """Why to stop (patience ran out), or None."""
        if self.patience is None or self.rounds_without_improvement < self.patience:
            return None
        return (
            f"{self.key_metric} did not improve for {self.patience} rounds "
            f"(best {self.best_value} in round {self.best_round})"
        )

    def summary(self) -> dict[str, Any] | None:
        """``{"round", "value"}`` of the best round, or None before one."""
        if self.best_round is None:
            return None
        return {"round": self.best_round, "value": self.best_value}
