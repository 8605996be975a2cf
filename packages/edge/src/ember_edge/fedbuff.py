"""FedBuff, the server's algorithm: framework-free, numpy only, no Ember import.

FedBuff (Nguyen et al., "Federated Learning with Buffered Asynchronous Aggregation", 2022)
as NVFlare's edge assessor runs it, with NVFlare's knobs:

- **Model versions.** Version 0 is the initial model; it is handed out once
  ``initial_min_client_num`` devices are known. Every device update says which version it
  was trained on.
- **Accepting an update** trained on version ``v`` at current version ``c``: its staleness
  is ``c - v``. An update with staleness ``>= max_model_history`` is dropped and counted
  (NVFlare's ``BuffModelManager`` rule: the latest ``max_model_history`` versions are kept;
  None keeps every one). With ``staleness_weight`` the update counts
  ``1 / (1 + sqrt(staleness))`` times, as in the paper; without it, once.
- **A new version** after ``num_updates_for_model`` accepted device updates:
  ``new = old + global_lr * sum_i(s_i * w_i * d_i) / sum_i(w_i)``, where ``d_i`` is the
  update (the device's model minus the one it started from), ``w_i`` its weight (its number
  of samples, say) and ``s_i`` its staleness factor. Without stale updates that is the
  weighted mean of the updates, so in sync mode the new model is exactly FedAvg's weighted
  average of the devices' models; staleness lowers an update's share without raising the
  others' (the paper's choice: a buffer of stale updates moves the model less).
- **The device selection**: ``device_selection_size`` devices hold a task at once. A device
  leaves the selection when it reports, when its site goes away, or when it has not reported
  within ``device_wait_timeout`` seconds (counted: a vanished device must not keep its slot
  forever). Once ``min_hole_to_fill`` slots are empty they are refilled with devices drawn
  at random (seeded) among the known ones: with ``device_reuse`` any device not already
  used for the current version, without it only devices never used. ``device_sampling``
  says how: ``"random"`` draws among all usable devices (a site with more devices gets more
  slots), ``"balanced"`` gives each free slot to the aggregator site with the fewest devices
  in the selection (ties broken at random), then a random usable device of that site, so
  every site trains about the same number of devices whatever its fleet size. Sync mode:
  ``device_selection_size == num_updates_for_model == min_hole_to_fill``, no staleness
  weight; ``min_hole_to_fill = 1`` is fully asynchronous.

Updates arrive as per-version sums (an aggregator site adds its devices' updates per model
version before it reports): :meth:`FedBuff.accept` takes ``(version, sum of w_i * d_i, sum of
w_i, count)``; a single device's update is the same with ``count = 1``.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Params = dict[str, np.ndarray]
#: how ``fill`` draws devices (see the module's docstring)
SAMPLING = ("random", "balanced")


class FedBuffError(ValueError):
    """A FedBuff knob out of range, or an update that does not fit the model."""


def staleness_factor(staleness: int) -> float:
    """FedBuff's weight of an update ``staleness`` versions old: ``1 / (1 + sqrt(s))``."""
    return 1.0 / (1.0 + math.sqrt(staleness))


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise FedBuffError(f"{name} must be an integer >= 1, got {value!r}")
    return value


