"""The server side of federated XGBoost: histogram-based training over XGBoost's collective
(:class:`XGBHistogramController`) and tree-based bagging or cyclic training
(:class:`XGBTreeController`)."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from ember.common import FLModel, TaskResult
from ember.controllers import Collected, JobError, ServerContext
from ember.tunnel import TUNNEL_META, GrpcUpstream, write_loopback_tls
from ember_xgboost import model as xgb_model
from ember_xgboost.data_loader import COLUMN_SPLIT, ROW_SPLIT

TUNNEL = "xgboost"
FEDERATED_SERVICE = "/xgboost.collective.federated.Federated/"
TRAIN = "train"


def _site_order(ctx: ServerContext, client_ranks: dict[str, int] | None) -> list[str]:
    """The sites by rank: ``client_ranks`` or the job's site order."""
    sites = list(ctx.board.sites)
    if not client_ranks:
        return sites
    unknown = sorted(set(client_ranks) - set(sites))
    missing = sorted(set(sites) - set(client_ranks))
    if unknown or missing:
        raise JobError(
            f"client_ranks must rank exactly the job's sites ({', '.join(sites)}): "
            + "; ".join(
                part
                for part in (
                    f"unknown {', '.join(unknown)}" if unknown else "",
                    f"unranked {', '.join(missing)}" if missing else "",
                )
                if part
            )
        )
    return sorted(sites, key=lambda s: client_ranks[s])


