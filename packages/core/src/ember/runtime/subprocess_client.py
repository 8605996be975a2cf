"""The child side of a subprocess site: a ``ServerLink`` over the local socket."""

from __future__ import annotations

import os
import socket
import threading
from typing import Any

from ember.client.session import ClientSession
from ember.config import get_setting
from ember.runtime.ipc import recv_frame, send_frame
from ember.runtime.messages import MetricRecord, Task, TaskResult

ENV_ENDPOINT = "EMBER_CLIENT_ENDPOINT"
ENV_TOKEN = "EMBER_CLIENT_TOKEN"


class SocketLink:
    """Forwards every request to the parent site process, one at a time."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._lock = threading.Lock()
        self.max_frame = int(get_setting("fobs.max_message_bytes"))

    def _call(self, request: dict[str, Any]) -> Any:
        with self._lock:
            send_frame(self.sock, request)
            return recv_frame(self.sock, self.max_frame)

    def get_task(self, wait: float) -> Task | str | None:
        return self._call({"op": "get_task", "wait": wait})  # type: ignore[no-any-return]

    def submit_result(self, result: TaskResult) -> bool:
        return bool(self._call({"op": "submit_result", "result": result}))

    def log_metrics(self, records: list[MetricRecord]) -> None:
        self._call({"op": "metrics", "records": records})

    def report_failure(self, reason: str) -> None:
        """The parent reports failures from the exit status; nothing to send."""

    def report_done(self) -> None:
        """The parent reports the end from the exit status; nothing to send."""


def connect_from_env() -> ClientSession:
    """Connect to the site that started this process and return the session."""
    host, _, port = os.environ[ENV_ENDPOINT].rpartition(":")
    sock = socket.create_connection(
        (host, int(port)), timeout=float(get_setting("runtime.subprocess_connect_timeout"))
    )
    sock.settimeout(None)
    send_frame(sock, {"token": os.environ.get(ENV_TOKEN, "")})
    hello = recv_frame(sock, 1 << 24)
    return ClientSession(
        hello["site"], hello["job_id"], SocketLink(sock), hello["config"], hello["poll_interval"]
    )
