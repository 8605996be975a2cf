"""The FedBuff controller: the server's workflow of an ember-edge job.

It runs :class:`~ember_edge.fedbuff.FedBuff` over report cycles. Each cycle it frees the
slots of devices that did not answer within ``device_wait_timeout``, refills the device
selection, and gives every alive aggregator site an ``edge_report`` task (through
``ctx.board.broadcast``, bounded by ``edge.report_timeout``): the current model version,
its params when the site does not hold that version yet, and the site's newly selected
devices. Each report's per-version sums go into FedBuff as they are fed in (in site order);
a new model version is evaluated (``evaluator``, a ``"module:function"`` of the params that
returns metrics), saved and recorded in ``round_metrics.jsonl`` (its ``round`` is the
version). The job ends at ``max_model_version``; it fails when fewer than ``min_clients``
aggregator sites are alive, or when no new version came within ``edge.progress_timeout``.
With ``relays`` (three tiers, :mod:`ember_edge.relay`) only the relay sites get report tasks
and count towards ``min_clients``; a relay's report names the devices of a failed leaf
(``lost``), which leave the pool until their leaf announces them again.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ember.config import describe_setting, get_setting
from ember.controllers import (
    Collected,
    FLModel,
    InsufficientClients,
    JobError,
    ServerContext,
    TaskResult,
    build_persistor,
)
from ember.plugins import load_target
from ember.recipes import APP_DIR
from ember_edge.fedbuff import FedBuff, FedBuffConfig, FedBuffError
from ember_edge.site import EDGE_META, EDGE_REPORT, split_report


class FedBuffController:
    """FedBuff over aggregator sites (NVFlare's edge ``ModelUpdateAssessor``)."""

    def __init__(
        self,
        persistor: dict[str, Any],
        num_updates_for_model: int,
        device_selection_size: int,
        max_model_version: int,
        max_model_history: int | None = None,
        staleness_weight: bool = False,
        global_lr: float = 1.0,
        min_hole_to_fill: int = 1,
        device_reuse: bool = True,
        initial_min_client_num: int | None = None,
        device_wait_timeout: float | None = None,
        device_sampling: str = "random",
        min_clients: int = 1,
        evaluator: str | None = None,
        report_interval: float | None = None,
        seed: int = 0,
        task_meta: dict[str, Any] | None = None,
        relays: dict[str, list[str]] | None = None,
    ) -> None:
        wait = device_wait_timeout
        try:
            self.config = FedBuffConfig(
                num_updates_for_model=num_updates_for_model,
                device_selection_size=device_selection_size,
                max_model_version=max_model_version,
                max_model_history=max_model_history,
                staleness_weight=staleness_weight,
                global_lr=global_lr,
                min_hole_to_fill=min_hole_to_fill,
                device_reuse=device_reuse,
                initial_min_client_num=initial_min_client_num,
                device_wait_timeout=float(get_setting("edge.device_wait_timeout"))
                if wait is None
                else wait,
                device_sampling=device_sampling,
                seed=seed,
            )
        except FedBuffError as exc:
            raise JobError(f"FedBuffController: {exc}") from None
        self.persistor_spec = persistor
        self.min_clients = min_clients
        self.evaluator_target = evaluator
        self.evaluator: Callable[[dict[str, np.ndarray]], dict[str, Any]] | None = None
        self.report_interval = report_interval
        self.task_meta = dict(task_meta or {})
        self.relays = dict(relays or {})

    def run(self, ctx: ServerContext) -> None:
        named = set(self.relays) | {leaf for leaves in self.relays.values() for leaf in leaves}
        missing = sorted(named - set(ctx.board.sites))
        if missing:
            raise JobError(
                f"relays names sites this job does not have: {missing} (the job's sites: "
                f"{sorted(ctx.board.sites)}); fix EdgeFedBuffRecipe(relays=...)"
            )
        if self.evaluator_target:
            # the recipe bundles an evaluator's module that is not installed into the job's
            # app/ folder: importable here too, not only at the sites
            app_dir = str(ctx.job_dir / APP_DIR)
            if app_dir not in sys.path:
                sys.path.insert(0, app_dir)
            self.evaluator = load_target(self.evaluator_target)
        persistor = build_persistor(self.persistor_spec)
        fb = FedBuff(self.config, persistor.initial_params(ctx.job_dir))
        interval = float(
            self.report_interval
            if self.report_interval is not None
            else get_setting("edge.report_interval")
        )
        report_timeout = float(get_setting("edge.report_timeout"))
        progress_timeout = float(get_setting("edge.progress_timeout"))
        path = ctx.server_dir / "models" / f"global_model{persistor.extension}"
        held: dict[str, int] = {}  # site -> the model version it holds
        known: set[str] = set()
        site_stats: dict[str, dict[str, Any]] = {}
        made: list[tuple[int, dict[str, Any], float]] = []  # versions made this cycle
        started = last_progress = version_started = time.monotonic()
        ctx.progress.round_started(0, self.config.max_model_version, len(ctx.board.sites))

        def on_result(site: str, result: TaskResult) -> None:
            nonlocal version_started
            model = result.data or FLModel()
            edge = dict(model.meta.get(EDGE_META) or {})
            if not isinstance(edge.get("updates", {}), dict):
                raise JobError(f"{site} sent a malformed edge report")
            held[site] = int(edge.get("version", held.get(site, -1)))
            if edge.get("lost"):
                fb.remove_devices(str(d) for d in edge["lost"])
            for leaf, why in dict(edge.get("leaf_failures") or {}).items():
                ctx.log.warning("relay %s could not reach its leaf %s: %s", site, leaf, why)
            if edge.get("available"):
                fb.add_devices(site, [str(d) for d in edge["available"]])
                known.add(site)
            site_stats[site] = dict(edge.get("stats") or {})
            try:
                by_version = split_report(model.params or {})
                for name, info in sorted(edge.get("updates", {}).items(), key=lambda i: int(i[0])):
                    devices = [str(d) for d in info.get("devices", [])]
                    fb.reported(devices)
                    if devices:
                        fb.accept(
                            int(name),
                            by_version.get(int(name), {}),
                            float(info["weight"]),
                            len(devices),
                        )
                    if fb.maybe_new_version():
                        now = time.monotonic()
                        made.append((fb.version, self._metrics(fb), now - version_started))
                        version_started = now
            except (FedBuffError, ValueError, KeyError) as exc:
                raise JobError(f"{site} sent an edge report FedBuff cannot use: {exc}") from None

        while not fb.done:
            alive = ctx.board.alive_sites()
            if self.relays:  # three tiers: the server talks to the relays only
                alive = [s for s in alive if s in self.relays]
            for site in known - set(alive):
                fb.remove_site(site)
                known.discard(site)
            if len(alive) < self.min_clients:
                dead = [
                    f"{s.name}: {s.failure or 'ended'}"
                    for s in ctx.board.sites.values()
                    if not s.alive
                ]
                raise InsufficientClients(
                    f"FedBuff needs min_clients={self.min_clients} aggregator sites, "
                    f"{len(alive)} are alive; " + "; ".join(dead)
                )
            now = time.monotonic()
            fb.expire(now)
            assigned = fb.fill(now)
            version = fb.version

            def task_for(site: str, version: int = version, assigned: Any = assigned) -> FLModel:
                return FLModel(
                    params=None if held.get(site) == version else dict(fb.params),
                    current_round=version,
                    total_rounds=self.config.max_model_version,
                    meta={
                        **self.task_meta,
                        EDGE_META: {
                            "version": version,
                            "devices": assigned.get(site, []),
                            "report_interval": interval,
                        },
                    },
                )

            collected = ctx.board.broadcast(
                EDGE_REPORT, task_for, alive, 0, report_timeout, on_result
            )
            for site in collected.timed_out:
                held.pop(site, None)
            if made:
                last_progress = time.monotonic()
                self._record(ctx, made, collected, persistor, fb, path, site_stats)
                made.clear()
            elif time.monotonic() - last_progress > progress_timeout:
                raise JobError(
                    f"FedBuff made no new model version within "
                    f"{describe_setting('edge.progress_timeout', progress_timeout)} (version "
                    f"{fb.version}, {len(fb.available)} devices known, {len(fb.selection)} "
                    f"selected, {fb.buffered} of {self.config.num_updates_for_model} updates "
                    "buffered)"
                )
        persistor.save(fb.params, path)
        ctx.state["global_params"] = fb.params
        ctx.state["global_model_path"] = path
        devices = {
            key: sum(int(s.get(key, 0)) for s in site_stats.values())
            for key in ("tasks", "answered", "dropped_out")
        }
        ctx.records.summary(
            model_versions=fb.version,
            max_model_version=self.config.max_model_version,
            devices_known=len(fb.available),
            device_tasks=devices,
            seconds=time.monotonic() - started,
            **fb.stats.as_dict(),
        )
        ctx.log.info("FedBuff finished at model version %d: %s", fb.version, fb.stats.as_dict())

    def _metrics(self, fb: FedBuff) -> dict[str, Any]:
        metrics: dict[str, Any] = {"model_version": fb.version}
        if self.evaluator is not None:
            metrics.update(self.evaluator(dict(fb.params)))
        return metrics

    def _record(
        self,
        ctx: ServerContext,
        made: list[tuple[int, dict[str, Any], float]],
        collected: Collected,
        persistor: Any,
        fb: FedBuff,
        path: Any,
        site_stats: dict[str, dict[str, Any]],
    ) -> None:
        persistor.save(fb.params, path)
        for version, metrics, seconds in made:
            stats = {**metrics, **fb.stats.as_dict()}
            ctx.records.round(version, collected, stats, dict(site_stats), seconds)
            ctx.progress.round_done(version, metrics)
            if version < self.config.max_model_version:
                ctx.progress.round_started(
                    version, self.config.max_model_version, len(collected.responded)
                )
            ctx.log.info("FedBuff model version %d: %s", version, stats)
