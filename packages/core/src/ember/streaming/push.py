"""Push-style file streaming (logs, result files): the sender writes chunks to a receiver.

Pull (the downloader) suits data many receivers fetch at their own pace; a log or a result
file has one destination, so its owner pushes it: ``open``, ``chunk`` (N times) (each with its
CRC-32, retried on failure), ``close`` with the SHA-256 of the whole file. The receiver
writes under its own root, in ``<root>/<sender>/<name>``, and renames into place only when
the digest matches.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import zlib
from pathlib import Path, PurePosixPath
from typing import Any

from ember.common.ids import random_hex_id
from ember.streaming.errors import StreamingError
from ember.streaming.fetcher import Request

OPEN = "stream.push.open"
CHUNK = "stream.push.chunk"
CLOSE = "stream.push.close"


def _safe_name(name: Any) -> PurePosixPath:
    path = PurePosixPath(str(name))
    if not str(name) or path.is_absolute() or ".." in path.parts or "\\" in str(name):
        raise StreamingError(f"refusing to receive a file named {name!r}: use a relative path")
    return path


class FileReceiver:
    """Accepts pushed files under ``root``; attach it to a node's endpoint."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._open: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def attach(self, endpoint: Any) -> None:
        endpoint.register_handler(OPEN, self._on_open)
        endpoint.register_handler(CHUNK, self._on_chunk)
        endpoint.register_handler(CLOSE, self._on_close)

    def _on_open(self, sender: str, payload: Any) -> Any:
        try:
            dest = self.root / _safe_name(sender) / _safe_name(payload["name"])
        except StreamingError as exc:
            return {"error": str(exc)}
        dest.parent.mkdir(parents=True, exist_ok=True)
        stream_id = random_hex_id()
        tmp = dest.with_name(dest.name + f".{stream_id}.part")
        handle = open(tmp, "wb")  # noqa: SIM115 (closed by _on_close)
        with self._lock:
            self._open[stream_id] = {"sender": sender, "dest": dest, "tmp": tmp, "file": handle}
        return stream_id

    def _entry(self, sender: str, stream_id: Any) -> dict[str, Any]:
        entry = self._open.get(str(stream_id))
        if entry is None or entry["sender"] != sender:
            raise StreamingError(f"no open upload {stream_id} from {sender}")
        return entry

    def _on_chunk(self, sender: str, payload: Any) -> Any:
        try:
            entry = self._entry(sender, payload["id"])
        except StreamingError as exc:
            return {"error": str(exc)}
        data = payload["data"]
        if not isinstance(data, bytes) or zlib.crc32(data) != payload["crc"]:
            return {"retry": "checksum mismatch"}
        entry["file"].seek(int(payload["offset"]))
        entry["file"].write(data)
        return True

    def _on_close(self, sender: str, payload: Any) -> Any:
        with self._lock:
            try:
                entry = self._entry(sender, payload["id"])
            except StreamingError as exc:
                return {"error": str(exc)}
            del self._open[str(payload["id"])]
        entry["file"].close()
        digest = hashlib.sha256(entry["tmp"].read_bytes()).hexdigest()
        if digest != payload["sha256"]:
            entry["tmp"].unlink(missing_ok=True)
            return {"error": f"upload of {entry['dest'].name} is corrupt (SHA-256 mismatch)"}
        os.replace(entry["tmp"], entry["dest"])
        return str(entry["dest"])


def push_file(
    request: Request,
    target: str,
    path: str | Path,
    name: str | None = None,
    chunk_size: int = 2 << 20,
    timeout: float = 60.0,
    max_retries: int = 3,
) -> str:
    """Send the file at ``path`` to ``target``; returns where the receiver stored it."""
    path = Path(path)

    def call(topic: str, payload: dict[str, Any]) -> Any:
        problems = []
        for _ in range(max_retries + 1):
            try:
                reply = request(target, topic, payload, timeout)
            except Exception as exc:
                problems.append(f"{type(exc).__name__}: {exc}")
                continue
            if isinstance(reply, dict) and "error" in reply:
                raise StreamingError(str(reply["error"]))
            if isinstance(reply, dict) and "retry" in reply:
                problems.append(str(reply["retry"]))
                continue
            return reply
        raise StreamingError(
            f"pushing {path.name} to {target} failed after {max_retries + 1} "
            f"attempts: {'; '.join(problems[-3:])}"
        )

    stream_id = call(OPEN, {"name": name or path.name, "size": path.stat().st_size})
    digest = hashlib.sha256()
    ok = False
    try:
        with open(path, "rb") as f:
            offset = 0
            while data := f.read(chunk_size):
                digest.update(data)
                call(
                    CHUNK,
                    {"id": stream_id, "offset": offset, "data": data, "crc": zlib.crc32(data)},
                )
                offset += len(data)
        stored = call(CLOSE, {"id": stream_id, "sha256": digest.hexdigest()})
        ok = True
        return str(stored)
    finally:
        if not ok:
            with contextlib.suppress(Exception):
                request(target, CLOSE, {"id": stream_id, "sha256": ""}, timeout)
