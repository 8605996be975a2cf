"""FedAvg: broadcast the global model, average the results as they come, repeat."""

from __future__ import annotations

import time
from typing import Any

from ember.client.model import FLModel, MetaKey, ParamsType
from ember.plugins.entries import load_target
from ember.runtime.aggregation import WeightedAverage, apply_update
from ember.runtime.context import ServerContext
from ember.runtime.memory import release_memory
from ember.runtime.messages import TaskName, TaskResult
from ember.runtime.stop_condition import StopCondition


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
    ) -> None:
        self.num_rounds = num_rounds
        self.min_clients = min_clients
        self.persistor = load_target(persistor["target"])(**persistor.get("args", {}))
        self.transfer_type = ParamsType(params_transfer_type)
        self.weights = aggregation_weights or {}
        self.key_metric = key_metric
        self.key_metric_mode = key_metric_mode
        self.stop_cond = StopCondition.parse(stop_cond) if stop_cond else None
        self.patience = patience
        self.exclude_vars = exclude_vars
        self.gc_rounds = server_memory_gc_rounds

    def run(self, ctx: ServerContext) -> None:
        params = self.persistor.initial_params(ctx.job_dir)
        models = ctx.server_dir / "models"
        ext = self.persistor.extension
        ctx.state["persistor"] = self.persistor
        best_value: float | None = None
        best_round: int | None = None
        rounds_without_improvement = 0
        stopped: str | None = None
        completed = 0
        for rnd in range(self.num_rounds):
            started = time.monotonic()
            targets = ctx.board.alive_sites()
            ctx.progress.round_started(rnd, self.num_rounds, len(targets))
            task_model = FLModel(
                params_type=ParamsType.FULL,
                params=params,
                current_round=rnd,
                total_rounds=self.num_rounds,
                meta={},
            )
            average = WeightedAverage(self.exclude_vars)
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
                average.add(site, model.params, model.params_type, weight, model.metrics)
                site_metrics[site] = dict(model.metrics or {})
                ctx.progress.result_received(site)

            collected = ctx.board.broadcast(
                TaskName.TRAIN, task_model, targets, self.min_clients, ctx.task_timeout, on_result
            )
            round_metrics = average.metrics()
            sent_params = params
            if average.count and average.params_type is not None:
                params = apply_update(params, average.params(), average.params_type)
            del average
            self.persistor.save(params, models / f"global_model{ext}")
            completed = rnd + 1
            if self.key_metric and self.key_metric in round_metrics:
                value = round_metrics[self.key_metric]
                better = best_value is None or (
                    value > best_value if self.key_metric_mode == "max" else value < best_value
                )
                if better:
                    best_value, best_round = value, rnd
                    rounds_without_improvement = 0
                    # the metric was measured on the model the sites received this round
                    self.persistor.save(sent_params, models / f"best_model{ext}")
                else:
                    rounds_without_improvement += 1
            ctx.records.round(
                rnd, collected, round_metrics, site_metrics, time.monotonic() - started
            )
            ctx.progress.round_done(rnd, round_metrics)
            if self.gc_rounds and completed % self.gc_rounds == 0:
                del sent_params, task_model
                release_memory(cuda=True)
            if self.stop_cond is not None and self.stop_cond.met(round_metrics):
                stopped = f"stop_cond '{self.stop_cond}' met in round {rnd}"
                break
            if self.patience is not None and rounds_without_improvement >= self.patience:
                stopped = (
                    f"{self.key_metric} did not improve for {self.patience} rounds "
                    f"(best {best_value} in round {best_round})"
                )
                break
        ctx.state["global_params"] = params
        ctx.state["global_model_path"] = models / f"global_model{ext}"
        ctx.records.summary(
            rounds_completed=completed,
            num_rounds=self.num_rounds,
            stopped_early=stopped,
            key_metric=self.key_metric,
            best={"round": best_round, "value": best_value} if best_round is not None else None,
        )
        if stopped:
            ctx.log.info("stopping early: %s", stopped)
