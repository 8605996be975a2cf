"""The server side of one job: handlers for the sites and the workflows, run in order."""

from __future__ import annotations

import logging
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from ember.client.link import Topic
from ember.common.messages import MetricRecord, Task, TaskResult
from ember.config import get_setting
from ember.filters.base import INPUT, OUTPUT
from ember.filters.chain import FilterChain
from ember.job.definition import APP_DIR, JobDefinition
from ember.plugins.entries import load_target
from ember.runtime.board import TaskBoard
from ember.runtime.context import ServerContext
from ember.runtime.errors import JobAborted, JobError
from ember.runtime.inprocess_site import describe_exception
from ember.runtime.progress import Progress
from ember.runtime.records import MetricSink, RoundRecorder
from ember.runtime.transport import Endpoint
from ember.streaming.lazy import offload, release_all


class Status:
    """Job status strings, as ``Run.get_status()`` reports them."""

    SUBMITTED = "SUBMITTED"
    RUNNING = "RUNNING"
    COMPLETED = "FINISHED:COMPLETED"
    ABORTED = "FINISHED:ABORTED"
    EXECUTION_EXCEPTION = "FINISHED:EXECUTION_EXCEPTION"


class ServerJob:
    """Runs a job's workflows against its task board and answers the sites' requests."""

    def __init__(
        self,
        job: JobDefinition,
        job_id: str,
        job_dir: Path,
        server_dir: Path,
        sites: list[str],
        task_timeout: float,
        progress: Progress,
        log: logging.Logger,
    ) -> None:
        self.job = job
        self.job_id = job_id
        self.board = TaskBoard(sites)
        self.server_dir = server_dir
        self.log = log
        # experiment tracking (server side): what sites stream, each round's metrics
        self.sink = MetricSink(
            server_dir, job.tracking, job=job, job_id=job_id, sites=list(sites), log=log
        )
        self.records = RoundRecorder(server_dir, on_round=self.sink.round)
        self.ctx = ServerContext(
            job_id,
            job.name,
            job_dir,
            server_dir,
            self.board,
            task_timeout,
            self.records,
            progress,
            log,
        )
        self.ctx.tunnels.log = log
        self.status = Status.SUBMITTED
        self.message = ""
        self.done = threading.Event()
        offload_dir = str(get_setting("streaming.offload_dir"))
        # a relative folder is the job's own, under its server folder (enable_tensor_disk_offload)
        self.offload_dir = (
            None
            if not offload_dir
            else Path(offload_dir) / job_id
            if Path(offload_dir).is_absolute()
            else server_dir / offload_dir
        )
        self.ctx.offload_dir = self.offload_dir
        self.started_at = time.time()
        # server filters (recipe.add_server_input_filter & co): applied here, once
        self.filters = FilterChain("server", job.filters, job_id, job_dir / APP_DIR)
        self.filters.build(sites)
        self.ctx.results_filtered = any(
            (spec["side"], spec["direction"]) in (("client", OUTPUT), ("server", INPUT))
            for spec in job.filters
        )
        self._task_names: dict[str, str] = {}  # task id -> name, for server input filters

    def attach(self, endpoint: Endpoint) -> None:
        """Handle the sites' topics on ``endpoint``."""
        endpoint.register_handler(Topic.GET_TASK, self._get_task)
        endpoint.register_handler(Topic.SUBMIT_RESULT, self._submit)
        endpoint.register_handler(Topic.METRICS, self._metrics)
        endpoint.register_handler(Topic.SITE_FAILED, self._site_failed)
        endpoint.register_handler(Topic.SITE_DONE, self._site_done)
        self.ctx.tunnels.attach(endpoint)

    def _get_task(self, sender: str, payload: Any) -> Any:
        wait = float(payload.get("wait", 1.0)) if isinstance(payload, dict) else 1.0
        task = self.board.next_task(sender, wait)
        if self.filters and isinstance(task, Task):
            self._task_names[task.task_id] = task.name
            task.data = self.filters.apply(OUTPUT, task.name, sender, task.data)
        return task

    def _submit(self, sender: str, result: Any) -> bool:
        if not isinstance(result, TaskResult) or result.site != sender:
            raise JobError(f"{sender} submitted a malformed result")
        name = self._task_names.pop(result.task_id, "") if self.filters else ""
        if name:
            result.data = self.filters.apply(INPUT, name, sender, result.data)
        if self.offload_dir is not None and result.data is not None and result.data.params:
            # free the site now: its tensors wait on the server's disk until aggregation
            result.data.params = offload(result.data.params, self.offload_dir / result.task_id)
        accepted = self.board.submit(result)
        if not accepted:
            self.log.warning(
                "ignored a late or unknown result from %s (task %s)", sender, result.task_id
            )
            if result.data is not None:
                release_all(result.data.params)
        return accepted

    def _metrics(self, sender: str, records: Any) -> bool:
        if not isinstance(records, list) or not all(isinstance(r, MetricRecord) for r in records):
            raise JobError(f"{sender} sent malformed metrics")
        for record in records:
            record.site = sender
        self.sink.add(records)
        return True

    def _site_failed(self, sender: str, payload: Any) -> bool:
        reason = str(payload.get("reason", "unknown")) if isinstance(payload, dict) else "unknown"
        self.log.error("site %s failed: %s", sender, reason)
        self.board.fail_site(sender, reason)
        return True

    def _site_done(self, sender: str, payload: Any) -> bool:
        self.log.info("site %s finished its script", sender)
        self.board.site_finished(sender)
        return True

    def run(self) -> None:
        """Run every workflow; never raises: the outcome lands in ``status`` and ``message``."""
        self.status = Status.RUNNING
        self.log.info(
            "job %s (%s) started on %s", self.job.name, self.job_id, ", ".join(self.board.sites)
        )
        try:
            for index, spec in enumerate(self.job.workflows):
                controller = load_target(spec["target"])(**spec.get("args", {}))
                self.ctx.state["workflow_index"] = index  # its checkpoint's folder
                controller.run(self.ctx)
            self.status = Status.COMPLETED
        except JobAborted as exc:
            self.status, self.message = Status.ABORTED, str(exc)
        except JobError as exc:
            self.status, self.message = Status.EXECUTION_EXCEPTION, str(exc)
        except Exception as exc:
            self.status = Status.EXECUTION_EXCEPTION
            self.message = f"server: {describe_exception(exc)}"
        finally:
            self.board.end(self.message or "job finished", aborted=self.status == Status.ABORTED)
            self.ctx.tunnels.close_all()
            self.sink.close(ok=self.status == Status.COMPLETED)
            if self.offload_dir is not None:
                shutil.rmtree(self.offload_dir, ignore_errors=True)
            if self.status == Status.COMPLETED:
                self.log.info("job %s completed", self.job_id)
            else:
                self.log.error("job %s ended %s: %s", self.job_id, self.status, self.message)
            self.done.set()

    def abort(self, reason: str = "aborted by the user") -> None:
        self.board.end(reason, aborted=True)
