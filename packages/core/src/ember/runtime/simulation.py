"""Run an exported job on one machine: the server and every site in this process."""

from __future__ import annotations

import json
import logging
import subprocess
import threading
import time
import uuid
from pathlib import Path
from types import CodeType
from typing import Any

from ember.client.link import SERVER
from ember.client.slots import WorkSlots
from ember.config import Config, check_relations, use_config
from ember.errors import RecipeArgumentError
from ember.job.definition import JobDefinition
from ember.runtime.inprocess_site import InProcessSite, compile_script
from ember.runtime.logs import (
    SITE_LOGS,
    LogCollector,
    LogStreamer,
    NodeLogs,
    forget_logger_tree,
    is_script_record,
    start_log_streaming,
)
from ember.runtime.progress import Progress
from ember.runtime.server_job import ServerJob, Status
from ember.runtime.site_runner import build_site_runner
from ember.runtime.subprocess_site import SubprocessSite
from ember.runtime.transport import InProcessTransport
from ember.streaming import FileReceiver, bind_node


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
    ) -> None:
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
        self._site_runners: list[InProcessSite | SubprocessSite] = []
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
        server_dir.mkdir(parents=True, exist_ok=True)
        server_logs = NodeLogs(f"ember.job.{self.job_id}.server", server_dir, self.log_level)
        self._logs.append(server_logs)
        with use_config(self.config):
            task_timeout = float(self.config.get("runtime.task_timeout"))
            poll = float(self.config.get("runtime.task_poll_interval"))
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
        slots = WorkSlots(self.num_threads, self.sites) if self.num_threads else None
        app = self.job.client
        script = (self.job_dir / app.script).resolve()
        code: CodeType | None = None
        for site in self.sites:
            with use_config(self.config):
                # with a cap on sites at work, a site pulls its task's data once it has a
                # slot (ClientSession), not as the task arrives
                site_endpoint = transport.add_endpoint(
                    site,
                    lazy_tensors=slots is not None and not app.launch_external_process,
                    relay_tensors=app.launch_external_process,
                )
            site_dir = self.workspace / site
            site_logs = NodeLogs(
                f"ember.job.{self.job_id}.{site}", site_dir, self.log_level, hold_open=False
            )
            self._logs.append(site_logs)
            if code is None and not app.launch_external_process:
                code = compile_script(script)
            with use_config(self.config):
                runner = build_site_runner(
                    site,
                    self.job,
                    self.job_id,
                    self.job_dir,
                    site_dir,
                    transport,
                    site_endpoint,
                    poll,
                    site_logs.logger,
                    slots,
                    code,
                    echo=self.progress.script_line,
                )
                streamer = start_log_streaming(site, site_dir, transport.request)
            if streamer is not None:
                self._streamers.append(streamer)
            self._site_runners.append(runner)
        for runner in self._site_runners:
            with use_config(self.config):
                runner.start()
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
        deadline = time.monotonic() + timeout
        for runner in self._site_runners:
            remaining = max(0.0, deadline - time.monotonic())
            if isinstance(runner, SubprocessSite):
                runner.stop(remaining)
            elif not runner.join(remaining):
                assert self._server is not None
                self._server.log.warning(
                    "site %s's script did not return within runtime.site_stop_timeout=%gs "
                    "after the job ended",
                    runner.session.site,
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
