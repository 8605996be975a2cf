"""Three tiers: relay sites between the server and the leaf sites that hold the devices.

In two tiers every aggregator site holds devices (simulated, or behind its gateway) and
reports to the server. In three tiers (``EdgeFedBuffRecipe(relays={relay: [leaf, ...]})``)
the server talks only to the **relay sites**; each relay's "devices" are those of its
**leaf sites**, which it reaches over site-to-site requests (:class:`ember.site_workflows.
PeerLink`, topic :data:`REPORT_TOPIC`). A relay is an ordinary aggregator site whose
:class:`~ember_edge.site.EdgeSiteLink` runs a :class:`RelayPool` instead of a device pool:

- the server's report task gives the relay its newly selected devices; the relay hands each
  leaf its own (and the model, when that leaf does not hold the version yet) in one request
  per leaf, all leaves at once;
- each leaf answers with its per-version sums exactly as it would answer the server (the
  same code, :meth:`EdgeSiteLink.answer`), and the relay adds them up per version, so the
  server receives one report per relay whatever the number of leaves: the sum of every
  device's ``w_i * d_i`` per version is the same as in two tiers;
- devices a leaf announces become the relay's; a leaf that fails to answer (it died, or
  missed ``edge.report_timeout``) has its running devices reported ``lost`` (the server
  frees their slots and forgets them) and announces all its devices again once it answers.

Leaves still connect to the server (they are Ember sites: they get the job and its end from
it), but the FedBuff controller gives them no task. Site-to-site requests travel through the
server in PocEnv and ProdEnv (relayed without being read) and in process in SimEnv; the Ray
backend does not carry them yet.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from ember.common import FLModel
from ember.config import get_setting
from ember.site_workflows import PeerLink
from ember_edge.simulator import SimulatorError, VersionSums, put_back

#: the request a relay sends each of its leaves every report cycle
REPORT_TOPIC = "edge.report"
EDGE_META = "edge"


def check_relays(relays: Any, sites: list[str] | None = None) -> dict[str, list[str]]:
    """``relays``: ``{relay site: [leaf sites]}``, each leaf under one relay, no relay a leaf."""
    if not isinstance(relays, Mapping) or not relays:
        raise ValueError(f"relays must be a dict {{relay site: [leaf sites]}}, got {relays!r}")
    out: dict[str, list[str]] = {}
    parent: dict[str, str] = {}
    for relay, leaves in relays.items():
        if not isinstance(relay, str) or not relay:
            raise ValueError(f"a relay must be a site name, got {relay!r}")
        if isinstance(leaves, str) or not isinstance(leaves, list | tuple) or not leaves:
            raise ValueError(f"relays[{relay!r}] must be a non-empty list of leaf sites")
        for leaf in leaves:
            if not isinstance(leaf, str) or not leaf:
                raise ValueError(f"relays[{relay!r}] holds {leaf!r}, not a site name")
            if leaf in parent:
                raise ValueError(f"{leaf} is a leaf of both {parent[leaf]} and {relay}")
            parent[leaf] = relay
        out[relay] = list(leaves)
    both = sorted(set(out) & set(parent))
    if both:
        raise ValueError(f"{both} are both relays and leaves: relays form one middle tier")
    if sites is not None:
        missing = sorted((set(out) | set(parent)) - set(sites))
        if missing:
            raise ValueError(f"relays names sites the job does not have: {missing}")
    return out


def leaf_parent(relays: Mapping[str, list[str]], site: str) -> str | None:
    """The relay ``site`` is a leaf of (None: it is not a leaf)."""
    for relay, leaves in relays.items():
        if site in leaves:
            return relay
    return None


class RelayPool:
    """A relay site's devices: those of its leaves, asked for their sums each cycle."""

    def __init__(
        self,
        site: str,
        peers: PeerLink,
        leaves: list[str],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.site = site
        self.peers = peers
        self.leaves = list(leaves)
        self.device_ids: list[str] = []
        """Every device a leaf announced, in order (a device announced again after its leaf
        failed appears again: the server adds it back)."""
        self.stats: dict[str, Any] = {"tasks": 0, "answered": 0, "dropped_out": 0}
        self._clock = clock
        self._leaf_of: dict[str, str] = {}
        self._todo: dict[str, list[str]] = {}
        self._running: dict[str, str] = {}  # device -> its leaf, handed out, not reported
        self._model: tuple[int, Mapping[str, np.ndarray]] | None = None
        self._held: dict[str, int] = {}  # leaf -> the model version it holds
        self._fresh = set(self.leaves)  # leaves that must announce all their devices
        self._leaf_stats: dict[str, dict[str, Any]] = {}
        self._carry: dict[int, VersionSums] = {}
        self.lost: list[str] = []
        """Devices of failed leaves since the last report (the report says so)."""
        self.failures: dict[str, str] = {}
        """leaf -> why its last request failed."""
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(len(self.leaves), thread_name_prefix=f"{site}-relay")

    # -- the device-source interface EdgeSiteLink uses --------------------------------------
    def start(
        self,
        devices: list[str],
        version: int,
        params: Mapping[str, np.ndarray],
        payload: Any = None,
    ) -> None:
        """Hand ``devices`` (of this relay's leaves) model ``version`` at the next cycle."""
        self._model = (version, params)
        for device in devices:
            leaf = self._leaf_of.get(device)
            if leaf is None:
                raise SimulatorError(f"relay {self.site} has no leaf with device {device!r}")
            self._todo.setdefault(leaf, []).append(device)
            self._running[device] = leaf

    @property
    def outstanding(self) -> int:
        return len(self._running)

    def collect(self, deadline: float, linger: bool = False) -> dict[int, VersionSums]:
        """Ask every leaf for its sums (it gathers until ``deadline``) and add them up."""
        interval = max(0.0, deadline - self._clock())
        timeout = interval + float(get_setting("edge.report_timeout"))
        asks = {leaf: self._request(leaf, interval) for leaf in self.leaves}
        self._todo = {}
        futures = {
            leaf: self._executor.submit(self.peers.request, leaf, REPORT_TOPIC, ask, timeout)
            for leaf, ask in asks.items()
        }
        sums, self._carry = self._carry, {}
        for leaf, future in futures.items():
            try:
                reply = future.result()
            except Exception as exc:  # a dead or late leaf: its running devices are lost
                self._fail(leaf, f"{type(exc).__name__}: {exc}")
                continue
            try:
                self._merge(leaf, reply, sums)
            except (KeyError, TypeError, ValueError) as exc:
                self._fail(leaf, f"a malformed report: {exc}")
        self.stats = _add_stats(self._leaf_stats.values())
        return sums

    def restore(self, sums: dict[int, VersionSums]) -> None:
        """Sums the relay could not deliver go with its next report."""
        put_back(self._carry, sums)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def take_lost(self) -> list[str]:
        """The devices lost since the last call (for the report's ``lost``)."""
        lost, self.lost = self.lost, []
        return lost

    # -- one leaf ---------------------------------------------------------------------------
    def _request(self, leaf: str, interval: float) -> FLModel:
        devices = self._todo.get(leaf, [])
        version = -1 if self._model is None else self._model[0]
        send_model = bool(devices) and self._model is not None and self._held.get(leaf) != version
        return FLModel(
            params=dict(self._model[1]) if send_model and self._model is not None else None,
            meta={
                EDGE_META: {
                    "version": version,
                    "devices": devices,
                    "report_interval": interval,
                    "announce_all": leaf in self._fresh,
                }
            },
        )

    def _merge(self, leaf: str, reply: Any, sums: dict[int, VersionSums]) -> None:
        from ember_edge.site import split_report

        if not isinstance(reply, FLModel):
            raise TypeError(f"{type(reply).__name__}, not an FLModel")
        edge = dict(reply.meta.get(EDGE_META) or {})
        by_version = split_report(dict(reply.params or {}))
        self._held[leaf] = int(edge.get("version", -1))
        self._fresh.discard(leaf)
        self.failures.pop(leaf, None)
        for device in edge.get("available") or []:
            device = str(device)
            if self._leaf_of.get(device) != leaf:
                self._leaf_of[device] = leaf
            self.device_ids.append(device)
        self._leaf_stats[leaf] = dict(edge.get("stats") or {})
        for name, info in (edge.get("updates") or {}).items():
            version = int(name)
            devices = [str(d) for d in info.get("devices", [])]
            for device in devices:
                self._running.pop(device, None)
            part = VersionSums(
                sums={k: np.asarray(v) for k, v in by_version.get(version, {}).items()},
                weight=float(info["weight"]),
                devices=devices,
            )
            held = sums.get(version)
            if held is None:
                sums[version] = part
            else:
                held.merge(part)

    def _fail(self, leaf: str, why: str) -> None:
        self.failures[leaf] = why
        self._fresh.add(leaf)
        self._held.pop(leaf, None)
        for device in [d for d, owner in self._running.items() if owner == leaf]:
            del self._running[device]
        # every device of the leaf: the server forgets them until the leaf announces again
        self.lost.extend(d for d, owner in self._leaf_of.items() if owner == leaf)


def _add_stats(parts: Any) -> dict[str, Any]:
    total: dict[str, Any] = {"tasks": 0, "answered": 0, "dropped_out": 0}
    for stats in parts:
        for key, value in stats.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                total[key] = total.get(key, 0) + value
    return total