@dataclass(frozen=True)
class FedBuffConfig:
    """NVFlare's FedBuff knobs (its ``ModelManagerConfig`` and ``DeviceManagerConfig``)."""

    num_updates_for_model: int
    device_selection_size: int
    max_model_version: int
    max_model_history: int | None = None
    staleness_weight: bool = False
    global_lr: float = 1.0
    min_hole_to_fill: int = 1
    device_reuse: bool = True
    initial_min_client_num: int | None = None
    """Devices that must be known before version 0 is handed out (None: the selection size)."""
    device_wait_timeout: float | None = None
    """Seconds a selected device may take to report before its slot is freed (None: never)."""
    device_sampling: str = "random"
    """``"random"`` or ``"balanced"`` across aggregator sites (see the module's docstring)."""
    seed: int = 0

    def __post_init__(self) -> None:
        _positive_int("num_updates_for_model", self.num_updates_for_model)
        _positive_int("device_selection_size", self.device_selection_size)
        _positive_int("max_model_version", self.max_model_version)
        _positive_int("min_hole_to_fill", self.min_hole_to_fill)
        if self.max_model_history is not None:
            _positive_int("max_model_history", self.max_model_history)
        if self.initial_min_client_num is not None:
            _positive_int("initial_min_client_num", self.initial_min_client_num)
        if self.min_hole_to_fill > self.device_selection_size:
            raise FedBuffError(
                f"min_hole_to_fill={self.min_hole_to_fill} exceeds device_selection_size="
                f"{self.device_selection_size}: the selection would never be refilled"
            )
        lr = self.global_lr
        if isinstance(lr, bool) or not isinstance(lr, int | float) or not math.isfinite(lr):
            raise FedBuffError(f"global_lr must be a finite number, got {lr!r}")
        timeout = self.device_wait_timeout
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0
        ):
            raise FedBuffError(f"device_wait_timeout must be seconds > 0 or None, got {timeout!r}")
        if self.device_sampling not in SAMPLING:
            raise FedBuffError(
                f"device_sampling must be one of {list(SAMPLING)}, got {self.device_sampling!r}"
            )
        for name in ("staleness_weight", "device_reuse"):
            if not isinstance(getattr(self, name), bool):
                raise FedBuffError(f"{name} must be True or False, got {getattr(self, name)!r}")

    @property
    def min_devices(self) -> int:
        return self.initial_min_client_num or self.device_selection_size


@dataclass
class FedBuffStats:
    """What happened to the updates and the devices (the job's metrics)."""

    accepted_updates: int = 0
    stale_updates: int = 0
    """Accepted updates trained on an older version than the current one."""
    dropped_updates: int = 0
    """Updates older than ``max_model_history``: not applied."""
    timed_out_devices: int = 0
    """Selected devices that did not report within ``device_wait_timeout``."""
    assigned_devices: int = 0
    versions: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Acceptance:
    """The fate of one per-version sum of updates."""

    version: int
    count: int
    staleness: int
    factor: float
    """The staleness weight applied (0.0: dropped)."""

    @property
    def dropped(self) -> bool:
        return self.factor == 0.0


@dataclass
class _Buffer:
    sums: Params = field(default_factory=dict)
    weight: float = 0.0
    count: int = 0


