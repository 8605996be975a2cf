"""How a client session talks to the server: the ``ServerLink`` protocol and its transports."""

from __future__ import annotations

from typing import Any, Protocol

from ember.common.messages import MetricRecord, Task, TaskResult

SERVER = "server"


class Topic:
    """Topics the server handles for its sites."""

    GET_TASK = "get_task"
    SUBMIT_RESULT = "submit_result"
    METRICS = "metrics"
    SITE_FAILED = "site_failed"
    SITE_DONE = "site_done"


class ServerLink(Protocol):
    """A site's requests to the server."""

    def get_task(self, wait: float) -> Task | str | None:
        """The next task, ``"END"`` when the job is over, or None if none came in ``wait`` s."""
        ...

    def submit_result(self, result: TaskResult) -> bool: ...

    def log_metrics(self, records: list[MetricRecord]) -> None: ...

    def report_failure(self, reason: str) -> None: ...

    def report_done(self) -> None: ...


class TransportLink:
    """A :class:`ServerLink` over the messaging API (any transport with ``request``)."""

    def __init__(self, transport: Any, site: str) -> None:
        self.transport = transport
        self.site = site

    def _request(self, topic: str, payload: Any) -> Any:
        return self.transport.request(self.site, SERVER, topic, payload)

    def get_task(self, wait: float) -> Task | str | None:
        return self._request(Topic.GET_TASK, {"wait": wait})  # type: ignore[no-any-return]

    def submit_result(self, result: TaskResult) -> bool:
        return bool(self._request(Topic.SUBMIT_RESULT, result))

    def log_metrics(self, records: list[MetricRecord]) -> None:
        self._request(Topic.METRICS, records)

    def report_failure(self, reason: str) -> None:
        self._request(Topic.SITE_FAILED, {"reason": reason})

    def report_done(self) -> None:
        self._request(Topic.SITE_DONE, {})
