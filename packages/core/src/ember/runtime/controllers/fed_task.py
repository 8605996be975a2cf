"""A model-free task: a (sampled) set of sites runs it once; the server keeps what each sent."""

from __future__ import annotations

import json
import math
import secrets
import time
from pathlib import Path
from typing import Any

import numpy as np

from ember.common.messages import TaskResult
from ember.common.model import FLModel
from ember.runtime.context import ServerContext
from ember.runtime.errors import JobError
from ember.streaming.lazy import resolve_deferred

#: task meta: the task's name (``FedTaskRecipe(task_name=...)``)
FED_TASK_NAME = "task_name"
#: where the results go, relative to the server's folder, unless the recipe says otherwise
DEFAULT_OUTPUT = "fed_task/results.json"


class FedTaskController:
    """Send one task named ``task_name`` (params ``task_data``, meta ``task_meta`` plus
    ``"task_name"``) to the sites chosen from those alive when it starts: all of them, or
    ``num_clients`` of them, or ``ceil(fraction * alive)``, drawn without replacement from
    ``seed`` (drawn and recorded when None) and kept in the job's site order. Wait for
    ``min_responses`` of them (None: all) until ``timeout`` seconds (0: the job's
    ``runtime.task_timeout``).

    Writes ``server/<output_path>`` (JSON): ``{"task_name", "seed", "available", "sampled",
    "sites": {site: {"params", "params_type", "metrics", "meta"}}, "failed", "timed_out"}``;
    arrays become nested lists, numpy scalars numbers. Also in ``ctx.state["fed_task_results"]``
    and as round 0 of ``round_metrics.jsonl`` (the sites' metrics).
    """

    def __init__(
        self,
        task_name: str,
        task_data: dict[str, Any] | None = None,
        task_meta: dict[str, Any] | None = None,
        num_clients: int | None = None,
        fraction: float | None = None,
        min_responses: int | None = None,
        timeout: float = 0,
        seed: int | None = None,
        output_path: str = DEFAULT_OUTPUT,
    ) -> None:
        if num_clients is not None and fraction is not None:
            raise JobError("give num_clients or fraction, not both")
        self.task_name = task_name
        self.task_data = dict(task_data or {})
        self.task_meta = dict(task_meta or {})
        self.num_clients = num_clients
        self.fraction = fraction
        self.min_responses = min_responses
        self.timeout = timeout
        self.seed = seed
        self.output_path = output_path

    def sample(self, sites: list[str], seed: int) -> list[str]:
        """The sites that get the task, in the job's order (the same for the same seed)."""
        if self.num_clients is not None:
            wanted = self.num_clients
        elif self.fraction is not None:
            wanted = max(1, math.ceil(self.fraction * len(sites)))
        else:
            return list(sites)
        if wanted > len(sites):
            raise JobError(
                f"num_clients={wanted} but only {len(sites)} sites are alive "
                f"({', '.join(sites) or 'none'}); lower num_clients or add sites"
            )
        rng = np.random.default_rng(seed)
        chosen = rng.choice(len(sites), size=wanted, replace=False)
        return [sites[i] for i in sorted(int(i) for i in chosen)]

    def run(self, ctx: ServerContext) -> None:
        started = time.monotonic()
        seed = self.seed if self.seed is not None else secrets.randbits(32)
        available = ctx.board.alive_sites()
        sampled = self.sample(available, seed)
        min_responses = len(sampled) if self.min_responses is None else self.min_responses
        if min_responses > len(sampled):
            raise JobError(
                f"min_responses={min_responses} exceeds the {len(sampled)} sampled sites "
                f"({', '.join(sampled)}); lower min_responses or raise num_clients"
            )
        ctx.log.info("task %r to %s (seed %d)", self.task_name, ", ".join(sampled), seed)
        ctx.progress.round_started(0, 1, len(sampled))
        task = FLModel(
            params=dict(self.task_data),
            meta={**self.task_meta, FED_TASK_NAME: self.task_name},
            current_round=0,
            total_rounds=1,
        )
        received: dict[str, dict[str, Any]] = {}
        site_metrics: dict[str, dict[str, Any]] = {}

        def on_result(site: str, result: TaskResult) -> None:
            model = result.data or FLModel()
            params_type = model.params_type
            received[site] = {
                "params": jsonable(resolve_deferred(model.params or {})),
                "params_type": getattr(params_type, "value", params_type),
                "metrics": jsonable(model.metrics or {}),
                "meta": jsonable(resolve_deferred(model.meta or {})),
            }
            site_metrics[site] = received[site]["metrics"]
            ctx.progress.result_received(site)

        timeout = float(self.timeout) if self.timeout else ctx.task_timeout
        collected = ctx.board.broadcast(
            self.task_name, task, sampled, min_responses, timeout, on_result
        )
        del task
        results = {
            "task_name": self.task_name,
            "seed": seed,
            "available": available,
            "sampled": sampled,
            "sites": received,
            "failed": collected.failed,
            "timed_out": collected.timed_out,
        }
        out = Path(self.output_path)
        if not out.is_absolute():
            out = ctx.server_dir / out
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        ctx.state["fed_task_results"] = results
        ctx.records.round(0, collected, {}, site_metrics, time.monotonic() - started)
        ctx.progress.round_done(0, {})
        ctx.records.summary(
            task_name=self.task_name,
            seed=seed,
            sampled=sampled,
            responded=collected.responded,
            results=str(out),
        )


def jsonable(value: Any) -> Any:
    """``value`` with arrays as nested lists, numpy scalars as numbers, tuples and sets as
    lists and keys as strings; anything else JSON cannot hold as its ``repr``."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)  # JSON has no NaN or inf
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return repr(value)