class FedBuff:
    """The global model, its versions, the update buffer and the device selection."""

    def __init__(self, config: FedBuffConfig, params: Mapping[str, Any]) -> None:
        self.config = config
        self.params: Params = {k: np.asarray(v) for k, v in params.items()}
        self.version = 0
        self.started = False
        """Version 0 has been handed out (enough devices were known)."""
        self.stats = FedBuffStats()
        self._buffer = _Buffer()
        self._rng = random.Random(config.seed)
        self.available: dict[str, str] = {}
        """device id -> the site (aggregator) it is reached through, in arrival order."""
        self.selection: dict[str, tuple[int, float]] = {}
        """selected device -> (the version it was given, when)."""
        self._used: dict[str, int] = {}  # device -> the last version it was selected for

    # -- updates and versions ----------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self.version >= self.config.max_model_version

    @property
    def buffered(self) -> int:
        """Updates accepted since the last new version."""
        return self._buffer.count

    def accept(
        self, version: int, sums: Mapping[str, Any], weight: float, count: int = 1
    ) -> Acceptance:
        """Buffer ``count`` updates trained on ``version``: ``sums`` is the sum of their
        weighted updates (``w_i * d_i`` per key), ``weight`` the sum of their ``w_i``."""
        if count < 1 or not weight > 0:
            raise FedBuffError(f"an update needs count >= 1 and weight > 0, got {count}, {weight}")
        if not 0 <= version <= self.version:
            raise FedBuffError(
                f"an update trained on version {version}, but the current version is {self.version}"
            )
        staleness = self.version - version
        history = self.config.max_model_history
        if history is not None and staleness >= history:
            self.stats.dropped_updates += count
            return Acceptance(version, count, staleness, 0.0)
        factor = staleness_factor(staleness) if self.config.staleness_weight else 1.0
        buffer = self._buffer
        for key, value in sums.items():
            if key not in self.params:
                raise FedBuffError(f"an update has key {key!r}, which the model does not have")
            array = np.asarray(value, dtype=np.float64)
            if array.shape != self.params[key].shape:
                raise FedBuffError(
                    f"an update of {key!r} has shape {array.shape}, the model "
                    f"{self.params[key].shape}"
                )
            held = buffer.sums.get(key)
            scaled = array * factor if factor != 1.0 else array
            buffer.sums[key] = scaled.copy() if held is None else held + scaled
        buffer.weight += float(weight)
        buffer.count += count
        self.stats.accepted_updates += count
        if staleness:
            self.stats.stale_updates += count
        return Acceptance(version, count, staleness, factor)

    def maybe_new_version(self) -> bool:
        """Make the next version once ``num_updates_for_model`` updates are buffered."""
        if self.done or self._buffer.count < self.config.num_updates_for_model:
            return False
        buffer, self._buffer = self._buffer, _Buffer()
        scale = self.config.global_lr / buffer.weight
        new: Params = {}
        for key, old in self.params.items():
            summed = buffer.sums.get(key)
            if summed is None:
                new[key] = old
                continue
            value = old.astype(np.float64) + summed * scale
            new[key] = value.astype(old.dtype) if old.dtype.kind == "f" else value
        self.params = new
        self.version += 1
        self.stats.versions = self.version
        return True

    # -- devices ---------------------------------------------------------------------------------
    def add_devices(self, site: str, devices: Iterable[str]) -> None:
        """Devices reachable through ``site``; version 0 starts once enough are known."""
        for device in devices:
            self.available.setdefault(device, site)
        if not self.started and len(self.available) >= self.config.min_devices:
            self.started = True

    def remove_site(self, site: str) -> list[str]:
        """``site`` went away: its devices leave the pool and the selection."""
        gone = [d for d, s in self.available.items() if s == site]
        for device in gone:
            del self.available[device]
            self.selection.pop(device, None)
        return gone

    def remove_devices(self, devices: Iterable[str]) -> None:
        """These devices are gone (their leaf site failed): out of the pool and the selection
        until they are announced again."""
        for device in devices:
            self.available.pop(device, None)
            self.selection.pop(device, None)

    def reported(self, devices: Iterable[str]) -> None:
        """These devices answered: their slots are free."""
        for device in devices:
            self.selection.pop(device, None)

    def expire(self, now: float) -> list[str]:
        """Free the slots of devices selected ``device_wait_timeout`` seconds before ``now``
        or earlier (counted in ``timed_out_devices``)."""
        timeout = self.config.device_wait_timeout
        if timeout is None:
            return []
        late = [d for d, (_, since) in self.selection.items() if now - since >= timeout]
        for device in late:
            del self.selection[device]
        self.stats.timed_out_devices += len(late)
        return late

    @property
    def holes(self) -> int:
        return self.config.device_selection_size - len(self.selection)

    def fill(self, now: float) -> dict[str, list[str]]:
        """Refill the selection when ``min_hole_to_fill`` slots are empty: the devices newly
        given the current version, by site (nothing before version 0 is handed out)."""
        if not self.started or self.done or self.holes < self.config.min_hole_to_fill:
            return {}
        if self.config.device_reuse:
            usable = [
                d
                for d in self.available
                if d not in self.selection and self._used.get(d) != self.version
            ]
        else:
            usable = [d for d in self.available if d not in self._used]
        wanted = min(self.holes, len(usable))
        if self.config.device_sampling == "balanced":
            chosen = self._balanced(usable, wanted)
        else:
            chosen = self._rng.sample(usable, wanted)
        out: dict[str, list[str]] = {}
        for device in chosen:
            self.selection[device] = (self.version, now)
            self._used[device] = self.version
            out.setdefault(self.available[device], []).append(device)
        self.stats.assigned_devices += len(chosen)
        return out

    def _balanced(self, usable: list[str], wanted: int) -> list[str]:
        """``wanted`` of ``usable``: each to the site with the fewest selected devices."""
        by_site: dict[str, list[str]] = {}
        for device in usable:
            by_site.setdefault(self.available[device], []).append(device)
        held = Counter(self.available[d] for d in self.selection)
        # (devices in the selection, a random tie-break, site): the smallest gets the slot
        heap = [(held[site], self._rng.random(), site) for site in by_site]
        heapq.heapify(heap)
        chosen: list[str] = []
        while len(chosen) < wanted and heap:
            count, _, site = heapq.heappop(heap)
            devices = by_site[site]
            index = self._rng.randrange(len(devices))
            devices[index], devices[-1] = devices[-1], devices[index]
            chosen.append(devices.pop())
            if devices:
                heapq.heappush(heap, (count + 1, self._rng.random(), site))
        return chosen
