"""Simulated devices, in-process: the task-processor interface and the device pool.

A device is simulated by a **task processor** (:class:`DeviceTaskProcessor`): one instance
per device, made by the class the recipe names (``"module:Class"``, with its keyword
arguments), ``setup(device_id)`` once, ``process_task(task) -> DeviceResult`` for each model
version it is given, ``shutdown()`` when the job ends. :class:`DevicePool` holds the devices
of one aggregator site (thousands of them: a processor is made only when its device is first
selected), runs their tasks and decides, from seeded distributions, how long each device
takes to answer (its speed) and whether it vanishes mid-task (drop-out: it never answers).

Simulation-only shortcuts: a device's answer is computed when its task is given and held
back until its simulated finish time; the pool announces all its device ids in one report.
"""

from __future__ import annotations

import heapq
import math
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

DIFF = "DIFF"
FULL = "FULL"


@dataclass
class DeviceTask:
    """What a device is given: a model version to train on (``params`` are read-only: they
    are shared by every device of the site) and, when the job encodes versions for devices
    (``ETFedBuffRecipe``: a training-capable ExecuTorch ``.pte``), ``payload``: that
    version's encoding, made once per version at the site."""

    device_id: str
    model_version: int
    params: Mapping[str, np.ndarray]
    payload: bytes | None = None


@dataclass
class DeviceResult:
    """A device's answer: its model (``FULL``) or its update (``DIFF``) and its weight (for
    instance its number of samples)."""

    params: dict[str, np.ndarray]
    params_type: str = DIFF
    weight: float = 1.0
    metrics: dict[str, float] = field(default_factory=dict)


class DeviceTaskProcessor(Protocol):
    """One simulated device."""

    def setup(self, device_id: str) -> None: ...

    def process_task(self, task: DeviceTask) -> DeviceResult: ...

    def shutdown(self) -> None: ...


class SimulatorError(ValueError):
    """A simulation setting out of range, or a processor's answer that does not fit."""


def check_speed(speed: Any) -> dict[str, Any]:
    """``speed``: how long a device takes per task, in seconds: ``{"distribution":
    "constant", "value": s}``, ``{"distribution": "uniform", "low": a, "high": b}`` or
    ``{"distribution": "lognormal", "mean": m, "sigma": s}`` (of the log)."""
    spec = dict(speed or {"distribution": "constant", "value": 0.0})
    kind = spec.get("distribution")
    needed = {"constant": ("value",), "uniform": ("low", "high"), "lognormal": ("mean", "sigma")}
    if kind not in needed:
        raise SimulatorError(
            f"device speed distribution must be one of {sorted(needed)}, got {kind!r}"
        )
    for key in needed[str(kind)]:
        value = spec.get(key)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not (math.isfinite(value) and (value >= 0 or key == "mean"))
        ):
            raise SimulatorError(f"device speed {kind} needs a number {key} >= 0, got {value!r}")
    if kind == "uniform" and spec["low"] > spec["high"]:
        raise SimulatorError(f"device speed uniform needs low <= high, got {spec}")
    return spec


def draw_delay(speed: Mapping[str, Any], rng: np.random.Generator) -> float:
    """One device's seconds for one task, drawn from a :func:`check_speed` distribution."""
    kind = speed["distribution"]
    if kind == "constant":
        return float(speed["value"])
    if kind == "uniform":
        return float(rng.uniform(speed["low"], speed["high"]))
    return float(rng.lognormal(speed["mean"], speed["sigma"]))


def put_back(held: dict[int, VersionSums], sums: Mapping[int, VersionSums]) -> None:
    """Add ``sums`` a report could not deliver back into ``held`` (they go with the next)."""
    for version, back in sums.items():
        mine = held.get(version)
        if mine is not None:
            back.merge(mine)
        held[version] = back


def check_dropout(dropout: Any) -> float:
    if isinstance(dropout, bool) or not isinstance(dropout, int | float) or not 0 <= dropout < 1:
        raise SimulatorError(f"device dropout must be a probability in [0, 1), got {dropout!r}")
    return float(dropout)


@dataclass(order=True)
class _Pending:
    due: float
    seq: int
    device: str = field(compare=False)
    version: int = field(compare=False)
    result: DeviceResult | None = field(compare=False)


@dataclass
class VersionSums:
    """The running sum of one model version's device updates at this site."""

    sums: dict[str, np.ndarray] = field(default_factory=dict)
    weight: float = 0.0
    devices: list[str] = field(default_factory=list)

    def add(self, device: str, update: Mapping[str, np.ndarray], weight: float) -> None:
        for key, value in update.items():
            scaled = np.asarray(value, dtype=np.float64) * weight
            held = self.sums.get(key)
            self.sums[key] = scaled if held is None else held + scaled
        self.weight += weight
        self.devices.append(device)

    def merge(self, other: VersionSums) -> None:
        for key, value in other.sums.items():
            held = self.sums.get(key)
            self.sums[key] = value if held is None else held + value
        self.weight += other.weight
        self.devices.extend(other.devices)


