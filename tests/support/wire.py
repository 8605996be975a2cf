"""A fetcher wired to a downloader in one process, with faults a test can inject."""

from __future__ import annotations

from typing import Any

from ember.streaming import Downloader, Fetcher

KIB = 1024


class Wire:
    """Connects a fetcher to a downloader in-process, with faults a test can inject."""

    def __init__(self, downloader: Downloader) -> None:
        from ember.streaming.node import StreamNode

        self.node = StreamNode.__new__(StreamNode)
        self.node.downloader = downloader
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.corrupt: set[int] = set()  # indexes of calls whose data is flipped
        self.drop: set[int] = set()  # indexes of calls that fail like a dropped connection

    def __call__(self, target: str, topic: str, payload: Any, timeout: float) -> Any:
        index = len(self.calls)
        self.calls.append((topic, dict(payload)))
        if index in self.drop:
            raise ConnectionError("connection reset by peer")
        handler = {
            "stream.manifest": self.node._manifest,
            "stream.chunk": self.node._chunk,
            "stream.done": self.node._done,
        }[topic]
        reply = handler("receiver", payload)
        if index in self.corrupt and isinstance(reply, dict) and reply.get("data"):
            data = bytearray(reply["data"])
            data[len(data) // 2] ^= 0xFF
            reply = {**reply, "data": bytes(data)}
        return reply


def fetcher_for(wire: Wire, chunk: int = 4 * KIB, retries: int = 3, in_flight: int = 1) -> Fetcher:
    return Fetcher("receiver", wire, chunk, 5.0, retries, in_flight=in_flight)
