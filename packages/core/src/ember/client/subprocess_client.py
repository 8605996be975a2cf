"""The child side of a subprocess site: a ``ServerLink`` and a download service over the
local socket to the site that started this process."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from typing import Any

from ember import fobs
from ember.client.channel import Channel
from ember.client.ipc import recv_frame, send_frame
from ember.client.session import ClientSession
from ember.common.messages import MetricRecord, Task, TaskResult
from ember.config import Config, get_setting, use_process_config
from ember.streaming import bind_node
from ember.streaming.lazy import resolve_relayed
from ember.streaming.node import StreamNode

ENV_ENDPOINT = "EMBER_CLIENT_ENDPOINT"
ENV_TOKEN = "EMBER_CLIENT_TOKEN"


class SocketLink:
    """The script's requests to the server, through its site."""

    def __init__(
        self,
        channel: Channel,
        node: StreamNode,
        one_task: bool = False,
        closed: threading.Event | None = None,
    ) -> None:
        self.channel = channel
        self.node = node
        # launch_once=False: this process was started for one task and ends after it
        self.one_task = one_task
        self.closed = closed or threading.Event()  # set once the site's channel closes

    def get_task(self, wait: float) -> Task | str | None:
        task = self.channel.request("get_task", {"wait": wait})
        return resolve_relayed(task, self.node.fetcher)  # type: ignore[no-any-return]

    def submit_result(self, result: TaskResult) -> bool:
        accepted = bool(self.channel.request("submit_result", {"result": result}))
        if self.one_task:
            # the server pulls the result's arrays from this process: the script, which
            # ends after this one task, must not end before they are pulled
            wait_for_downloads(self.node, self.closed)
        return accepted

    def log_metrics(self, records: list[MetricRecord]) -> None:
        self.channel.request("metrics", {"records": records})

    def report_failure(self, reason: str) -> None:
        """The site reports failures from the exit status; nothing to send."""

    def report_done(self) -> None:
        """The site reports the end from the exit status; nothing to send."""


def _offering(node: StreamNode) -> Callable[[], tuple[fobs.Context, Callable[[], None]]]:
    """Encode messages with large arrays offered by this process's download service."""

    def encode() -> tuple[fobs.Context, Callable[[], None]]:
        if not node.enabled:
            return fobs.Context(), lambda: None
        tx = node.downloader.open(receivers=1)
        ctx = fobs.Context({"stream_tx": tx, "stream_min_bytes": node.min_tensor_bytes})

        def publish() -> None:
            if tx.items:
                node.downloader.publish(tx)

        return ctx, publish

    return encode


def wait_for_downloads(node: StreamNode, closed: threading.Event) -> None:
    """Return once nothing this process offers is waiting to be pulled (an offer nobody
    pulls expires after ``streaming.transaction_timeout`` idle), or the site is gone."""
    while node.downloader.pending() and not closed.wait(0.005):
        pass


def connect_from_env() -> ClientSession:
    """Connect to the site that started this process and return the session."""
    host, _, port = os.environ[ENV_ENDPOINT].rpartition(":")
    sock = socket.create_connection(
        (host, int(port)), timeout=float(get_setting("runtime.subprocess_connect_timeout"))
    )
    sock.settimeout(None)
    send_frame(sock, {"token": os.environ.get(ENV_TOKEN, "")})
    hello = recv_frame(sock, 1 << 24)
    use_process_config(Config(hello.get("job_config") or {}))
    site = hello["site"]
    holder: dict[str, Any] = {}
    closed = threading.Event()

    def pull(target: str, topic: str, payload: Any, timeout: float | None) -> Any:
        return holder["channel"].request(
            "stream", {"target": target, "topic": topic, "payload": payload}, timeout
        )

    # offered under the site's name: the server asks the site, which asks this process
    node = StreamNode(str(hello.get("stream_owner") or site), pull)

    def serve(op: str, payload: Any) -> Any:
        if op != "serve" or not isinstance(payload, dict):
            raise ValueError(f"unknown op {op!r}")
        return node.handle(str(payload["sender"]), str(payload["topic"]), payload["payload"])

    channel = Channel(
        sock,
        serve,
        int(get_setting("fobs.max_message_bytes")),
        encode=_offering(node),
        # the reader thread keeps references; the thread that asked pulls them
        decode=lambda: fobs.Context({"relay_tensors": True}),
        name=f"ember-{site}",
        on_close=closed.set,
    )
    holder["channel"] = channel
    bind_node(node)
    one_task = hello["config"].get("launch_once") is False
    return ClientSession(
        site,
        hello["job_id"],
        SocketLink(channel, node, one_task, closed),
        hello["config"],
        hello["poll_interval"],
    )
