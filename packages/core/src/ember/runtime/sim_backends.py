"""Where SimEnv runs its sites: the :class:`SimBackend` seam, and its two implementations.

The server side of a simulation (the controller, the task board, the one-result-at-a-time
aggregation) is the same for every backend: a backend only decides where each site's
script runs and carries that site's requests (``get_task``, ``submit_result``, ...) to the
server's in-process transport. That is why ``backend="threads"`` and ``backend="ray"`` give
the same bits.

- ``"threads"`` (:class:`ThreadBackend`): every site's script in this process (a thread per
  site, or with more sites than ``sim.script_threads`` a few carrier threads shared by the
  scripts, ``sim.carrier_threads``; see :mod:`ember.common.carriers`), or a subprocess per
  site with ``launch_external_process``.
- ``"ray"`` (:class:`ember.runtime.ray_backend.RayBackend`): sites run in a pool of Ray
  actors, on one machine or a cluster (the ``ray`` extra).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from types import CodeType
from typing import Any, Protocol, runtime_checkable

from ember.client.slots import WorkSlots
from ember.common.carriers import Carrier
from ember.config import get_setting, use_config
from ember.errors import RecipeArgumentError
from ember.job.definition import JobDefinition
from ember.runtime.inprocess_site import InProcessSite, compile_script
from ember.runtime.logs import (
    NodeLogs,
    SharedLogFiles,
    flush_log_files,
    start_log_streaming,
)
from ember.runtime.memory_budget import MeasuringTransport
from ember.runtime.site_runner import RefusedSite, build_site_runner
from ember.runtime.subprocess_site import SubprocessSite

BACKENDS = ("threads", "ray")
#: how long (seconds) a site whose script runs in a thread of SimEnv's process waits in one
#: task request (at least ``runtime.task_poll_interval``)
IN_PROCESS_POLL = 3600.0


class SiteHost(Protocol):
    """What a backend needs of the simulation to build its sites (given by ``Simulation``)."""

    job: JobDefinition
    job_id: str
    job_dir: Path
    workspace: Path
    sites: list[str]
    transport: Any
    config: Any
    num_threads: int | None
    log_level: int
    echo: Callable[[str, str], None] | None
    server_log: logging.Logger


@runtime_checkable
class SimBackend(Protocol):
    """Runs a simulation's sites and relays their requests to the server's transport.

    ``start(host)`` builds and starts every site of ``host.sites``; each site talks to the
    server only through ``host.transport.request(site, "server", topic, payload)``, so the
    server cannot tell one backend from another. ``stop(timeout)`` is called once the job
    ended (the scripts return), ``kill()`` when it is aborted (nothing may keep running).

    A worked example, a backend that runs sites one after the other in one thread (fine for
    a job whose sites need not train at the same time)::

        import threading
        from ember.runtime.inprocess_site import compile_script
        from ember.runtime.site_runner import build_site_runner

        class Serial:
            name = "serial"

            def start(self, host):
                code = compile_script(host.job_dir / host.job.client.script)
                self.runners = []
                for site in host.sites:
                    endpoint = host.transport.add_endpoint(site)
                    self.runners.append(build_site_runner(
                        site, host.job, host.job_id, host.job_dir, host.workspace / site,
                        host.transport, endpoint, 5.0, host.server_log, code=code))
                for runner in self.runners:
                    runner.start()

            def stop(self, timeout):
                return [r.session.site for r in self.runners if not r.join(timeout)]

            def kill(self):
                pass

    ``stop`` returns the sites whose scripts did not return in time (the simulation logs
    them).
    """

    name: str

    def start(self, host: SiteHost) -> None: ...

    def stop(self, timeout: float) -> list[str]: ...

    def kill(self) -> None: ...


#: the folder of a job's workspace that holds its sites' shared log files
SHARED_SITE_LOGS = "sites"


def shared_site_logs(sites: int) -> bool:
    """Whether a job of ``sites`` sites writes their logs to one pair of files
    (``sim.shared_site_logs``): not when the sites stream their logs (``logs.stream`` tails
    each site's own files)."""
    return sites > int(get_setting("sim.shared_site_logs")) and not get_setting("logs.stream")


def usable_cpus() -> int:
    """How many CPUs this process may run on (its affinity where the OS says, else all)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def carrier_count(job: JobDefinition, sites: int) -> int:
    """How many carrier threads run ``sites`` in-process scripts of ``job``
    (``sim.carrier_threads``, 0: one per usable CPU); 0 for a thread per site: at most
    ``sim.script_threads`` sites (or that setting 0), scripts in subprocesses, or a job whose
    sites wait for each other outside the task board (a site workflow, or every site at
    once: XGBoost's collectives, Flower)."""
    app = job.client
    limit = int(get_setting("sim.script_threads"))
    if limit <= 0 or sites <= limit or app.launch_external_process:
        return 0
    if app.site_workflow is not None or job.all_sites_at_once:
        return 0
    return min(sites, int(get_setting("sim.carrier_threads")) or usable_cpus())


class ThreadBackend:
    """SimEnv's default: the sites' scripts in this process (a thread each, or carrier
    threads shared by many), or each in a subprocess."""

    name = "threads"

    def __init__(self) -> None:
        self.runners: list[InProcessSite | SubprocessSite | RefusedSite] = []
        self.logs: list[NodeLogs] = []
        self.shared_logs: SharedLogFiles | None = None
        self.streamers: list[Any] = []
        self.carriers: list[Carrier] = []

    def start(self, host: SiteHost) -> None:
        config = host.config
        # the memory cap (memory_budget.py, num_threads folded in) or num_threads alone
        memory = getattr(host, "memory", None)
        slots: WorkSlots | None = (
            memory.slots
            if memory is not None
            else WorkSlots(host.num_threads, host.sites)
            if host.num_threads
            else None
        )
        # a memory cap learns what sites hold from what they receive and send
        transport = host.transport if memory is None else MeasuringTransport(host.transport, memory)
        app = host.job.client
        script = (host.job_dir / app.script).resolve()
        code: CodeType | None = None
        with use_config(config):
            poll = float(config.get("runtime.task_poll_interval"))
        if not app.launch_external_process:
            # a script in a thread waits for its next task in one long poll: no proxy drops
            # an idle in-process request, and a new task, the job's end or the site's death
            # answers it at once (10,000 idle sites re-asking every few seconds cost more
            # than the job's own work)
            poll = max(poll, IN_PROCESS_POLL)
        with use_config(config):
            count = carrier_count(host.job, len(host.sites))
            if shared_site_logs(len(host.sites)):
                self.shared_logs = SharedLogFiles(host.workspace / SHARED_SITE_LOGS)
                host.server_log.info(
                    "%d sites write their logs to %s/log.txt (sim.shared_site_logs)",
                    len(host.sites),
                    SHARED_SITE_LOGS,
                )
        self.carriers = [Carrier(f"ember-sites-{i}") for i in range(count)]
        if count:
            host.server_log.info(
                "%d sites' scripts run on %d carrier threads (sim.carrier_threads)",
                len(host.sites),
                count,
            )
        for index, site in enumerate(host.sites):
            with use_config(config):
                # with a cap on sites at work, a site pulls its task's data once it has a
                # slot (ClientSession), not as the task arrives
                site_endpoint = host.transport.add_endpoint(
                    site,
                    lazy_tensors=slots is not None
                    and not app.launch_external_process
                    and (memory is None or memory.capped),
                    relay_tensors=app.launch_external_process,
                )
            if memory is not None:
                memory.endpoints.append(site_endpoint)  # made lazy if the cap comes to bind
            site_dir = host.workspace / site
            site_logs = NodeLogs(
                f"ember.job.{host.job_id}.{site}",
                site_dir,
                host.log_level,
                hold_open=False,
                shared=self.shared_logs,
            )
            self.logs.append(site_logs)
            if code is None and not app.launch_external_process:
                code = compile_script(script)
            with use_config(config):
                runner = build_site_runner(
                    site,
                    host.job,
                    host.job_id,
                    host.job_dir,
                    site_dir,
                    transport,
                    site_endpoint,
                    poll,
                    site_logs.logger,
                    slots,
                    code,
                    echo=host.echo,
                    # round-robin: the first sites to get work slots get separate carriers
                    carrier=self.carriers[index % count] if count else None,
                )
                streamer = start_log_streaming(site, site_dir, host.transport.request)
            if streamer is not None:
                self.streamers.append(streamer)
            self.runners.append(runner)
        for carrier in self.carriers:
            carrier.start()
        for runner in self.runners:
            with use_config(config):
                runner.start()
        for carrier in self.carriers:
            carrier.close()  # each ends once its scripts have returned

    def stop(self, timeout: float) -> list[str]:
        import time

        late: list[str] = []
        deadline = time.monotonic() + timeout
        for runner in self.runners:
            remaining = max(0.0, deadline - time.monotonic())
            if isinstance(runner, SubprocessSite):
                runner.stop(remaining)
            elif not runner.join(remaining):
                late.append(runner.session.site)
        return late

    def kill(self) -> None:
        """Threads cannot be killed: an aborted job's scripts see the job's end at their next
        ``receive()``; subprocesses are stopped by :meth:`stop`."""

    def close_streams(self) -> None:
        for streamer in self.streamers:
            streamer.close()

    def close_logs(self) -> None:
        for logs in self.logs:
            logs.close(wait=False)
        if self.shared_logs is not None:
            self.shared_logs.close()
        flush_log_files()  # once for every site: each site's files are whole now


def make_backend(
    backend: str,
    ray_address: str | None = None,
    site_resources: dict[str, float] | None = None,
) -> SimBackend:
    """The backend named ``backend`` (``"threads"`` or ``"ray"``)."""
    if backend == "threads":
        if ray_address is not None or site_resources is not None:
            raise RecipeArgumentError(
                "ray_address and site_resources apply to backend='ray' only; "
                "pass backend='ray' or leave them unset"
            )
        return ThreadBackend()
    if backend == "ray":
        from ember.runtime.ray_backend import RayBackend, check_site_resources

        return RayBackend(ray_address, check_site_resources(site_resources))
    raise RecipeArgumentError(f"SimEnv backend must be one of {BACKENDS}, got {backend!r}")
