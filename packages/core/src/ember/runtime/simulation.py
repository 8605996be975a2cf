"""Run an exported job on one machine: the server and every site in this process."""

from __future__ import annotations

import json
import logging
import subprocess
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ember.client.link import SERVER
from ember.config import Config, check_relations, use_config
from ember.errors import RecipeArgumentError
from ember.job.definition import JobDefinition
from ember.runtime.logs import (
    SITE_LOGS,
    LogCollector,
    LogStreamer,
    NodeLogs,
    forget_logger_tree,
    is_script_record,
)
from ember.runtime.memory_budget import MemoryScheduler
from ember.runtime.memory_budget import plan as plan_memory
from ember.runtime.progress import Progress
from ember.runtime.server_job import ServerJob, Status
from ember.runtime.sim_backends import SimBackend, ThreadBackend
from ember.runtime.transport import InProcessTransport
from ember.streaming import FileReceiver, bind_node

#: where SimEnv keeps the server's models when the memory budget needs it (under the job's
#: server folder, removed at the job's end)
MEMORY_OFFLOAD = "memory-offload"


class Simulation:
    """One job, its server and its sites in one process, results under ``workspace``."""

    def __init__(
        self,
        job_dir: Path,
        sites: list[str],
        workspace: Path,
        num_threads: int | None = None,
        log_level: int = logging.INFO,
        progress: bool | None = None,
        backend: SimBackend | None = None,
        memory_budget: float | None = None,
    ) -> None:
        self.memory_budget = memory_budget
        #: caps the sites at work for memory (the thread backend; None: no cap)
        self.memory: MemoryScheduler | None = None
        self.backend: SimBackend = backend if backend is not None else ThreadBackend()
        self.job_dir = Path(job_dir)
        self.job = JobDefinition.from_dir(self.job_dir)
        self.sites = sites
        self.workspace = Path(workspace)
        self.job_id = uuid.uuid4().hex[:12]
        self.config = Config(self.job.config)
        check_relations(self.config, what=f"job {self.job.name!r}")
        self.num_threads = num_threads
        self.log_level = log_level
        self.progress = Progress(
            self.job.name, enabled=progress, mode=str(self.config.get("sim.progress"))
        )
        self._streamers: list[LogStreamer] = []
        keys = [w.get("args", {}).get("key_metric") for w in self.job.workflows]
        self.progress.key_metric = next((k for k in keys if isinstance(k, str) and k), None)
        self._thread: threading.Thread | None = None
        self._server: ServerJob | None = None
        self._logs: list[NodeLogs] = []
        self.finished = threading.Event()
        self._plot: subprocess.Popen[bytes] | None = None

    @property
    def status(self) -> str:
        return self._server.status if self._server is not None else Status.SUBMITTED

    @property
    def message(self) -> str:
        return self._server.message if self._server is not None else ""

    def start(self) -> None:
        """Lay out the workspace and start the server and the sites."""
        capped = self.num_threads is not None and self.num_threads < len(self.sites)
        if self.job.all_sites_at_once and capped and not self.job.client.launch_external_process:
            raise RecipeArgumentError(
                f"job {self.job.name!r} needs all {len(self.sites)} sites training at once "
                f"(its workflow waits for every site in each step), but num_threads="
                f"{self.num_threads} lets only that many train: leave num_threads unset or "
                f"raise it to {len(self.sites)}"
            )
        server_dir = self.workspace / "server"
        memory_line = ""
        if isinstance(self.backend, ThreadBackend) and not self.job.client.launch_external_process:
            # how many sites may train at once in this process's memory (memory_budget.py);
            # refuses here a job that needs every site at once and cannot fit
            with use_config(self.config):
                self.memory, memory_line = plan_memory(
                    self.job,
                    self.job_dir,
                    self.sites,
                    self.config,
                    self.memory_budget,
                    self.num_threads,
                    self.workspace,
                    logging.getLogger(f"ember.job.{self.job_id}.server"),
                )
            if self.memory is not None and self.memory.offload:
                self.config = Config({**self.job.config, "streaming.offload_dir": MEMORY_OFFLOAD})
        server_dir.mkdir(parents=True, exist_ok=True)
        server_logs = NodeLogs(f"ember.job.{self.job_id}.server", server_dir, self.log_level)
        self._logs.append(server_logs)
        if memory_line:
            server_logs.logger.info("%s", memory_line)
        with use_config(self.config):
            task_timeout = float(self.config.get("runtime.task_timeout"))
        with use_config(self.config):
            self._server = ServerJob(
                self.job,
                self.job_id,
                self.job_dir,
                server_dir,
                self.sites,
                task_timeout,
                self.progress,
                server_logs.logger,
            )
        self.progress.watch(self._server.board)
        self.progress.start()
        self._write_meta()
        self._transport = transport = InProcessTransport(
            serialize=bool(self.config.get("sim.serialize_messages"))
        )
        with use_config(self.config):
            # the server keeps streamed arrays in results as references until it aggregates
            server_endpoint = transport.add_endpoint(SERVER, lazy_tensors=True)
        self._server.attach(server_endpoint)
        self._server_node = server_endpoint.stream
        FileReceiver(server_dir / "uploads").attach(server_endpoint)
        LogCollector(server_dir / SITE_LOGS, self.sites, self._streamed).attach(server_endpoint)
        # where the sites run (threads, Ray actors): the server side above is the same
        self.transport = transport
        self.echo: Callable[[str, str], None] | None = self.progress.script_line
        self.server_log = server_logs.logger
        with use_config(self.config):
            self.backend.start(self)
        self._thread = threading.Thread(
            target=self._run, name=f"ember-server-{self.job_id}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        assert self._server is not None
        try:
            bind_node(self._server_node)
            with use_config(self.config):
                self._server.run()
                self._stop_sites()
        finally:
            for streamer in self._streamers:  # the last lines, before the transport goes
                streamer.close()
            if isinstance(self.backend, ThreadBackend):
                self.backend.close_streams()
            self._transport.close()
            self.progress.finish(self._server.status)
            self._write_meta()
            from ember.runtime.plots import plot_in_background

            try:
                # rendered in a process of its own: matplotlib stays off the job's path
                self._plot = plot_in_background(
                    self._server.records.rounds, self.workspace / "server"
                )
            except Exception as exc:  # a missing plot must not fail a finished job
                self._server.log.warning("could not plot round metrics: %s", exc)
            for logs in self._logs:
                logs.close()
            if isinstance(self.backend, ThreadBackend):
                self.backend.close_logs()
            forget_logger_tree(f"ember.job.{self.job_id}")
            self.finished.set()

    def _streamed(self, site: str, name: str, lines: list[str]) -> None:
        """Streamed log lines at the server: on the console, less the scripts' output
        (shown as the scripts print it)."""
        for line in lines:
            if name != "log.txt" or not is_script_record(line, site):
                self.progress.print_line(f"[{site} {name}] {line}")

    def _stop_sites(self) -> None:
        timeout = float(self.config.get("runtime.site_stop_timeout"))
        for site in self.backend.stop(timeout):
            assert self._server is not None
            self._server.log.warning(
                "site %s's script did not return within runtime.site_stop_timeout=%gs "
                "after the job ended",
                site,
                timeout,
            )

    def _write_meta(self) -> None:
        meta: dict[str, Any] = {
            "job_id": self.job_id,
            "job_name": self.job.name,
            "sites": self.sites,
            "status": self.status,
            "message": self.message,
            "job_dir": str(self.job_dir),
        }
        (self.workspace / "meta.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")

    def wait(self, timeout: float | None = None) -> bool:
        return self.finished.wait(timeout)

    def wait_for_plot(self, timeout: float | None = None) -> Path | None:
        """Wait for the job's end and for ``server/round_metrics.png`` (rendered in the
        background after the job ends); its path, or None when there is none (no metrics,
        no matplotlib, a render that failed: see ``server/log.txt``)."""
        self.finished.wait(timeout)
        if self._plot is not None:
            try:
                self._plot.wait(timeout)
            except subprocess.TimeoutExpired:
                return None
        png = self.workspace / "server" / "round_metrics.png"
        return png if png.is_file() else None

    def abort(self, reason: str = "aborted by the user") -> None:
        if self._server is not None:
            self._server.abort(reason)
        self.backend.kill()  # Ray actors stop now; threads see the end at their next receive
