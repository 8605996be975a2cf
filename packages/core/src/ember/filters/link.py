"""The site side's one place for filters: a wrapper of the site's link to the server."""

from __future__ import annotations

from typing import Any

import numpy as np

from ember.common.messages import MetricRecord, Task, TaskResult
from ember.common.model import FLModel
from ember.filters.base import INPUT, OUTPUT, replace_params
from ember.filters.chain import FilterChain, materialize


class FilterLink:
    """A ``ServerLink`` applying a site's :class:`FilterChain`: client input filters to each
    task's data as it arrives, client output filters to each result before it is sent.
    It sits right above the transport, under the site workflow and the script (in a thread
    or its own process), so what it drops never reaches the wire."""

    def __init__(self, inner: Any, chain: FilterChain, site: str, fetcher: Any = None) -> None:
        self.inner = inner
        self.chain = chain
        self.site = site
        self.fetcher = fetcher
        self._tasks: dict[str, tuple[str, FLModel | None]] = {}  # task id -> (name, received)

    def get_task(self, wait: float) -> Task | str | None:
        task = self.inner.get_task(wait)
        if not isinstance(task, Task):
            return task  # type: ignore[no-any-return]
        data = self.chain.apply(INPUT, task.name, self.site, task.data, fetcher=self.fetcher)
        keep = self.chain.wants_received(task.name, self.site)
        if keep and data is not None:
            data = materialize(data, self.fetcher)
            # the script may train on these arrays in place: keep our own copy as the base
            received: FLModel | None = replace_params(
                data, {k: np.array(v, copy=True) for k, v in (data.params or {}).items()}
            )
        else:
            received = None
        task.data = data
        self._tasks[task.task_id] = (task.name, received)
        return task

    def submit_result(self, result: TaskResult) -> bool:
        name, received = self._tasks.pop(result.task_id, ("", None))
        if name:
            result.data = self.chain.apply(
                OUTPUT, name, self.site, result.data, received=received, fetcher=self.fetcher
            )
        return bool(self.inner.submit_result(result))

    def log_metrics(self, records: list[MetricRecord]) -> None:
        self.inner.log_metrics(records)

    def report_failure(self, reason: str) -> None:
        self.inner.report_failure(reason)

    def report_done(self) -> None:
        self.inner.report_done()

    def __getattr__(self, name: str) -> Any:  # what else the inner link offers
        return getattr(self.inner, name)
