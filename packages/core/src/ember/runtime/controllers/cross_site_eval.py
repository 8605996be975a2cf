"""Cross-site evaluation: every site validates the global model and every site's model."""

from __future__ import annotations

import json
from typing import Any

from ember.common.messages import TaskName, TaskResult
from ember.common.model import FLModel, MetaKey, ParamsType
from ember.runtime.context import ServerContext

SERVER_MODEL = "SRV_global_model"


class CrossSiteEvalController:
    """``submit_model``, then ``validate`` tasks; results go to ``cross_val_results.json``."""

    def __init__(self, min_clients: int = 1, submit_models: bool = True) -> None:
        self.min_clients = min_clients
        self.submit_models = submit_models

    def run(self, ctx: ServerContext) -> None:
        models: dict[str, dict[str, Any]] = {}
        if "global_params" in ctx.state:
            models[SERVER_MODEL] = ctx.state["global_params"]
        sites = ctx.board.alive_sites()
        if self.submit_models:

            def keep(site: str, result: TaskResult) -> None:
                if result.data is not None and result.data.params:
                    models[site] = result.data.params

            ctx.board.broadcast(
                TaskName.SUBMIT_MODEL, FLModel(), sites, self.min_clients, ctx.task_timeout, keep
            )
        results: dict[str, dict[str, Any]] = {site: {} for site in sites}
        for owner, params in models.items():
            task = FLModel(
                params_type=ParamsType.FULL, params=params, meta={MetaKey.MODEL_OWNER: owner}
            )

            def record(site: str, result: TaskResult, owner: str = owner) -> None:
                results[site][owner] = dict((result.data.metrics if result.data else None) or {})

            ctx.board.broadcast(
                TaskName.VALIDATE,
                task,
                ctx.board.alive_sites(),
                self.min_clients,
                ctx.task_timeout,
                record,
            )
        out = ctx.server_dir / "cross_site_eval" / "cross_val_results.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2, sort_keys=True, default=float))
        ctx.state["cross_site_results"] = results
