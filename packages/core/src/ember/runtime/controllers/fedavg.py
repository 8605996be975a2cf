"""FedAvg: broadcast the global model, average the results as they come, repeat."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path
from typing import Any

from ember.client.formats import NUMPY, convert_params
from ember.common.messages import TaskName, TaskResult
from ember.common.model import FLModel, MetaKey, ParamsType
from ember.config import get_setting
from ember.runtime.aggregation import WeightedAverage, apply_update
from ember.runtime.checkpoint import checkpoint_round, resume_params
from ember.runtime.context import ServerContext
from ember.runtime.controller import Aggregator, BestModelTracker, build_aggregator, build_persistor
from ember.runtime.errors import JobError
from ember.runtime.stop_condition import StopCondition
from ember.streaming.lazy import offload_arrays, release_all, resolve_deferred
from ember.streaming.memory import release_memory


class FedAvgController:
    """Federated averaging with early stopping and best-model selection on a key metric."""

    def __init__(
        self,
        num_rounds: int,
        min_clients: int,
        persistor: dict[str, Any],
        params_transfer_type: str = "FULL",
        aggregation_weights: dict[str, float] | None = None,
        key_metric: str | None = None,
        key_metric_mode: str = "max",
        stop_cond: str | None = None,
        patience: int | None = None,
        exclude_vars: str | None = None,
        server_memory_gc_rounds: int = 0,
        task_meta: dict[str, Any] | None = None,
        server_expected_format: str = NUMPY,
        save_filename: str = "global_model",
        best_model_filename: str = "best_model",
        cuda_empty_cache: bool = True,
        aggregator: dict[str, Any] | None = None,
    ) -> None:
        self.aggregator = aggregator
        self.save_filename = save_filename
        self.best_model_filename = best_model_filename
        self.cuda_empty_cache = cuda_empty_cache
        self.server_format = server_expected_format
        self.task_meta = dict(task_meta or {})
        self.num_rounds = num_rounds
        self.min_clients = min_clients
        self.persistor = build_persistor(persistor)
        self.transfer_type = ParamsType(params_transfer_type)
        self.weights = aggregation_weights or {}
        self.key_metric = key_metric
        self.key_metric_mode = key_metric_mode
        self.stop_cond = StopCondition.parse(stop_cond) if stop_cond else None
        self.patience = patience
        self.exclude_vars = exclude_vars
        self.gc_rounds = server_memory_gc_rounds
        self._best = BestModelTracker(key_metric, key_metric_mode, patience)
        self._next_round = 0
        self._results_filtered = False  # ServerContext.results_filtered, set by run()
        self._sent_names: list[str] = []  # the variables of the round's global model
        self._stopped: str | None = None

    # -- resumable (ember.controllers.Resumable): the state checkpointed each round ----------
    def checkpoint_state(self) -> dict[str, Any]:
        """The next round, the best round and metric and the patience counter; subclasses
        (FedOpt, SCAFFOLD) add their own under their own keys."""
        best = self._best
        return {
            "next_round": self._next_round,
            "best_value": best.best_value,
            "best_round": best.best_round,
            "rounds_without_improvement": best.rounds_without_improvement,
            "stopped": self._stopped,
        }

    def restore_state(self, state: dict[str, Any]) -> None:
        """Take back what :meth:`checkpoint_state` returned."""
        self._next_round = int(state["next_round"])
        self._best.best_value = state.get("best_value")
        self._best.best_round = state.get("best_round")
        self._best.rounds_without_improvement = int(state.get("rounds_without_improvement", 0))
        stopped = state.get("stopped")
        self._stopped = str(stopped) if stopped else None

    def run(self, ctx: ServerContext) -> None:
        self._best = BestModelTracker(self.key_metric, self.key_metric_mode, self.patience)
        self._next_round, self._stopped = 0, None
        self._results_filtered = ctx.results_filtered
        resumed = resume_params(ctx, self, self.server_format)
        params = (
            resumed
            if resumed is not None
            else convert_params(
                self.persistor.initial_params(ctx.job_dir), NUMPY, self.server_format
            )
        )
        models = ctx.server_dir / "models"
        ext = self.persistor.extension
        global_path = models / _with_extension(self.save_filename, ext)
        best_path = models / _with_extension(self.best_model_filename, ext)
        ctx.state["persistor"] = self.persistor
        if self.key_metric and resumed is None:
            # global_model holds the model the sites are training on (here the initial one):
            # when a round's metric is the best, that file becomes best_model
            self.persistor.save(params, global_path)
        best = self._best
        stopped: str | None = self._stopped
        completed = self._next_round
        for rnd in range(self._next_round if stopped is None else self.num_rounds, self.num_rounds):
            started = time.monotonic()
            targets = ctx.board.alive_sites()
            ctx.progress.round_started(rnd, self.num_rounds, len(targets))
            sent, offloaded = self._task_params(ctx, params, rnd)
            posted = ctx.board.post(
                TaskName.TRAIN,
                FLModel(
                    params_type=ParamsType.FULL,
                    params=sent,
                    current_round=rnd,
                    total_rounds=self.num_rounds,
                    meta=self.round_task_meta(rnd),
                ),
                targets,
                ctx.task_timeout,
            )
            # Keep only what the update needs: all of it for DIFF, else the excluded keys.
            # The rest is held by the queued tasks until each site has taken its copy, so
            # the old global model and the new running sum are not both in memory. A job
            # whose filters may remove variables from results keeps all of it (FULL too):
            # a variable no site sent keeps its global value.
            self._sent_names = list(params)
            kept = self.kept_for_update(params)
            del params, sent
            average = self.new_average()
            site_metrics: dict[str, dict[str, Any]] = {}

            def on_result(
                site: str,
                result: TaskResult,
                average: WeightedAverage = average,
                site_metrics: dict[str, dict[str, Any]] = site_metrics,
            ) -> None:
                model = result.data or FLModel()
                steps = model.meta.get(MetaKey.NUM_STEPS_CURRENT_ROUND, 1.0)
                weight = float(self.weights.get(site, 1.0)) * float(steps)
                self.result_received(site, model, weight)
                average.add(site, model.params, model.params_type, weight, model.metrics)
                site_metrics[site] = dict(model.metrics or {})
                ctx.progress.result_received(site)

            collected = ctx.board.collect(posted, self.min_clients, on_result)
            del on_result  # its defaults hold the running sums, which become the global
            if offloaded is not None:  # every site has its copy, or never will
                shutil.rmtree(offloaded, ignore_errors=True)
            round_metrics = average.metrics()
            params = self.next_global(kept, average)
            del kept, average
            self.round_finished(rnd, collected.responded)
            completed = rnd + 1
            if best.update(rnd, round_metrics):
                # the metric was measured on the model the sites received this round,
                # which global_model still holds
                self.persistor.save(self.persistor.load(global_path), best_path)
            self.persistor.save(params, global_path)
            ctx.records.round(
                rnd, collected, round_metrics, site_metrics, time.monotonic() - started
            )
            ctx.progress.round_done(rnd, round_metrics)
            if self.gc_rounds and completed % self.gc_rounds == 0:
                release_memory(cuda=self.cuda_empty_cache)
            if self.stop_cond is not None and self.stop_cond.met(round_metrics):
                stopped = f"stop_cond '{self.stop_cond}' met in round {rnd}"
            else:
                stopped = best.patience_exhausted()
            self._next_round, self._stopped = completed, stopped
            checkpoint_round(ctx, self, rnd, params, self.server_format)
            if stopped:
                break
        ctx.state["global_params"] = params
        ctx.state["global_model_path"] = global_path
        ctx.records.summary(
            rounds_completed=completed,
            num_rounds=self.num_rounds,
            stopped_early=stopped,
            key_metric=self.key_metric,
            best=best.summary(),
        )
        if stopped:
            ctx.log.info("stopping early: %s", stopped)

    def _task_params(
        self, ctx: ServerContext, params: dict[str, Any], rnd: int
    ) -> tuple[dict[str, Any], Path | None]:
        """What the round's tasks carry. With ``streaming.offload_dir`` the global model's
        arrays wait on disk while the sites pull them, so the server holds no copy of the
        model it sends (only the running sum of what comes back); a recipe's
        ``enable_tensor_disk_offload`` sets it to ``offload``, under the job's server
        folder."""
        offload_dir = ctx.offload_dir
        if offload_dir is None or not get_setting("streaming.enabled"):
            return params, None
        folder = offload_dir / f"global-{rnd}"
        min_bytes = int(get_setting("streaming.min_tensor_bytes"))
        try:
            return offload_arrays(params, folder, min_bytes), folder
        except OSError as exc:
            raise JobError(
                f"cannot keep the global model in {folder} (streaming.offload_dir): "
                f"{exc.strerror or exc}; point the setting at a writable folder with room "
                "for the model, or leave it empty"
            ) from exc

    def new_average(self) -> WeightedAverage:
        """A round's aggregation: the weighted average, or the recipe's ``aggregator``."""
        if self.aggregator is None:
            return WeightedAverage(self.exclude_vars)
        return CustomAggregation(build_aggregator(self.aggregator), self.exclude_vars)

    # -- hooks for algorithms built on FedAvg (FedOpt, SCAFFOLD, ...) ---------------------
    def round_task_meta(self, rnd: int) -> dict[str, Any]:
        """The ``meta`` of round ``rnd``'s train tasks."""
        return dict(self.task_meta)

    def kept_for_update(self, params: dict[str, Any]) -> dict[str, Any]:
        """What of the round's global model :meth:`next_global` needs: all of it for DIFF,
        else only the excluded keys (the rest is freed once every site has its copy)."""
        if self.transfer_type == ParamsType.DIFF or self._results_filtered:
            return params
        return self._excluded(params)

    def result_received(self, site: str, model: FLModel, weight: float) -> None:
        """Called with each result, in site order, before its params are averaged."""

    def next_global(self, kept: dict[str, Any], average: WeightedAverage) -> dict[str, Any]:
        """The next global model from what :meth:`kept_for_update` kept and the average."""
        return self._updated(kept, average)

    def round_finished(self, rnd: int, responded: list[str]) -> None:
        """Called after the new global model of round ``rnd`` is computed."""

    def _excluded(self, params: dict[str, Any]) -> dict[str, Any]:
        if not self.exclude_vars:
            return {}
        pattern = re.compile(self.exclude_vars)
        return {k: v for k, v in params.items() if pattern.search(k)}

    def _updated(self, kept: dict[str, Any], average: WeightedAverage) -> dict[str, Any]:
        """The next global model from this round's average."""
        self.check_average(average)
        kept = convert_params(kept, self.server_format, NUMPY)
        new = apply_update(kept, average.params(), average.params_type)
        lost = [name for name in self._sent_names if name not in new]
        if lost:
            raise JobError(
                f"no site sent {', '.join(map(repr, lost[:5]))}"
                + (f" and {len(lost) - 5} more" if len(lost) > 5 else "")
                + " back, and the server did not keep its global value (a site's privacy "
                "policy or its script removed it?): add it to the recipe's exclude_vars (a "
                "regex) so the server keeps it, or have the sites send it"
            )
        return convert_params(new, NUMPY, self.server_format)  # type: ignore[no-any-return]

    def check_average(self, average: WeightedAverage) -> None:
        """Refuse a round whose results carry no params, or DIFFs the recipe did not ask for."""
        if not average.count or average.params_type is None:
            raise JobError(
                "no site sent params with its result; a training script must "
                "send FLModel(params=...)"
            )
        if average.params_type == ParamsType.DIFF and self.transfer_type != ParamsType.DIFF:
            raise JobError(
                "sites sent DIFF params but the recipe has "
                "params_transfer_type='FULL'; set params_transfer_type='DIFF'"
            )


