"""The device simulator's HTTP mode: thousands of simulated devices per process, each
talking to a device gateway over HTTP(S) in the device protocol, as a real device would.

Every device is a coroutine on one event loop (one aiohttp session per gateway): it
registers (``POST /job``), long-polls for a task (``POST /task?wait=...``), trains with its
own :class:`~ember_edge.simulator.DeviceTaskProcessor` (``setup(device_id)`` once,
``process_task(task)`` per task, ``shutdown()`` at the end), waits its simulated compute
time (the speed distribution of :func:`~ember_edge.simulator.check_speed`) and reports
(``POST /result``), until the gateway says ``DONE``. A device picks its gateway by
rendezvous hashing (:func:`ember_edge.routing.gateway_for`) over the gateways' site names.

Simulation-only shortcuts (a real device does none of these):

- the processors run in ``workers`` threads of the simulator's process (a task's "compute
  time" on the device is the speed distribution's ``asyncio.sleep``, not the processor's);
- drop-out: with probability ``dropout`` a device vanishes after it got a task and never
  reports nor asks again (the server frees its slot after ``device_wait_timeout``);
- the processors share one model array per task they decode (read-only);
- the gateways are found through the ``gateway.json`` files the sites write into their
  workspaces (:func:`ember_edge.gateway.read_gateways`), and a self-signed gateway
  certificate named there is trusted as is (pinned).

Use :class:`HttpDeviceSimulator` from a thread beside the job (``start()``, ``stop()``,
``join()``), or ``await simulator.run()`` in your own loop.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import math
import ssl
import threading
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ember.config import describe_setting, describe_timeout, get_setting
from ember_edge import protocol as p
from ember_edge.gateway import read_gateways
from ember_edge.routing import gateway_for
from ember_edge.simulator import (
    DIFF,
    DeviceResult,
    DeviceTask,
    DeviceTaskProcessor,
    SimulatorError,
    check_dropout,
    check_speed,
    draw_delay,
)


def _raise_fd_limit() -> None:
    """Each device holds a connection: lift the soft open-files limit to the hard one."""
    with contextlib.suppress(ImportError, ValueError, OSError):
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class HttpDeviceSimulator:
    """``num_devices`` simulated devices (ids ``f"{prefix}-{i}"``) against ``gateways``.

    ``gateways``: ``[{"site", "url", "cert"?}, ...]`` (what ``gateway.json`` holds), or a
    folder to find ``gateway.json`` files in (waited for up to ``edge.gateway_wait_timeout``
    until ``expect_gateways`` are there). ``factory``/``factory_args``: the task processor
    class; ``speed``/``dropout``/``seed`` as for the in-process pool; ``token(device_id)``:
    the bearer token a device sends (None: none); ``safetensors``: bodies in safetensors
    rather than JSON; ``wait``: the long poll each ``/task`` asks for (seconds; None:
    ``edge.gateway_long_poll``); ``start_spread``: devices register spread over this many
    seconds (a fleet does not start in one instant); ``workers``: threads that run the
    processors; ``job_id``: only that job's gateways (a folder that holds several jobs).
    """

    def __init__(
        self,
        gateways: Sequence[Mapping[str, Any]] | Path | str,
        factory: Callable[..., DeviceTaskProcessor],
        num_devices: int,
        factory_args: Mapping[str, Any] | None = None,
        speed: Mapping[str, Any] | None = None,
        dropout: float = 0.0,
        seed: int = 0,
        prefix: str = "dev",
        token: Callable[[str], str | None] | None = None,
        safetensors: bool = False,
        wait: float | None = None,
        expect_gateways: int = 1,
        start_spread: float = 0.0,
        workers: int = 2,
        job_id: str | None = None,
    ) -> None:
        if isinstance(num_devices, bool) or not isinstance(num_devices, int) or num_devices < 1:
            raise SimulatorError(f"num_devices must be an integer >= 1, got {num_devices!r}")
        self._gateway_source = gateways
        self.expect_gateways = expect_gateways
        self.factory = factory
        self.factory_args = dict(factory_args or {})
        self.speed = check_speed(speed)
        self.dropout = check_dropout(dropout)
        self.device_ids = [f"{prefix}-{i}" for i in range(num_devices)]
        self._rng = np.random.default_rng([seed, zlib.crc32(prefix.encode())])
        self.token = token
        self.safetensors = safetensors
        self.wait = float(get_setting("edge.gateway_long_poll")) if wait is None else wait
        self.start_spread = start_spread
        self.workers = max(1, int(workers))
        self.job_id = job_id
        self._workers: ThreadPoolExecutor | None = None
        self._request_timeout = float(get_setting("edge.device_request_timeout"))
        self._retry_wait = int(get_setting("edge.gateway_retry_wait"))
        self.stats: dict[str, int] = {
            "devices": num_devices,
            "requests": 0,
            "registered": 0,
            "refused": 0,
            "tasks": 0,
            "results": 0,
            "results_taken": 0,
            "dropped_out": 0,
            "request_errors": 0,
            "done": 0,
        }
        self.per_gateway: dict[str, int] = {}
        #: request errors by exception type (a gateway that closed, a timeout, ...)
        self.errors: dict[str, int] = {}
        self.seconds = 0.0
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None

    # -- gateways ------------------------------------------------------------------------------
    async def _gateways(self) -> list[Mapping[str, Any]]:
        source = self._gateway_source
        if not isinstance(source, Path | str):
            return list(source)
        timeout = float(get_setting("edge.gateway_wait_timeout"))
        deadline = time.monotonic() + timeout
        while True:
            found: list[Mapping[str, Any]] = list(read_gateways(Path(source), self.job_id))
            if len(found) >= self.expect_gateways:
                return found
            if time.monotonic() >= deadline:
                raise SimulatorError(
                    f"no device gateway wrote gateway.json under {source} within "
                    f"{describe_setting('edge.gateway_wait_timeout', timeout)} (found "
                    f"{len(found)} of {self.expect_gateways})"
                )
            assert self._stop is not None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), 0.05)
            if self._stop.is_set():
                return []

    @staticmethod
    def _ssl(gateway: Mapping[str, Any]) -> ssl.SSLContext | None:
        if not str(gateway.get("url", "")).startswith("https"):
            return None
        ctx = ssl.create_default_context()
        if gateway.get("ca"):  # the project's root CA signed it (a provisioned site)
            ctx.load_verify_locations(str(gateway["ca"]))
        elif gateway.get("cert"):  # simulation shortcut: trust the gateway's own cert (pinned)
            ctx.load_verify_locations(str(gateway["cert"]))
        return ctx

    # -- running -------------------------------------------------------------------------------
    async def run(self) -> dict[str, int]:
        """Run every device until its gateway says DONE (or :meth:`stop`)."""
        import aiohttp

        _raise_fd_limit()
        self._stop = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        started = time.monotonic()
        gateways = await self._gateways()
        if not gateways:
            return self.stats
        names = [str(g["site"]) for g in gateways]
        by_name = {str(g["site"]): g for g in gateways}
        timeout = aiohttp.ClientTimeout(total=self._request_timeout)
        sessions: dict[str, aiohttp.ClientSession] = {}
        # the processors run in a few worker threads: a slow one (its first import, a
        # large model) does not hold up every other device's requests on the loop
        self._workers = ThreadPoolExecutor(self.workers, thread_name_prefix="edge-device")
        try:
            for name in names:
                connector = aiohttp.TCPConnector(
                    limit=0, ssl=self._ssl(by_name[name]) or False, force_close=False
                )
                sessions[name] = aiohttp.ClientSession(
                    base_url=None, connector=connector, timeout=timeout
                )
            jobs = []
            for index, device in enumerate(self.device_ids):
                name = gateway_for(device, names)
                self.per_gateway[name] = self.per_gateway.get(name, 0) + 1
                delay = self.start_spread * index / max(1, len(self.device_ids))
                jobs.append(self._device(device, str(by_name[name]["url"]), sessions[name], delay))
            await asyncio.gather(*jobs)
        finally:
            for session in sessions.values():
                await session.close()
            self._workers.shutdown(wait=True, cancel_futures=True)
            self.seconds = time.monotonic() - started
        return self.stats

    def start(self) -> None:
        """Run in a thread of its own (its own event loop)."""

        def main() -> None:
            try:
                asyncio.run(self.run())
            except BaseException as exc:  # reported by join()
                self._failure = exc

        self._thread = threading.Thread(target=main, name="edge-http-devices", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Every device stops at its next step (held requests are abandoned)."""
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)

    def join(self, timeout: float | None = None) -> dict[str, int]:
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise SimulatorError(
                    f"the HTTP device simulator did not stop within {describe_timeout(timeout)}"
                )
        if self._failure is not None:
            raise self._failure
        return self.stats

    # -- one device ------------------------------------------------------------------------------
    def _headers(self, device: str) -> dict[str, str]:
        headers = {p.DEVICE_ID: device, p.DEVICE_INFO: "app_name=ember-sim&platform=python"}
        token = self.token(device) if self.token is not None else None
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    async def _pause(self, seconds: float) -> bool:
        """Sleep ``seconds`` unless stopped; False once stopped."""
        assert self._stop is not None
        if self._stop.is_set():
            return False
        if seconds > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), seconds)
        return not self._stop.is_set()

    async def _post(
        self,
        session: Any,
        url: str,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        data: bytes | None = None,
    ) -> tuple[int, str, bytes]:
        self.stats["requests"] += 1
        async with session.post(
            url, headers=headers, params=params, json=json_body, data=data
        ) as reply:
            return reply.status, reply.content_type, await reply.read()

    async def _device(self, device: str, base: str, session: Any, delay: float) -> None:
        import aiohttp

        if not await self._pause(delay):
            return
        headers = self._headers(device)
        processor: DeviceTaskProcessor | None = None
        failures = 0
        job_id: str | None = None
        try:
            while self._stop is not None and not self._stop.is_set():
                try:
                    if job_id is None:
                        status, _, raw = await self._post(session, base + "job", headers, None, {})
                        if status == 401:
                            self.stats["refused"] += 1
                            return
                        body = json.loads(raw) if status == 200 else {}
                        if body.get("status") == p.OK:
                            job_id = str(body["job_id"])
                            self.stats["registered"] += 1
                        elif body.get("status") == p.DONE:
                            self.stats["done"] += 1
                            return
                        elif not await self._pause(float(body.get("retry_wait", 1))):
                            return
                        continue
                    got = await self._ask(session, base, headers, job_id)
                    failures = 0
                    if got is None:
                        self.stats["done"] += 1
                        return
                    if got == "again":
                        continue
                    if isinstance(got, tuple) and got[0] == "wait":
                        if not await self._pause(got[1]):
                            return
                        continue
                    if got == "rejoin":
                        job_id = None
                        continue
                    assert isinstance(got, dict)
                    self.stats["tasks"] += 1
                    if self.dropout > 0 and self._rng.random() < self.dropout:
                        self.stats["dropped_out"] += 1
                        return  # vanished mid-task
                    loop = asyncio.get_running_loop()
                    if processor is None:
                        processor = await loop.run_in_executor(self._workers, self._make, device)
                    result = await loop.run_in_executor(
                        self._workers,
                        processor.process_task,
                        DeviceTask(device, got["version"], got["params"], got["payload"]),
                    )
                    if not await self._pause(self._delay()):
                        return
                    answer = await self._report(session, base, headers, job_id, got, result)
                    if answer == p.DONE:
                        self.stats["done"] += 1
                        return
                except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
                    self.stats["request_errors"] += 1
                    name = type(exc).__name__
                    self.errors[name] = self.errors.get(name, 0) + 1
                    failures += 1
                    if failures >= 3:  # the gateway is gone (its job ended)
                        return
                    if not await self._pause(self._retry_wait):
                        return
        finally:
            if processor is not None:
                processor.shutdown()

    def _make(self, device: str) -> DeviceTaskProcessor:
        processor = self.factory(**self.factory_args)
        processor.setup(device)
        return processor

    def _delay(self) -> float:
        return draw_delay(self.speed, self._rng)

    async def _ask(self, session: Any, base: str, headers: Mapping[str, str], job_id: str) -> Any:
        """The device's task as ``{"version", "params", "task_id", "cookie"}``; "again",
        ``("wait", s)``, "rejoin" (NO_JOB) or None (DONE)."""
        params = {"job_id": job_id}
        if self.wait > 0:
            params["wait"] = f"{self.wait:g}"
        asked = dict(headers)
        if self.safetensors:
            asked["Accept"] = p.SAFETENSORS
        status, ctype, raw = await self._post(session, base + "task", asked, params, {})
        if status != 200:
            return ("wait", float(self._retry_wait))
        if ctype == p.SAFETENSORS:
            arrays, body = p.params_from_safetensors(raw)
        else:
            body = json.loads(raw)
            arrays = None
        code = body.get("status")
        if code == p.DONE:
            return None
        if code == p.NO_JOB:
            return "rejoin"
        if code != p.OK:
            wait = float(body.get("retry_wait", self._retry_wait))
            return "again" if wait <= 0 else ("wait", wait)
        data = body.get("task_data") or {}
        meta = data.get("meta") or {}
        payload = None
        if meta.get("model_buffer_type") == p.ET_META["model_buffer_type"]:
            payload = base64.b64decode(str(data.get("data", "")))  # an ExecuTorch job's .pte
            arrays = {}
        elif arrays is None:
            arrays = p.params_from_json(data.get("data"), meta.get("dtypes"))
        return {
            "payload": payload,
            "version": int(meta.get(p.MODEL_VERSION, body.get("cookie", {}).get("model_version"))),
            "params": arrays,
            "task_id": str(body["task_id"]),
            "cookie": body.get("cookie"),
        }

    async def _report(
        self,
        session: Any,
        base: str,
        headers: Mapping[str, str],
        job_id: str,
        task: Mapping[str, Any],
        result: DeviceResult,
    ) -> str:
        if not isinstance(result, DeviceResult):
            raise SimulatorError(
                f"process_task returned {type(result).__name__}, not a DeviceResult"
            )
        weight = float(result.weight)
        if not (math.isfinite(weight) and weight > 0):
            raise SimulatorError(f"a device's weight must be > 0, got {result.weight!r}")
        kind = p.WEIGHT_DIFF if result.params_type == DIFF else p.WEIGHTS
        params = {"job_id": job_id, "task_id": str(task["task_id"])}
        envelope: dict[str, Any] = {
            "status": p.OK,
            "task_name": p.TASK_NAME,
            "cookie": task.get("cookie"),
            "result": {"kind": kind, "meta": {"weight": weight}},
        }
        arrays = {k: np.asarray(v) for k, v in result.params.items()}
        self.stats["results"] += 1
        if self.safetensors:
            status, _, raw = await self._post(
                session,
                base + "result",
                {**headers, "Content-Type": p.SAFETENSORS},
                params,
                data=p.params_to_safetensors(arrays, envelope),
            )
        else:
            data, dtypes = p.params_to_json(arrays)
            envelope["result"]["data"] = data
            envelope["result"]["meta"]["dtypes"] = dtypes
            status, _, raw = await self._post(
                session,
                base + "result",
                {**headers, "Content-Type": p.JSON},
                params,
                data=p.dumps(envelope),
            )
        body = json.loads(raw) if raw else {}
        if status == 200 and body.get("status") == p.OK:
            self.stats["results_taken"] += 1
        return str(body.get("status", ""))


__all__ = ["HttpDeviceSimulator"]
