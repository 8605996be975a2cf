"""One site's Client API state: the task in hand, the job's config, the link to the server."""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import numpy as np

from ember.client.formats import NUMPY, Converter, get_converter, result_converter
from ember.client.link import ServerLink
from ember.client.slots import WorkSlots
from ember.common.messages import MetricRecord, Task, TaskName, TaskResult
from ember.common.model import FLModel, ParamsType
from ember.errors import EmberError
from ember.streaming import buffers
from ember.streaming.lazy import resolve_deferred


class ClientAPIError(EmberError, RuntimeError):
    """The Client API was used out of order (``send`` before ``receive``, ...)."""


class ClientSession:
    """The state behind ``ember.client``'s functions for one site."""

    def __init__(
        self,
        site: str,
        job_id: str,
        link: ServerLink,
        config: dict[str, Any],
        poll_interval: float,
        slots: WorkSlots | None = None,
        log: logging.Logger | None = None,
    ) -> None:
        self.site = site
        self.job_id = job_id
        self.link = link
        self.config = config
        self.poll_interval = poll_interval
        self.task: Task | None = None
        self.ended = False
        self.initialized = False
        self.rounds_sent = 0
        self._received_params: dict[str, Any] | None = None
        self._slots = slots
        self.logger = log or logging.getLogger(f"ember.site.{site}")
        self._holding_slot = False
        self.params_format = str(config.get("params_format") or NUMPY)
        self._to_script: Converter | None = None
        self._from_script: Converter | None = result_converter(self.params_format)
        # launch_once=False: this process was started for one task; once its result is
        # sent the session is over (is_running() False, receive() None) and the script ends
        self.one_task = config.get("launch_once") is False

    def _acquire_slot(self) -> None:
        """Hold one of ``num_threads`` work slots while a task is in hand."""
        if self._slots is not None and not self._holding_slot:
            self._slots.acquire(self.site)
            self._holding_slot = True

    def release_slot(self) -> None:
        if self._slots is not None and self._holding_slot:
            self._holding_slot = False
            self._slots.release()

    def _fetch(self, timeout: float | None) -> Task | None:
        """Wait for the next task (or the end of the job)."""
        buffers.prepare_next()  # while waiting: memory for the next model, if it needs new
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.ended:
            wait = self.poll_interval
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
                if wait <= 0:
                    return None
            got = self.link.get_task(wait)
            if got == "END":
                self.ended = True
            elif isinstance(got, Task):
                self.task = got
                round_ = got.data.current_round if got.data is not None else None
                self.logger.info("received task %s (round %s)", got.name, round_)
                self._acquire_slot()
                if got.data is not None:
                    # a site that waits for a work slot receives references: the data is
                    # pulled now that it may work, so waiting sites hold no model copies
                    got.data.params = resolve_deferred(got.data.params)
                    got.data.meta = resolve_deferred(got.data.meta)
                return got
        return None

    def is_running(self) -> bool:
        if self.task is None and not self.ended:
            self._fetch(None)
        return not self.ended

    def receive(self, timeout: float | None = None) -> FLModel | None:
        if self.task is None and not self._fetch(timeout):
            self.release_slot()
            return None
        assert self.task is not None
        model = self.task.data or FLModel()
        exchanged = model.params
        if model.params and self.params_format != NUMPY:
            if self._to_script is None:
                self._to_script = get_converter(NUMPY, self.params_format)
            if self._to_script is not None:
                model.params = self._to_script(model.params)
        # a DIFF is taken in the format the result travels in
        self._received_params = exchanged if self._from_script is not None else model.params
        return model

    def send(self, model: FLModel, clear_cache: bool = True) -> None:
        if self.task is None:
            raise ClientAPIError(
                f"{self.site}: flare.send() was called without a task in hand; call "
                "flare.receive() first"
            )
        if not isinstance(model, FLModel):
            raise ClientAPIError(f"flare.send() takes an FLModel, not {type(model).__name__}")
        if self._from_script is not None and model.params:
            model = dataclasses.replace(model, params=self._from_script(model.params))
        if self.task.name == TaskName.TRAIN:
            model = self._as_transfer_type(model)
        result = TaskResult(task_id=self.task.task_id, site=self.site, data=model)
        self.link.submit_result(result)
        self.logger.info("sent the result of task %s", self.task.name)
        self.release_slot()
        if clear_cache:
            self.task = None
            self._received_params = None
        if self.one_task:
            self.ended = True
        self.rounds_sent += 1
        gc_rounds = int(self.config.get("client_memory_gc_rounds") or 0)
        if gc_rounds and self.rounds_sent % gc_rounds == 0:
            from ember.streaming.memory import release_memory

            release_memory(cuda=self.config.get("cuda_empty_cache", True) is not False)

    def _as_transfer_type(self, model: FLModel) -> FLModel:
        wanted = self.config.get("params_transfer_type", "FULL")
        if wanted != ParamsType.DIFF.value or model.params_type == ParamsType.DIFF:
            return model
        if not model.params or self._received_params is None:
            return model
        diff = {}
        for key, value in model.params.items():
            base = self._received_params.get(key)
            if base is None:
                raise ClientAPIError(
                    f"{self.site}: cannot send a DIFF for {key!r}, which the "
                    "received model did not have"
                )
            diff[key] = _subtract(value, base)
        return FLModel(
            params_type=ParamsType.DIFF,
            params=diff,
            metrics=model.metrics,
            meta=model.meta,
            current_round=model.current_round,
            total_rounds=model.total_rounds,
            start_round=model.start_round,
        )

    def task_name(self) -> str | None:
        if self.task is None and not self.ended:
            self._fetch(None)
        return self.task.name if self.task else None

    def log(self, kind: str, tag: str, value: Any, step: int | None) -> None:
        self.link.log_metrics([MetricRecord(self.site, kind, tag, value, step)])


def _subtract(value: Any, base: Any) -> Any:
    """``value - base`` for arrays or tensors alike (mixed: as numpy)."""
    if type(value) is type(base):
        return value - base
    return np.subtract(np.asarray(value), np.asarray(base))