class CustomAggregation(WeightedAverage):
    """A recipe's :class:`~ember.runtime.controller.Aggregator` where the controller and its
    hooks expect a :class:`WeightedAverage`: each result's params pulled (less the
    ``exclude_vars`` keys) and handed to ``add``; ``result()`` taken once, at the end.
    The sites' metrics are averaged by weight unless the aggregate has its own."""

    def __init__(self, aggregator: Aggregator, exclude_vars: str | None = None) -> None:
        super().__init__(exclude_vars)
        self.aggregator = aggregator
        self._result: FLModel | None = None

    def add(
        self,
        site: str,
        params: dict[str, Any] | None,
        params_type: ParamsType | None,
        weight: float,
        metrics: dict[str, Any] | None = None,
    ) -> None:
        if params:
            kind = params_type or ParamsType.FULL
            if self.params_type is None:
                self.params_type = kind
            elif kind != self.params_type:
                raise JobError(
                    f"{site} sent {kind} params while other sites sent "
                    f"{self.params_type}; all sites must send the same params type"
                )
            kept = {
                k: v
                for k, v in params.items()
                if self.exclude is None or not self.exclude.search(k)
            }
            release_all({k: v for k, v in params.items() if k not in kept})
            model = FLModel(
                params=resolve_deferred(kept), params_type=kind, metrics=dict(metrics or {})
            )
            self.aggregator.add(site, model, weight)
        super().add(site, None, None, weight, metrics)  # the metrics and the count

    def _aggregate(self) -> FLModel:
        if self._result is None:
            result = self.aggregator.result()
            if not isinstance(result, FLModel):
                raise JobError(
                    f"aggregator {type(self.aggregator).__name__}.result() returned "
                    f"{type(result).__name__}, not an FLModel"
                )
            self._result = result
            if result.params_type is not None:
                self.params_type = ParamsType(result.params_type)
        return self._result

    def params(self) -> dict[str, Any]:
        if not self.count or self.params_type is None:
            return {}  # no params came: check_average says so
        return dict(self._aggregate().params or {})

    def metrics(self) -> dict[str, float]:
        if self.count and self.params_type is not None:
            own = self._aggregate().metrics
            if own is not None:
                return dict(own)
        return super().metrics()


def _with_extension(name: str, ext: str) -> str:
    """``name`` ending in the persistor's extension (``ext`` added when it does not)."""
    return name if not ext or name.endswith(ext) else f"{name}{ext}"
