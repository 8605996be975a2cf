"""Cyclic weight transfer: the model travels from site to site, each training it in turn."""

from __future__ import annotations

import numbers
import secrets
import time
from typing import Any

import numpy as np

from ember.common.messages import TaskName, TaskResult
from ember.common.model import FLModel, ParamsType
from ember.config import describe_setting
from ember.runtime.aggregation import apply_update
from ember.runtime.board import Collected
from ember.runtime.checkpoint import checkpoint_round, resume_params
from ember.runtime.context import ServerContext
from ember.runtime.controller import build_persistor
from ember.runtime.errors import InsufficientClients, JobError
from ember.streaming.lazy import DeferredTensor, release_all

ORDERS = ("fixed", "random")
#: task meta: this hop's 0-based position in the round's order
CYCLIC_POSITION = "cyclic_position"
#: task meta: the round's order (the sites alive when the round started)
CYCLIC_ORDER = "cyclic_order"


class CyclicController:
    """Each round the model visits every alive site once, in ``order`` (``"fixed"``: the
    job's site order; ``"random"``: a new permutation per round drawn from ``seed``), and
    each site trains the model the previous one sent. A site that is dead, fails or times
    out is skipped (with a warning) while at least ``min_clients`` sites remain alive; else
    the job fails naming the sites and why. The last model of each round is saved as
    ``server/models/global_model<ext>``.
    """

    def __init__(
        self,
        num_rounds: int,
        min_clients: int,
        persistor: dict[str, Any],
        order: str = "fixed",
        seed: int | None = None,
        task_meta: dict[str, Any] | None = None,
    ) -> None:
        if order not in ORDERS:
            raise JobError(f"cyclic order must be one of {list(ORDERS)}, got {order!r}")
        self.num_rounds = num_rounds
        self.min_clients = min_clients
        self.persistor = build_persistor(persistor)
        self.order = order
        self.seed = seed
        self.task_meta = dict(task_meta or {})
        self._resume: dict[str, Any] = {}

    # -- resumable (ember.controllers.Resumable) --------------------------------------------
    def checkpoint_state(self) -> dict[str, Any]:
        """The next round, the seed, the random order's generator and the orders so far."""
        return dict(self._resume)

    def restore_state(self, state: dict[str, Any]) -> None:
        """Take back what :meth:`checkpoint_state` returned."""
        self._resume = dict(state)

    def run(self, ctx: ServerContext) -> None:
        self._resume = {}
        resumed = resume_params(ctx, self)
        params: dict[str, Any] = (
            resumed if resumed is not None else self.persistor.initial_params(ctx.job_dir)
        )
        global_path = ctx.server_dir / "models" / f"global_model{self.persistor.extension}"
        ctx.state["persistor"] = self.persistor
        seed: int | None = None
        if self.order == "random":
            # recorded in metrics_summary.json, so a run's orders can be reproduced
            seed = self.seed if self.seed is not None else secrets.randbits(32)
            seed = int(self._resume.get("seed", seed))
            ctx.log.info("random order from seed %d", seed)
        rng = np.random.default_rng(seed)
        if "rng" in self._resume:
            rng.bit_generator.state = self._resume["rng"]
        orders: list[list[str]] = [list(o) for o in self._resume.get("orders", [])]
        completed = int(self._resume.get("next_round", 0))
        for rnd in range(completed, self.num_rounds):
            started = time.monotonic()
            self._check_enough(ctx, rnd, Collected())
            sites = ctx.board.alive_sites()
            order = (
                sites if self.order == "fixed" else [sites[i] for i in rng.permutation(len(sites))]
            )
            orders.append(order)
            ctx.log.info("round %d: order %s", rnd, " -> ".join(order))
            ctx.progress.round_started(rnd, self.num_rounds, len(order))
            hops = Collected()
            site_metrics: dict[str, dict[str, Any]] = {}
            last_metrics: dict[str, float] = {}
            for position, site in enumerate(order):
                model = self._hop(ctx, rnd, position, order, site, params, hops)
                if model is None:
                    continue
                params = self._next_params(site, params, model)
                site_metrics[site] = dict(model.metrics or {})
                last_metrics = _numeric(model.metrics)
                ctx.progress.result_received(site)
            self.persistor.save(params, global_path)
            completed = rnd + 1
            self._resume = {
                "next_round": completed,
                "orders": orders,
                "rng": rng.bit_generator.state,
            }
            if seed is not None:
                self._resume["seed"] = seed
            checkpoint_round(ctx, self, rnd, params)
            ctx.records.round(rnd, hops, last_metrics, site_metrics, time.monotonic() - started)
            ctx.progress.round_done(rnd, last_metrics)
        ctx.state["global_params"] = params
        ctx.state["global_model_path"] = global_path
        ctx.state["cyclic_orders"] = orders
        ctx.records.summary(
            rounds_completed=completed,
            num_rounds=self.num_rounds,
            order=self.order,
            seed=seed,
            orders=orders,
        )

    def _hop(
        self,
        ctx: ServerContext,
        rnd: int,
        position: int,
        order: list[str],
        site: str,
        params: dict[str, Any],
        hops: Collected,
    ) -> FLModel | None:
        """Send the model to ``site`` and wait for its result; None when it is skipped."""
        task = FLModel(
            params_type=ParamsType.FULL,
            params=params,
            current_round=rnd,
            total_rounds=self.num_rounds,
            meta={**self.task_meta, CYCLIC_POSITION: position, CYCLIC_ORDER: list(order)},
        )
        got: list[FLModel] = []

        def keep(_: str, result: TaskResult) -> None:
            got.append(result.data or FLModel())

        posted = ctx.board.post(TaskName.TRAIN, task, [site], ctx.task_timeout)
        del task
        # min_responses=0: a shortfall comes back as facts (failed / timed out) rather than
        # as an exception, so the controller decides whether the cycle can go on
        outcome = ctx.board.collect(posted, 0, keep)
        if got:
            hops.responded.append(site)
            return got[0]
        if site in outcome.timed_out:
            hops.timed_out.append(site)
            reason = f"timed out ({describe_setting('runtime.task_timeout', ctx.task_timeout)})"
        else:
            reason = outcome.failed.get(site, "gave no result")
            hops.failed[site] = reason
        self._check_enough(ctx, rnd, hops)
        remaining = [s for s in ctx.board.alive_sites() if s not in hops.timed_out]
        ctx.log.warning(
            "round %d: skipping %s (%s); %d sites remain (min_clients=%d)",
            rnd,
            site,
            _first_line(reason),
            len(remaining),
            self.min_clients,
        )
        return None

    def _check_enough(self, ctx: ServerContext, rnd: int, hops: Collected) -> None:
        """Raise :class:`InsufficientClients` when fewer than ``min_clients`` sites can
        still train (alive and not timed out in this round)."""
        remaining = [s for s in ctx.board.alive_sites() if s not in hops.timed_out]
        if len(remaining) >= self.min_clients:
            return
        reasons = {
            name: state.failure or "ended its script"
            for name, state in ctx.board.sites.items()
            if not state.alive
        }
        reasons.update(hops.failed)
        late = f"timed out ({describe_setting('runtime.task_timeout', ctx.task_timeout)})"
        reasons.update({s: late for s in hops.timed_out})
        raise InsufficientClients(
            f"cyclic round {rnd} needs min_clients={self.min_clients} sites able to train, "
            f"only {len(remaining)} remain ({', '.join(remaining) or 'none'}); "
            + "; ".join(f"{site}: {reason}" for site, reason in reasons.items())
        )

    def _next_params(self, site: str, params: dict[str, Any], model: FLModel) -> dict[str, Any]:
        """The model for the next site: ``site``'s FULL result (keys it did not send keep
        their value), or the model it received plus its DIFF."""
        if not model.params:
            raise JobError(
                f"{site} sent no params with its result; a training script must send "
                "FLModel(params=...)"
            )
        received = model.params
        pulled = {
            k: v.fetch(keep=False) if isinstance(v, DeferredTensor) else v
            for k, v in received.items()
        }
        release_all(received)
        return apply_update(params, pulled, model.params_type or ParamsType.FULL)


def _numeric(metrics: dict[str, Any] | None) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in (metrics or {}).items()
        if isinstance(v, numbers.Real) and not isinstance(v, bool)
    }


def _first_line(text: str) -> str:
    """A reason's first line (``Type: message``, without the traceback)."""
    return (text.strip().splitlines() or [""])[0]