class DeviceSource(Protocol):
    """Where an aggregator site's devices come from, as :class:`ember_edge.site.EdgeSiteLink`
    uses them: :class:`DevicePool` (simulated in this process),
    :class:`ember_edge.gateway.DeviceGateway` (real devices over HTTP) or
    :class:`ember_edge.relay.RelayPool` (a relay's leaf sites). Each report cycle the site
    calls ``start`` with its newly selected devices, ``collect`` until the cycle's deadline,
    and ``restore`` when the report could not be delivered. For example::

        source.start(["site-1/dev-3"], version=4, params=model)
        sums = source.collect(time.monotonic() + 1.0)  # {version: VersionSums}
        new_ids = source.device_ids[announced:]  # announced in the report
    """

    device_ids: list[str]
    """Every device this source knows, in the order it learnt of them (only ever grows)."""
    stats: dict[str, Any]

    @property
    def outstanding(self) -> int: ...

    def start(
        self,
        devices: list[str],
        version: int,
        params: Mapping[str, np.ndarray],
        payload: bytes | None = None,
    ) -> None: ...

    def collect(self, deadline: float, linger: bool = False) -> dict[int, VersionSums]: ...

    def restore(self, sums: dict[int, VersionSums]) -> None: ...

    def shutdown(self) -> None: ...


class DevicePool:
    """The simulated devices of one aggregator site."""

    def __init__(
        self,
        site: str,
        factory: Callable[..., DeviceTaskProcessor],
        num_devices: int,
        factory_args: Mapping[str, Any] | None = None,
        speed: Mapping[str, Any] | None = None,
        dropout: float = 0.0,
        seed: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(num_devices, bool) or not isinstance(num_devices, int) or num_devices < 1:
            raise SimulatorError(f"num_devices must be an integer >= 1, got {num_devices!r}")
        self.site = site
        self.factory = factory
        self.factory_args = dict(factory_args or {})
        self.speed = check_speed(speed)
        self.dropout = check_dropout(dropout)
        self.device_ids = [f"{site}/dev-{i}" for i in range(num_devices)]
        self._known = set(self.device_ids)
        self._rng = np.random.default_rng([seed, zlib.crc32(site.encode())])
        self._clock = clock
        self._processors: dict[str, DeviceTaskProcessor] = {}
        self._pending: list[_Pending] = []
        self._seq = 0
        self._sums: dict[int, VersionSums] = {}
        self._cond = threading.Condition()
        self.stats = {"tasks": 0, "answered": 0, "dropped_out": 0}

    # -- devices -----------------------------------------------------------------------------
    def _delay(self) -> float:
        return draw_delay(self.speed, self._rng)

    def _processor(self, device: str) -> DeviceTaskProcessor:
        proc = self._processors.get(device)
        if proc is None:
            proc = self.factory(**self.factory_args)
            proc.setup(device)
            self._processors[device] = proc
        return proc

    def start(
        self,
        devices: list[str],
        version: int,
        params: Mapping[str, np.ndarray],
        payload: bytes | None = None,
    ) -> None:
        """Give ``devices`` model ``version`` (and its ``payload``, see :class:`DeviceTask`):
        each answers after its simulated time, or never."""
        now = self._clock()
        for device in devices:
            if device not in self._known:
                raise SimulatorError(f"{self.site} has no device {device!r}")
            self.stats["tasks"] += 1
            dropped = self.dropout > 0 and self._rng.random() < self.dropout
            delay = self._delay()
            if dropped:
                self.stats["dropped_out"] += 1
                continue  # vanished mid-task: it never answers
            result = self._processor(device).process_task(
                DeviceTask(device, version, params, payload)
            )
            result = self._as_update(device, result, params)
            with self._cond:
                self._seq += 1
                heapq.heappush(
                    self._pending, _Pending(now + delay, self._seq, device, version, result)
                )
                self._cond.notify_all()

    def _as_update(
        self, device: str, result: Any, params: Mapping[str, np.ndarray]
    ) -> DeviceResult:
        if not isinstance(result, DeviceResult):
            raise SimulatorError(
                f"device {device}'s process_task returned {type(result).__name__}, not a "
                "DeviceResult"
            )
        if result.params_type not in (DIFF, FULL):
            raise SimulatorError(f"device {device}: params_type must be DIFF or FULL")
        if not result.weight > 0:
            raise SimulatorError(f"device {device}: weight must be > 0, got {result.weight!r}")
        if result.params_type == FULL:
            result.params = {
                k: np.asarray(v, dtype=np.float64) - np.asarray(params[k], dtype=np.float64)
                for k, v in result.params.items()
            }
            result.params_type = DIFF
        return result

    @property
    def outstanding(self) -> int:
        with self._cond:
            return len(self._pending)

    def collect(self, deadline: float, linger: bool = False) -> dict[int, VersionSums]:
        """Wait until every running device has answered or ``deadline`` (a clock time), then
        take the per-version sums of what has come in; with ``linger``, wait for ``deadline``
        even when no device is running."""
        with self._cond:
            while True:
                now = self._clock()
                while self._pending and self._pending[0].due <= now:
                    item = heapq.heappop(self._pending)
                    assert item.result is not None
                    sums = self._sums.setdefault(item.version, VersionSums())
                    sums.add(item.device, item.result.params, float(item.result.weight))
                    self.stats["answered"] += 1
                if (not self._pending and not linger) or now >= deadline:
                    break
                until = min(self._pending[0].due, deadline) if self._pending else deadline
                self._cond.wait(until - now)
            taken, self._sums = self._sums, {}
            return taken

    def restore(self, sums: dict[int, VersionSums]) -> None:
        """Put back sums a report could not deliver: they go with the next one."""
        with self._cond:
            put_back(self._sums, sums)

    def shutdown(self) -> None:
        with self._cond:
            self._pending.clear()
        processors, self._processors = self._processors, {}
        for proc in processors.values():
            proc.shutdown()