class XGBHistogramController:
    """Histogram-based federated XGBoost (NVFlare's ``XGBFedController``).

    Every site trains in its own process, its XGBoost worker talking to the site's endpoint
    of the tunnel ``xgboost`` (``ember.tunnel``; a Unix socket only the site's user can
    open). The server's job process answers the collective calls itself
    (:class:`~ember_xgboost.collective.FederatedCollective`), or, with
    ``xgb_options["collective"] = "xgboost"``, replays them on XGBoost's federated server run
    as a child process (a free port, mutual TLS with throw-away certificates). All sites
    must train at once: the job needs every site of ``client_ranks`` (or of the job) alive,
    and a site that dies fails the job at once with its name. The model of rank 0 (the label
    owner in vertical training) is saved as XGBoost JSON to ``server/<model_file_name>``;
    each boosting round's validation metrics go to ``round_metrics.jsonl`` and the job's
    tracking.
    """

    def __init__(
        self,
        num_rounds: int,
        data_split_mode: int = ROW_SPLIT,
        xgb_params: dict[str, Any] | None = None,
        xgb_options: dict[str, Any] | None = None,
        client_ranks: dict[str, int] | None = None,
        data_loaders: dict[str, dict[str, Any]] | None = None,
        model_file_name: str = "xgboost_model.json",
        secure_training: bool = False,
    ) -> None:
        if secure_training:
            raise JobError(
                "secure (homomorphic-encryption) XGBoost needs a non-PyPI XGBoost build "
                "and is not supported; see docs/xgboost.md"
            )
        if data_split_mode not in (ROW_SPLIT, COLUMN_SPLIT):
            raise JobError(
                f"data_split_mode must be 0 (rows) or 1 (columns), got {data_split_mode}"
            )
        self.num_rounds = num_rounds
        self.data_split_mode = data_split_mode
        self.xgb_params = dict(xgb_params or {})
        self.xgb_options = dict(xgb_options or {})
        self.client_ranks = client_ranks
        self.data_loaders = dict(data_loaders or {})
        self.model_file_name = model_file_name

    def run(self, ctx: ServerContext) -> None:
        from ember_xgboost.support import require_federated

        require_federated(column_split=self.data_split_mode == COLUMN_SPLIT)
        ranked = _site_order(ctx, self.client_ranks)
        dead = sorted(set(ranked) - set(ctx.board.alive_sites()))
        if dead:
            raise JobError(
                f"histogram-based XGBoost trains on every site at once; {', '.join(dead)} "
                "is not alive"
            )
        collective = self.xgb_options.get("collective", "ember")
        if collective == "ember":
            self._run_in_process(ctx, ranked)
        elif collective == "xgboost":
            self._run_federated_server(ctx, ranked)
        else:
            raise JobError(
                f'xgb_options["collective"] must be "ember" (the server job answers the '
                f'collective) or "xgboost" (XGBoost\'s federated server), got {collective!r}'
            )

    def _run_in_process(self, ctx: ServerContext, ranked: list[str]) -> None:
        """The server's job process answers the collective itself (ember_xgboost.collective)."""
        from ember_xgboost.collective import FederatedCollective

        started = time.monotonic()
        ctx.log.info(
            "XGBoost collective in the server job for %d sites (%s)", len(ranked), ", ".join(ranked)
        )
        ctx.tunnels.open(
            TUNNEL,
            FederatedCollective(len(ranked), ranked),
            sites=ranked,
            allow=(FEDERATED_SERVICE,),
        )
        try:
            self._train(ctx, ranked, started)
        finally:
            ctx.tunnels.close(TUNNEL)

    def _run_federated_server(self, ctx: ServerContext, ranked: list[str]) -> None:
        """XGBoost's federated server as a child process, reached over mutual TLS."""
        from ember_xgboost.federated_server import FederatedServer

        started = time.monotonic()
        tls = write_loopback_tls(ctx.server_dir / ".xgboost_tls")
        log_path = ctx.server_dir / "xgboost_federated_server.log"
        with open(log_path, "ab") as log:
            server = FederatedServer(
                len(ranked), tls, log, int(self.xgb_options.get("server_timeout", 300))
            )
        watcher = threading.Thread(
            target=self._watch, args=(ctx, server, log_path), daemon=True, name="ember-xgb-server"
        )
        try:
            ctx.log.info(
                "XGBoost federated server on %s for %d sites (%s)",
                server.address,
                len(ranked),
                ", ".join(ranked),
            )
            ctx.tunnels.open(
                TUNNEL,
                GrpcUpstream(
                    server.address,
                    root_certificates=tls.server_cert.read_bytes(),
                    private_key=tls.client_key.read_bytes(),
                    certificate_chain=tls.client_cert.read_bytes(),
                    server_name="localhost",
                ),
                sites=ranked,
                allow=(FEDERATED_SERVICE,),
            )
            watcher.start()
            self._train(ctx, ranked, started)
        finally:
            ctx.tunnels.close(TUNNEL)
            server.stop()
            shutil.rmtree(tls.folder, ignore_errors=True)

    @staticmethod
    def _watch(ctx: ServerContext, server: Any, log_path: Path) -> None:
        """End the job if the federated server dies while training (the sites' collectives
        would otherwise wait for it)."""
        code = server.process.wait()
        if code != 0 and server.process.stdin is not None and not server.process.stdin.closed:
            tail = log_path.read_text("utf-8", "replace")[-2000:].strip()
            ctx.board.end(f"XGBoost's federated server exited with code {code}: {tail}")

    def _task(self, site: str, rank: int, world_size: int) -> FLModel:
        loader = self.data_loaders.get(site)
        if loader is None:
            raise JobError(f"no data_loader for {site}; give one in per_site_config")
        return FLModel(
            params={},
            meta={
                TUNNEL_META: {
                    "name": TUNNEL,
                    "protocol": "grpc",
                    "allow": [FEDERATED_SERVICE],
                    # only the site's own user can reach the endpoint (a socket in a 0700
                    # folder): as safe as mutual TLS here, without encrypting every byte
                    "unix_socket": True,
                },
                "xgb_mode": "histogram",
                "rank": rank,
                "world_size": world_size,
                "data_split_mode": self.data_split_mode,
                "num_rounds": self.num_rounds,
                "xgb_params": self.xgb_params,
                "early_stopping_rounds": self.xgb_options.get("early_stopping_rounds"),
                "use_gpus": bool(self.xgb_options.get("use_gpus", False)),
                "data_loader": loader,
            },
            current_round=0,
            total_rounds=1,
        )

    def _train(self, ctx: ServerContext, ranked: list[str], started: float) -> None:
        tasks = {site: self._task(site, rank, len(ranked)) for rank, site in enumerate(ranked)}
        ctx.progress.round_started(0, 1, len(ranked))
        results: dict[str, TaskResult] = {}

        def on_result(site: str, result: TaskResult) -> None:
            results[site] = result
            ctx.progress.result_received(site)

        collected = ctx.board.broadcast(
            TRAIN, lambda site: tasks[site], ranked, len(ranked), ctx.task_timeout, on_result
        )
        lead = results[ranked[0]].data or FLModel()
        model_json = xgb_model.from_params(lead.params)
        if model_json is None:
            raise JobError(f"{ranked[0]} (rank 0) sent no model")
        out = ctx.server_dir / self.model_file_name
        out.write_bytes(model_json)
        history: dict[str, dict[str, list[float]]] = json.loads(
            str(lead.meta.get("evals_result", "{}"))
        )
        self._record(ctx, collected, results, history, time.monotonic() - started)
        ctx.state["xgboost_model"] = str(out)
        ctx.records.summary(
            model=str(out),
            num_boosted_rounds=lead.meta.get("num_boosted_rounds"),
            best_iteration=lead.meta.get("best_iteration"),
            # each site's time in xgb.train (its collectives included), in seconds
            train_seconds={
                site: (r.data or FLModel()).meta.get("train_seconds") for site, r in results.items()
            },
        )
        ctx.progress.round_done(0, dict(lead.metrics or {}))

    @staticmethod
    def _record(
        ctx: ServerContext,
        collected: Collected,
        results: dict[str, TaskResult],
        history: dict[str, dict[str, list[float]]],
        duration: float,
    ) -> None:
        """One record per boosting round: the federation's metrics (XGBoost reduces them
        across the sites) and each site's view of them."""
        per_site = {
            site: json.loads(str((r.data or FLModel()).meta.get("evals_result", "{}")))
            for site, r in results.items()
        }
        rounds = max((len(v) for d in history.values() for v in d.values()), default=0)
        for rnd in range(rounds):
            metrics = {
                f"{data}_{metric}": values[rnd]
                for data, by_metric in history.items()
                for metric, values in by_metric.items()
                if rnd < len(values)
            }
            site_metrics = {
                site: {
                    f"{data}_{metric}": values[rnd]
                    for data, by_metric in h.items()
                    for metric, values in by_metric.items()
                    if rnd < len(values)
                }
                for site, h in per_site.items()
            }
            ctx.records.round(rnd, collected, metrics, site_metrics, duration / max(rounds, 1))


