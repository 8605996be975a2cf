"""An aggregator site: an ordinary Ember site whose site workflow runs the devices.

:class:`EdgeSiteLink` (the client app's ``site_workflow``) wraps the site's link to the
server. The server's FedBuff controller gives each aggregator site an ``edge_report`` task
per report cycle: the current model version (its params when the site does not hold it
yet) and the devices of this site newly selected for it. The link starts those devices on
its :class:`~ember_edge.simulator.DevicePool`, waits until they have all answered or the
cycle's ``report_interval`` has passed, and answers with the **per-version running sums**
of its devices' updates (``sum w_i * d_i`` per key, ``sum w_i``, the devices), plus the
ids of its devices the server has not been told of yet (all of a simulated pool's in the
first report; a gateway's devices as they register). The site's script never sees these
tasks: it only waits for the job's end (:data:`SITE_SCRIPT_SOURCE`).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from ember.common import FLModel, TaskResult
from ember.plugins import load_target
from ember.recipes import APP_DIR
from ember.site_workflows import PeerLink, ServerLink
from ember.streaming import resolve_deferred
from ember_edge.gateway import DeviceGateway
from ember_edge.relay import REPORT_TOPIC, RelayPool, leaf_parent
from ember_edge.simulator import DevicePool, DeviceSource, VersionSums

EDGE_REPORT = "edge_report"
EDGE_META = "edge"
SITE_SCRIPT = "edge_site.py"
#: the aggregator sites' script: the same bytes in every job
SITE_SCRIPT_SOURCE = b'''"""An ember-edge aggregator site (written by EdgeFedBuffRecipe).

Its site workflow, ember_edge.site.EdgeSiteLink, runs the devices; the script waits for
the job's end."""

from ember_edge.site import run_site

