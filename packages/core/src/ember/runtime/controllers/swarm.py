"""Swarm learning, server side: the server only orchestrates; the sites aggregate.

Each round the server picks an aggregator site and gives every alive site a ``train`` task
without params: a site's runtime (:class:`~ember.runtime.swarm_site.SwarmSiteLink`) fills in
the current global model, pulled from the site that holds it, runs the script, and sends
the result to the aggregator site. Once the trainers have answered, the server tells the
aggregator which contributions make the round (``swarm_aggregate``); it averages them, keeps
the new global model and saves it in its own workspace. The server sees metrics only.
"""

from __future__ import annotations

import random
import time
from typing import Any

from ember.common.messages import TaskName, TaskResult
from ember.common.model import FLModel, MetaKey
from ember.config import describe_setting
from ember.runtime.aggregation import WeightedAverage
from ember.runtime.board import Collected
from ember.runtime.checkpoint import checkpoint_round, resume_params
from ember.runtime.context import ServerContext
from ember.runtime.errors import InsufficientClients, JobError

SWARM_AGGREGATE = "swarm_aggregate"
SWARM_META = "swarm"


class SwarmController:
    """Rounds of train-then-aggregate, with the aggregator chosen among alive sites."""

    def __init__(
        self,
        num_rounds: int,
        min_clients: int,
        aggregator_selection: str = "round_robin",
        seed: int = 0,
        task_meta: dict[str, Any] | None = None,
    ) -> None:
        if aggregator_selection not in ("round_robin", "random"):
            raise JobError(
                f"aggregator_selection must be 'round_robin' or 'random', "
                f"got {aggregator_selection!r}"
            )
        self.num_rounds = num_rounds
        self.min_clients = min_clients
        self.selection = aggregator_selection
        self.rng = random.Random(seed)
        self.task_meta = dict(task_meta or {})
        self._next_round = 0
        # the site holding the current global model and its round (-1: the initial model,
        # which every site loads itself), the aggregator of each round so far
        self._holder: str | None = None
        self._global_round = -1
        self._aggregators: list[str] = []

    # -- Resumable: the server's part of a swarm (the model itself stays at its holder) ----
    def checkpoint_state(self) -> dict[str, Any]:
        version, internal, gauss = self.rng.getstate()
        return {
            "next_round": self._next_round,
            "holder": self._holder,
            "global_round": self._global_round,
            "aggregators": list(self._aggregators),
            "rng": [version, list(internal), gauss],
        }

    def restore_state(self, state: dict[str, Any]) -> None:
        self._next_round = int(state["next_round"])
        holder = state["holder"]
        self._holder = None if holder is None else str(holder)
        self._global_round = int(state["global_round"])
        self._aggregators = [str(a) for a in state["aggregators"]]
        version, internal, gauss = state["rng"]
        self.rng.setstate((int(version), tuple(int(i) for i in internal), gauss))

    def _aggregator(self, rnd: int, alive: list[str]) -> str:
        if self.selection == "random":
            return self.rng.choice(alive)
        return alive[rnd % len(alive)]

    def run(self, ctx: ServerContext) -> None:
        # a resumed job goes on after its last checkpointed round: the model of that round
        # is at its holder, which saved it in its workspace (SwarmSiteLink)
        resume_params(ctx, self)
        for rnd in range(self._next_round, self.num_rounds):
            started = time.monotonic()
            failed: list[str] = []  # aggregators that died in this round
            while True:
                alive = ctx.board.alive_sites()
                if len(alive) < self.min_clients:
                    dead = [
                        f"{state.name}: {state.failure or 'ended its script'}"
                        for state in ctx.board.sites.values()
                        if not state.alive
                    ]
                    raise InsufficientClients(
                        f"swarm round {rnd} needs min_clients={self.min_clients} sites, "
                        f"only {len(alive)} are alive: {alive}"
                        + (f"; failed aggregators: {failed}" if failed else "")
                        + "".join(f"; {d}" for d in dead)
                    )
                aggregator = self._aggregator(rnd + len(failed), alive)
                ctx.progress.round_started(rnd, self.num_rounds, len(alive))
                swarm = {
                    "round": rnd,
                    "aggregator": aggregator,
                    "global_round": self._global_round,
                    "global_from": self._holder,
                }
                task = FLModel(
                    current_round=rnd,
                    total_rounds=self.num_rounds,
                    meta={**self.task_meta, SWARM_META: swarm},
                )
                try:
                    collected, round_metrics, site_metrics = self._train(ctx, task, alive)
                    self._aggregate(ctx, rnd, aggregator, collected.responded)
                    break
                except InsufficientClients as exc:
                    if aggregator in ctx.board.alive_sites():
                        raise JobError(
                            f"swarm round {rnd} (aggregator {aggregator}): {exc}"
                        ) from None
                    # the round's contributions died with it: run the round again elsewhere
                    ctx.log.warning(
                        "swarm round %d: aggregator %s failed (%s); running the round again "
                        "with another aggregator",
                        rnd,
                        aggregator,
                        exc,
                    )
                    failed.append(aggregator)
            self._next_round, self._holder, self._global_round = rnd + 1, aggregator, rnd
            self._aggregators.append(aggregator)
            ctx.records.round(
                rnd, collected, round_metrics, site_metrics, time.monotonic() - started
            )
            checkpoint_round(ctx, self, rnd, {})
            ctx.progress.round_done(rnd, round_metrics)
        ctx.records.summary(
            rounds_completed=len(self._aggregators),
            num_rounds=self.num_rounds,
            aggregators=self._aggregators,
            final_model={"site": self._holder, "round": self._global_round},
        )
        ctx.log.info(
            "swarm finished: site %s holds the model of round %s", self._holder, self._global_round
        )

    def _train(
        self, ctx: ServerContext, task: FLModel, alive: list[str]
    ) -> tuple[Collected, dict[str, float], dict[str, dict[str, Any]]]:
        """The round's train tasks: who answered, and the metrics they reported."""
        metrics = WeightedAverage()
        site_metrics: dict[str, dict[str, Any]] = {}

        def on_train(site: str, result: TaskResult) -> None:
            model = result.data or FLModel()
            weight = float(model.meta.get(MetaKey.NUM_STEPS_CURRENT_ROUND, 1.0))
            metrics.add(site, None, None, weight, model.metrics)
            site_metrics[site] = dict(model.metrics or {})
            ctx.progress.result_received(site)

        collected = ctx.board.broadcast(
            TaskName.TRAIN, task, alive, self.min_clients, ctx.task_timeout, on_train
        )
        return collected, metrics.metrics(), site_metrics

    def _aggregate(
        self, ctx: ServerContext, rnd: int, aggregator: str, contributors: list[str]
    ) -> None:
        """Tell the aggregator which contributions make round ``rnd``; wait until it has
        the new global model."""
        order = FLModel(
            current_round=rnd,
            meta={SWARM_META: {"round": rnd, "contributors": contributors}},
        )
        collected = ctx.board.post(SWARM_AGGREGATE, order, [aggregator], ctx.task_timeout)
        out = ctx.board.collect(collected, 0, lambda site, result: None)
        if out.failed.get(aggregator) and aggregator in ctx.board.alive_sites():
            raise JobError(f"swarm round {rnd}: {out.failed[aggregator]}")
        if out.timed_out:
            raise JobError(
                f"swarm round {rnd}: aggregator {aggregator} did not answer within "
                f"{describe_setting('runtime.task_timeout', ctx.task_timeout)}"
            )
        if not out.responded:
            raise InsufficientClients(f"aggregator {aggregator}: {out.failed.get(aggregator)}")