class XGBTreeController:
    """Tree-based federated XGBoost (NVFlare's tree-based bagging and cyclic workflows).

    - ``bagging``: each round every site grows ``num_local_parallel_tree`` trees on its own
      rows, starting from the global model, and sends only those; the server appends every
      site's trees (in site order) to the global model and sends it out again.
    - ``cyclic``: each round the sites take turns, in order; each adds one boosting round to
      the model it receives and sends the whole model on.

    The global model is saved as XGBoost JSON to ``server/<save_name>`` after every round.
    """

    def __init__(
        self,
        training_mode: str,
        num_rounds: int,
        train_args: dict[str, Any],
        data_loaders: dict[str, dict[str, Any]],
        lr_scales: dict[str, float] | None = None,
        save_name: str = "xgboost_model.json",
    ) -> None:
        if training_mode not in ("bagging", "cyclic"):
            raise JobError(f"training_mode must be 'bagging' or 'cyclic', got {training_mode!r}")
        self.training_mode = training_mode
        self.num_rounds = num_rounds
        self.train_args = dict(train_args)
        self.data_loaders = dict(data_loaders)
        self.lr_scales = dict(lr_scales or {})
        self.save_name = save_name

    def _task(self, site: str, model_json: bytes | None, rnd: int) -> FLModel:
        loader = self.data_loaders.get(site)
        if loader is None:
            raise JobError(f"no data_loader for {site}; give one in per_site_config")
        return FLModel(
            params=xgb_model.to_params(model_json) if model_json else {},
            meta={
                "xgb_mode": self.training_mode,
                "train_args": self.train_args,
                "lr_scale": float(self.lr_scales.get(site, 1.0)),
                "data_loader": loader,
            },
            current_round=rnd,
            total_rounds=self.num_rounds,
        )

    def run(self, ctx: ServerContext) -> None:
        sites = list(ctx.board.sites)
        global_model: dict[str, Any] | None = None
        out = ctx.server_dir / self.save_name
        for rnd in range(self.num_rounds):
            started = time.monotonic()
            alive = ctx.board.alive_sites()
            targets = [s for s in sites if s in alive]
            ctx.progress.round_started(rnd, self.num_rounds, len(targets))
            site_metrics: dict[str, dict[str, Any]] = {}
            if self.training_mode == "bagging":
                global_model, collected = self._bagging_round(
                    ctx, rnd, targets, global_model, site_metrics
                )
            else:
                global_model, collected = self._cyclic_round(
                    ctx, rnd, targets, global_model, site_metrics
                )
            out.write_bytes(xgb_model.dumps(global_model))
            metrics = _mean(site_metrics)
            ctx.records.round(rnd, collected, metrics, site_metrics, time.monotonic() - started)
            ctx.progress.round_done(rnd, metrics)
        ctx.state["xgboost_model"] = str(out)
        ctx.records.summary(model=str(out), training_mode=self.training_mode)

    def _received(
        self,
        ctx: ServerContext,
        rnd: int,
        site: str,
        result: TaskResult,
        site_metrics: dict[str, dict[str, Any]],
    ) -> bytes:
        model = result.data or FLModel()
        received = xgb_model.from_params(model.params)
        if received is None:
            raise JobError(f"{site} sent no trees in round {rnd}")
        site_metrics[site] = dict(model.metrics or {})
        ctx.progress.result_received(site)
        return received

    def _bagging_round(
        self,
        ctx: ServerContext,
        rnd: int,
        targets: list[str],
        global_model: dict[str, Any] | None,
        site_metrics: dict[str, dict[str, Any]],
    ) -> tuple[dict[str, Any], Collected]:
        current = xgb_model.dumps(global_model) if global_model is not None else None
        updates: list[dict[str, Any]] = []

        def on_update(site: str, result: TaskResult) -> None:
            updates.append(json.loads(self._received(ctx, rnd, site, result, site_metrics)))

        collected = ctx.board.broadcast(
            TRAIN,
            lambda site: self._task(site, current, rnd),
            targets,
            len(targets),
            ctx.task_timeout,
            on_update,
        )
        for update in updates:  # in site order: the board hands results over in that order
            global_model = xgb_model.append_trees(global_model, update)
        if global_model is None:
            raise JobError(f"round {rnd} produced no trees")
        return global_model, collected

    def _cyclic_round(
        self,
        ctx: ServerContext,
        rnd: int,
        targets: list[str],
        global_model: dict[str, Any] | None,
        site_metrics: dict[str, dict[str, Any]],
    ) -> tuple[dict[str, Any], Collected]:
        current = xgb_model.dumps(global_model) if global_model is not None else None
        collected = Collected()
        for site in targets:  # each site boosts the model the previous one sent
            current, one = self._turn(ctx, rnd, site, current, site_metrics)
            collected.responded += one.responded
        if current is None:
            raise JobError(f"round {rnd} produced no model")
        model: dict[str, Any] = json.loads(current)
        return model, collected

    def _turn(
        self,
        ctx: ServerContext,
        rnd: int,
        site: str,
        current: bytes | None,
        site_metrics: dict[str, dict[str, Any]],
    ) -> tuple[bytes, Collected]:
        received: list[bytes] = []

        def on_model(s: str, result: TaskResult) -> None:
            received.append(self._received(ctx, rnd, s, result, site_metrics))

        collected = ctx.board.broadcast(
            TRAIN, lambda s: self._task(s, current, rnd), [site], 1, ctx.task_timeout, on_model
        )
        return received[0], collected


def _mean(site_metrics: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Each metric's mean over the sites that reported it."""
    names = {k for m in site_metrics.values() for k, v in m.items() if isinstance(v, int | float)}
    return {
        name: sum(float(m[name]) for m in site_metrics.values() if name in m)
        / sum(1 for m in site_metrics.values() if name in m)
        for name in sorted(names)
    }