run_site()
'''


def run_site() -> None:
    """The aggregator site's script: every FedBuff task is handled by its site workflow."""
    import ember.client as flare

    flare.init()
    while flare.is_running():
        task = flare.receive()
        if task is not None:
            raise RuntimeError(
                f"{flare.get_site_name()}: an ember-edge aggregator site got a task of its own "
                f"({task.meta!r}); its client app must use the "
                "ember_edge.site:EdgeSiteLink site workflow"
            )


def version_key(version: int, key: str) -> str:
    """The report's name of ``key``'s sum for model ``version``."""
    return f"v{version}/{key}"


def split_report(params: dict[str, Any]) -> dict[int, dict[str, np.ndarray]]:
    """A report's params back by version: ``{version: {key: sum}}``."""
    out: dict[int, dict[str, np.ndarray]] = {}
    for name, value in params.items():
        head, _, key = name.partition("/")
        if not head.startswith("v") or not key or not head[1:].isdigit():
            raise ValueError(f"a report holds {name!r}, not v<version>/<key>")
        out.setdefault(int(head[1:]), {})[key] = np.asarray(value)
    return out


class EdgeSiteLink:
    """A :class:`ServerLink` that runs this site's devices for FedBuff: simulated ones
    in-process (:class:`~ember_edge.simulator.DevicePool`, ``processor=...``) or real ones
    behind an HTTP device gateway (:class:`~ember_edge.gateway.DeviceGateway`,
    ``gateway={...}``, GatewayConfig's fields)."""

    #: the reports are sums over many devices: a client filter written for one model would
    #: not see what it expects, so a site with client filters refuses the job
    sends_around_filters = True

    def __init__(
        self,
        inner: ServerLink,
        peers: PeerLink,
        site: str,
        site_dir: Path,
        job_dir: Path,
        processor: str | None = None,
        processor_args: dict[str, Any] | None = None,
        num_devices: int = 100,
        speed: dict[str, Any] | None = None,
        dropout: float = 0.0,
        seed: int = 0,
        fetcher: Any = None,
        params_format: str = "numpy",
        encoder: dict[str, Any] | None = None,
        gateway: dict[str, Any] | None = None,
        relays: dict[str, list[str]] | None = None,
    ) -> None:
        self.inner = inner
        # the recipe bundles a processor's (or authenticator's) module that is not installed
        # into the job's app/ folder: importable before the site loads it
        app_dir = str(Path(job_dir) / APP_DIR)
        if app_dir not in sys.path:
            sys.path.insert(0, app_dir)
        self.site = site
        # encoder: {"target": "module:Class", "args": {...}}, an object whose
        # encode(version, params) -> bytes makes each model version's DeviceTask.payload
        # (ETFedBuffRecipe: the training .pte), once per version; its `stats` go in the reports
        self.encoder: Any = (
            None if encoder is None else load_target(encoder["target"])(**encoder.get("args", {}))
        )
        self._payload: tuple[int, bytes] | None = None
        self.pool: DeviceSource
        # three tiers (ember_edge.relay): a relay's devices are its leaves'; a leaf answers
        # its relay's requests instead of the server's tasks
        self.relay = None if not relays else leaf_parent(relays, site)
        if relays and site in relays:
            self.pool = RelayPool(site, peers, relays[site])
        elif gateway is not None:
            # real devices: an HTTP(S) device gateway (ember_edge.gateway) in this process;
            # gateway: GatewayConfig's fields (recipes.GatewayConfig)
            options = dict(gateway)
            port = options.pop("port", 0)
            if isinstance(port, dict):  # one port per site
                port = port.get(site, 0)
            gateway_pool = DeviceGateway(
                site,
                site_dir,
                job_id=Path(job_dir).resolve().parent.name,
                port=int(port),
                **options,
            )
            gateway_pool.begin()
            self.pool = gateway_pool
        else:
            if processor is None:
                raise RuntimeError(
                    f"{site}: EdgeSiteLink needs a task processor (simulated devices) or a "
                    "gateway (real devices)"
                )
            self.pool = DevicePool(
                site,
                load_target(processor),
                num_devices,
                processor_args,
                speed=speed,
                dropout=dropout,
                seed=seed,
            )
        # how many of pool.device_ids the server has been told of (devices register with a
        # gateway at any time: each report announces the ones that are new)
        self._announced = 0
        self._model: tuple[int, dict[str, np.ndarray]] | None = None
        if self.relay is not None:
            peers.register(REPORT_TOPIC, self._on_relay_request)

    # -- the ServerLink the script's session uses ------------------------------------------------
    def get_task(self, wait: float) -> Any:
        deadline = time.monotonic() + wait
        while True:
            got = self.inner.get_task(max(0.0, deadline - time.monotonic()))
            if got == "END":
                self.pool.shutdown()
                return got
            if getattr(got, "name", None) != EDGE_REPORT:
                return got
            self._report(got)
            if time.monotonic() >= deadline:
                return None

    def _report(self, task: Any) -> None:
        model, known, sums = self.answer(task.data or FLModel())
        result = TaskResult(task_id=task.task_id, site=self.site, data=model)
        if self.inner.submit_result(result):
            self._announced = max(self._announced, known)
        else:  # late: what it carried goes with the next report
            self.pool.restore(sums)

    def _on_relay_request(self, sender: str, request: Any) -> FLModel:
        """A leaf's answer to its relay: the report it would give the server."""
        if sender != self.relay:
            raise PermissionError(f"{self.site} reports to its relay {self.relay}, not {sender}")
        if not isinstance(request, FLModel):
            raise TypeError(f"{sender} sent {type(request).__name__}, not an FLModel")
        if dict(request.meta.get(EDGE_META) or {}).get("announce_all"):
            self._announced = 0  # the relay lost track of this leaf: every device again
        model, known, _ = self.answer(request)
        self._announced = max(self._announced, known)
        return model

    def answer(self, data: FLModel) -> tuple[FLModel, int, dict[int, VersionSums]]:
        """Run one report cycle (the task's model version, devices and interval): the
        report, how many of ``pool.device_ids`` it announces, and the sums it carries."""
        edge = dict(data.meta.get(EDGE_META) or {})
        version = int(edge.get("version", 0))
        if data.params:
            params = resolve_deferred(data.params)
            self._model = (version, {k: np.asarray(v) for k, v in params.items()})
        devices = list(edge.get("devices") or [])
        if devices:
            if self._model is None or self._model[0] != version:
                held = None if self._model is None else self._model[0]
                raise RuntimeError(
                    f"{self.site} was given devices for model version {version} but holds "
                    f"version {held}"
                )
            self.pool.start(devices, version, self._model[1], self._encoded(version))
        interval = float(edge.get("report_interval", 1.0))
        deadline = time.monotonic() + interval
        known = len(self.pool.device_ids)
        fresh = self.pool.device_ids[self._announced : known]
        if not fresh and not devices and self.pool.outstanding == 0:
            # nothing to run: hold the task for the interval rather than answer at once
            # (an idle site would otherwise make the server spin report cycles)
            sums = self.pool.collect(deadline, linger=True)
        else:
            sums = self.pool.collect(deadline)
        meta: dict[str, Any] = {
            "version": -1 if self._model is None else self._model[0],
            "updates": {
                str(v): {"weight": s.weight, "devices": list(s.devices)} for v, s in sums.items()
            },
            "stats": {**self.pool.stats, **dict(getattr(self.encoder, "stats", {}))},
        }
        if fresh:
            meta["available"] = list(fresh)
        if isinstance(self.pool, RelayPool):
            lost = self.pool.take_lost()
            if lost:
                meta["lost"] = lost
            if self.pool.failures:
                meta["leaf_failures"] = dict(self.pool.failures)
        params = {version_key(v, k): a for v, s in sums.items() for k, a in s.sums.items()}
        return FLModel(params=params, meta={EDGE_META: meta}), known, sums

    def _encoded(self, version: int) -> bytes | None:
        """The held version's payload for its devices, encoded once per version."""
        if self.encoder is None or self._model is None:
            return None
        if self._payload is None or self._payload[0] != version:
            self._payload = (version, bytes(self.encoder.encode(version, self._model[1])))
        return self._payload[1]

    def submit_result(self, result: TaskResult) -> bool:
        return self.inner.submit_result(result)

    def log_metrics(self, records: list[Any]) -> None:
        self.inner.log_metrics(records)

    def report_failure(self, reason: str) -> None:
        self.pool.shutdown()
        self.inner.report_failure(reason)

    def report_done(self) -> None:
        self.pool.shutdown()
        self.inner.report_done()
