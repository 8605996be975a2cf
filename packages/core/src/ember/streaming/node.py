"""A node's download service: its downloader, its fetcher and the topics they answer."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from typing import Any

from ember.config import get_setting, setting_timeout
from ember.streaming.downloader import Downloader
from ember.streaming.errors import StreamingError
from ember.streaming.fetcher import CHUNK, DONE, MANIFEST, Fetcher, Request


class StreamNode:
    """Everything one node (the server, a site) needs to offer and pull data."""

    def __init__(self, name: str, request: Request) -> None:
        self.name = name
        self.enabled = bool(get_setting("streaming.enabled"))
        self.min_tensor_bytes = int(get_setting("streaming.min_tensor_bytes"))
        # the timeouts remember their settings, so a failure can say which one to change
        self.downloader = Downloader(name, setting_timeout("streaming.transaction_timeout"))
        self.fetcher = Fetcher(
            name,
            request,
            int(get_setting("streaming.chunk_size")),
            setting_timeout("streaming.per_request_timeout"),
            int(get_setting("streaming.max_retries")),
            in_flight=int(get_setting("streaming.chunks_in_flight")),
        )

    forward: Callable[[str, str, Any], Any] | None = None
    """``forward(sender, topic, payload)``: where requests for downloads this node does not
    hold go (a site passes them to its script's process)."""

    def attach(self, endpoint: Any) -> None:
        """Serve this node's downloads on ``endpoint`` (anything with ``register_handler``)."""
        endpoint.register_handler(MANIFEST, self._manifest)
        endpoint.register_handler(CHUNK, self._chunk)
        endpoint.register_handler(DONE, self._done)

    def _forwarded(self, sender: str, topic: str, payload: Any) -> Any:
        if self.forward is not None and not self.downloader.has(str(payload.get("ref"))):
            return self.forward(sender, topic, payload)
        return None

    def handle(self, sender: str, topic: str, payload: Any) -> Any:
        """Answer one download request (what a relay forwards here)."""
        handler = {MANIFEST: self._manifest, CHUNK: self._chunk, DONE: self._done}.get(topic)
        if handler is None:
            return {"error": f"unknown download topic {topic!r}"}
        return handler(sender, payload)

    def _manifest(self, sender: str, payload: Any) -> Any:
        if (reply := self._forwarded(sender, MANIFEST, payload)) is not None:
            return reply
        try:
            return self.downloader.manifest(str(payload["ref"]), sender)
        except StreamingError as exc:
            return {"error": str(exc)}

    def _chunk(self, sender: str, payload: Any) -> Any:
        if (reply := self._forwarded(sender, CHUNK, payload)) is not None:
            return reply
        try:
            return self.downloader.chunk(
                str(payload["ref"]),
                str(payload["item"]),
                int(payload["offset"]),
                int(payload["length"]),
                sender,
            )
        except StreamingError as exc:
            return {"error": str(exc)}

    def pieces(
        self, sender: str, ref: str, item: str, offset: int, piece: int
    ) -> tuple[int, Iterator[bytes | bytearray | memoryview]]:
        """An item's size and its bytes from ``offset`` on for ``sender`` (what a data link
        streams); a download this node does not hold is read through its forward (a
        relaying site), chunk by chunk."""
        if self.forward is None or self.downloader.has(ref):
            return self.downloader.pieces(ref, item, offset, piece)
        step = self.fetcher.chunk_size

        def read(at: int) -> tuple[bytes | bytearray | memoryview, int]:
            payload = {"ref": ref, "item": item, "offset": at, "length": step}
            reply = self._forwarded(sender, CHUNK, payload)
            if isinstance(reply, dict) and "error" in reply:
                raise StreamingError(str(reply["error"]))
            data = reply.get("data") if isinstance(reply, dict) else None
            size = reply.get("size") if isinstance(reply, dict) else None
            if not isinstance(data, bytes | bytearray | memoryview) or not isinstance(size, int):
                raise StreamingError(f"malformed reply from the relay for {ref} item {item}")
            if zlib.crc32(data) != reply.get("crc") or (not data and at < size):
                raise StreamingError(f"corrupt chunk from the relay for {ref} item {item}")
            return data, size

        first, size = read(offset)

        def relayed() -> Iterator[bytes | bytearray | memoryview]:
            data, at = first, offset
            while True:
                yield data
                at += len(data)
                if at >= size:
                    return
                data, _ = read(at)

        return size, relayed()

    def _done(self, sender: str, payload: Any) -> Any:
        if (reply := self._forwarded(sender, DONE, payload)) is not None:
            return reply
        item = payload.get("item")
        self.downloader.done(str(payload["ref"]), sender, None if item is None else str(item))
        return True

    def close(self) -> None:
        self.downloader.close()
