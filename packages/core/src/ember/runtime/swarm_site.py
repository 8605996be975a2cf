"""Swarm learning, site side: the runtime between a site's script and the server.

:class:`SwarmSiteLink` wraps the site's :class:`~ember.client.link.ServerLink`. The script
uses the plain Client API; the link

- fills each swarm ``train`` task with the current global model: the initial one (loaded by
  the job's persistor at the site) or the one pulled from the peer that aggregated it;
- sends the script's result to the round's aggregator peer, and the server only its metrics;
- when it is the aggregator, handles ``swarm_aggregate``: averages the contributions the
  server lists (weighted by ``NUM_STEPS_CURRENT_ROUND``, in the listed order), keeps the new
  global model, saves it under ``<site workspace>/models/`` (with the round it belongs to, so
  a restarted process of the site still serves it when the job resumes) and answers its
  peers' requests for it. The script never sees that task.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from ember.client.formats import NUMPY, convert_params
from ember.client.link import ServerLink
from ember.common.messages import MetricRecord, ResultStatus, Task, TaskName, TaskResult
from ember.common.model import FLModel, MetaKey, ParamsType
from ember.config import get_setting
from ember.runtime.aggregation import WeightedAverage, apply_update
from ember.runtime.controller import build_persistor
from ember.runtime.controllers.swarm import SWARM_AGGREGATE, SWARM_META
from ember.runtime.errors import JobError
from ember.runtime.peers import PeerLink
from ember.streaming.lazy import resolve_relayed

CONTRIBUTE = "swarm.contribute"
GET_GLOBAL = "swarm.get_global"
#: beside the held model in ``<site workspace>/models/``: the round it is the global model of
HELD_ROUND_FILE = "global_round.json"


class SwarmSiteLink:
    """A :class:`ServerLink` that runs the site's part of swarm learning."""

    #: filters cannot apply: the sites send their models to each other (PeerLink), not
    #: through the server link; a site with client filters (the job's or its privacy
    #: policy's) refuses the job instead of letting data pass unfiltered
    sends_around_filters = True

    def __init__(
        self,
        inner: ServerLink,
        peers: PeerLink,
        site: str,
        site_dir: Path,
        job_dir: Path,
        persistor: dict[str, Any],
        exclude_vars: str | None = None,
        fetcher: Any = None,
        params_format: str = NUMPY,
    ) -> None:
        self.inner = inner
        self.peers = peers
        self.site = site
        self.models_dir = Path(site_dir) / "models"
        self.job_dir = Path(job_dir)
        self.persistor = build_persistor(persistor)
        self.exclude_vars = exclude_vars
        self.fetcher = fetcher
        self.params_format = params_format
        self._lock = threading.Lock()
        self._global: tuple[int, dict[str, Any]] | None = None  # (round, params)
        self._contributions: dict[int, dict[str, FLModel]] = {}
        self._tasks: dict[str, dict[str, Any]] = {}  # task id -> its swarm meta
        peers.register(CONTRIBUTE, self._on_contribution)
        peers.register(GET_GLOBAL, self._on_get_global)

    # -- the ServerLink the script's session uses ------------------------------------------
    def get_task(self, wait: float) -> Task | str | None:
        deadline = time.monotonic() + wait
        while True:
            got = self.inner.get_task(max(0.0, deadline - time.monotonic()))
            if not isinstance(got, Task):
                return got
            swarm = (got.data.meta.get(SWARM_META) if got.data is not None else None) or None
            if got.name == SWARM_AGGREGATE and isinstance(swarm, dict):
                try:
                    self._aggregate(got, swarm)
                except Exception as exc:  # the server hears of it; the script goes on
                    self._refuse(
                        got, f"{self.site} could not aggregate: {type(exc).__name__}: {exc}"
                    )
            elif got.name == TaskName.TRAIN and isinstance(swarm, dict):
                assert got.data is not None
                got.data.params = self._global_params(swarm, got.timeout)
                got.data.params_type = ParamsType.FULL
                self._tasks[got.task_id] = {**swarm, "timeout": got.timeout}
                return got
            else:
                return got
            if time.monotonic() >= deadline:
                return None

    def submit_result(self, result: TaskResult) -> bool:
        swarm = self._tasks.pop(result.task_id, None)
        if swarm is None or result.status != ResultStatus.OK:
            return self.inner.submit_result(result)
        model = result.data or FLModel()
        if not model.params:
            raise JobError(
                f"{self.site}: a swarm training script must send FLModel(params=...) "
                f"(round {swarm['round']})"
            )
        try:
            reply = self.peers.request(
                swarm["aggregator"],
                CONTRIBUTE,
                {"round": swarm["round"], "model": model},
                float(swarm["timeout"] or get_setting("runtime.task_timeout")),
            )
        except Exception as exc:  # the server hears of it (and may pick another aggregator)
            reply = f"{type(exc).__name__}: {exc}"
        if reply is not True:
            return self.inner.submit_result(
                TaskResult(
                    task_id=result.task_id,
                    site=result.site,
                    status=ResultStatus.EXECUTION_EXCEPTION,
                    message=f"{self.site} could not send its result to aggregator "
                    f"{swarm['aggregator']}: {reply}",
                )
            )
        summary = FLModel(
            metrics=model.metrics,
            current_round=model.current_round,
            meta={
                MetaKey.NUM_STEPS_CURRENT_ROUND: model.meta.get(
                    MetaKey.NUM_STEPS_CURRENT_ROUND, 1.0
                )
            },
        )
        return self.inner.submit_result(
            TaskResult(task_id=result.task_id, site=result.site, data=summary)
        )

    def log_metrics(self, records: list[MetricRecord]) -> None:
        self.inner.log_metrics(records)

    def report_failure(self, reason: str) -> None:
        self.inner.report_failure(reason)

    def report_done(self) -> None:
        self.inner.report_done()

    # -- the global model -------------------------------------------------------------------
    def _held(self, wanted: int) -> dict[str, Any] | None:
        """The global model of round ``wanted`` if this site holds it: in memory, or saved
        in its workspace by an earlier process of this site (a resumed job). Call under
        ``self._lock``."""
        if self._global is not None and self._global[0] == wanted:
            return self._global[1]
        try:
            saved = json.loads((self.models_dir / HELD_ROUND_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(saved, dict) or saved.get("round") != wanted or wanted < 0:
            return None
        params = self.persistor.load(self.models_dir / f"global_model{self.persistor.extension}")
        self._global = (wanted, params)
        return params

    def _global_params(self, swarm: dict[str, Any], timeout: float) -> dict[str, Any]:
        wanted = int(swarm["global_round"])
        with self._lock:
            held = self._held(wanted)
            if held is not None:
                # its own copy: peers pull the held one while the script trains
                return {k: np.array(v, copy=True) for k, v in held.items()}
        if wanted < 0:
            params = self.persistor.initial_params(self.job_dir)
        else:
            holder = swarm["global_from"]
            params = self.peers.request(
                holder,
                GET_GLOBAL,
                {"round": wanted},
                timeout or float(get_setting("runtime.task_timeout")),
            )
            if not isinstance(params, dict):
                raise JobError(f"{self.site}: {holder} sent no global model for round {wanted}")
            params = resolve_relayed(params, self.fetcher) if self.fetcher else params
        with self._lock:
            self._global = (wanted, params)
        return dict(params)

    def _on_get_global(self, sender: str, payload: Any) -> Any:
        wanted = payload.get("round") if isinstance(payload, dict) else None
        with self._lock:
            params = self._held(wanted) if isinstance(wanted, int) else None
            if params is None:
                held = None if self._global is None else self._global[0]
                raise JobError(
                    f"{self.site} holds the global model of round {held}, not {wanted!r}"
                )
            return params

    # -- aggregation --------------------------------------------------------------------------
    def _on_contribution(self, sender: str, payload: Any) -> bool:
        if not isinstance(payload, dict) or not isinstance(payload.get("model"), FLModel):
            raise JobError(f"{self.site}: malformed swarm contribution from {sender}")
        model = payload["model"]
        if self.fetcher is not None:
            model.params = resolve_relayed(model.params, self.fetcher)
        # peers may send tensors (the script's format): aggregated as numpy, no copy
        model.params = convert_params(model.params, self.params_format, NUMPY)
        with self._lock:
            self._contributions.setdefault(int(payload["round"]), {})[sender] = model
        return True

    def _aggregate(self, task: Task, swarm: dict[str, Any]) -> None:
        rnd = int(swarm["round"])
        with self._lock:
            received = self._contributions.pop(rnd, {})
            for old in [r for r in self._contributions if r < rnd]:
                del self._contributions[old]  # from sites the server left out of a round
            base = self._global[1] if self._global is not None else None
        contributors = [s for s in swarm["contributors"] if s in received]
        missing = sorted(set(swarm["contributors"]) - set(received))
        if missing or not contributors:
            self._refuse(
                task,
                f"{self.site} has no contribution from {missing or 'any site'} for round {rnd}",
            )
            return
        average = WeightedAverage(self.exclude_vars)  # in the server's order: deterministic
        for site in contributors:
            model = received.pop(site)
            weight = float(model.meta.get(MetaKey.NUM_STEPS_CURRENT_ROUND, 1.0))
            average.add(site, model.params, model.params_type, weight, model.metrics)
        if average.params_type == ParamsType.DIFF and base is None:
            raise JobError(f"{self.site}: DIFF contributions but no global model to add them to")
        params = apply_update(base or {}, average.params(), average.params_type)
        with self._lock:
            self._global = (rnd, params)
        self._save_held(rnd, params)
        self.inner.submit_result(
            TaskResult(
                task_id=task.task_id,
                site=self.site,
                data=FLModel(metrics=average.metrics(), current_round=rnd),
            )
        )

    def _save_held(self, rnd: int, params: dict[str, Any]) -> None:
        """Save the model this site now holds, then the round it belongs to (each written
        aside and renamed: a crash leaves the old pair or the new one), so a restarted
        process of this site can still serve it when the job resumes."""
        ext = self.persistor.extension
        self.models_dir.mkdir(parents=True, exist_ok=True)
        part = self.models_dir / f"global_model.part{ext}"
        self.persistor.save(params, part)
        os.replace(part, self.models_dir / f"global_model{ext}")
        marker = self.models_dir / (HELD_ROUND_FILE + ".part")
        marker.write_text(json.dumps({"round": rnd}), encoding="utf-8")
        os.replace(marker, self.models_dir / HELD_ROUND_FILE)

    def _refuse(self, task: Task, message: str) -> None:
        self.inner.submit_result(
            TaskResult(
                task_id=task.task_id,
                site=self.site,
                status=ResultStatus.EXECUTION_EXCEPTION,
                message=message,
            )
        )
