"""Per-node log files: ``log.txt`` (text) and ``log.jsonl`` (JSON lines) in each node's
folder; and live streaming of a site's log files to the server while a job runs."""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import re
import sys
import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonLinesFormatter(logging.Formatter):
    """One JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def _open_files_limit() -> int:
    """A quarter of the process's open-file limit, between 128 and 4096."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError, ValueError):
        return 128
    if soft == resource.RLIM_INFINITY:
        return 4096
    return max(128, min(4096, soft // 4))


#: how many site log files the writer keeps open at once (the least recently written are
#: closed): a quarter of the process's open-file limit, between 128 and 4096
MAX_OPEN_LOG_FILES = _open_files_limit()


class _LogWriter:
    """Writes the records of every site's log files from one thread of the process.

    A site's script only appends its line to a queue (a ``deque``: no lock taken, so
    thousands of sites on a few threads do not queue up behind each other or behind the
    disk); it wakes the writer only when the writer has run out of lines. The writer takes
    what is queued in one go, appends each file's lines with one write, and keeps at most
    ``limit`` files open: a simulation of 10,000 sites holds neither 20,000 files open nor
    a thread per site for its logs. A file's folder is made when its first line is written.
    Lines reach the disk within moments, in the order they were logged; :meth:`flush`
    waits until everything logged before it is written. The thread runs while a handler is
    open (and until what they queued is written)."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._queue: deque[tuple[str, str]] = deque()  # (path, text); ("", "") wakes only
        self._lock = threading.Lock()  # the writer's state below, never the queue
        self._work = threading.Condition(self._lock)
        self._done = threading.Condition(self._lock)
        self._idle = False  # the writer waits for lines: a write must wake it
        self._marks = itertools.count(1)  # flush marks, in the order flushes began
        self._written = 0  # the last flush mark the writer passed
        self._users = 0  # open handlers
        self._closing: set[str] = set()  # files whose handler closed: closed once written
        self._thread: threading.Thread | None = None
        self._fds: OrderedDict[str, int] = OrderedDict()  # the writer thread's only

    def register(self) -> None:
        with self._lock:
            self._users += 1
            if self._thread is None:
                thread = threading.Thread(target=self._run, name="ember-log-writer", daemon=True)
                try:
                    thread.start()
                except RuntimeError:  # at interpreter shutdown: lines are written here
                    return
                self._thread = thread

    def unregister(self, path: str) -> None:
        """A handler of ``path`` closed: the file is closed once its lines are written
        (:meth:`flush` waits for that)."""
        with self._lock:
            self._users -= 1
            self._closing.add(path)
        self._queue.append(("", ""))
        self._wake()

    def write(self, path: str, text: str) -> None:
        self._queue.append((path, text))
        if self._idle or self._thread is None:
            self._wake()

    def _wake(self) -> None:
        with self._lock:
            if self._thread is None:  # no writer (at interpreter shutdown): write here
                self._write_batch(self._take())
                self._close_files(self._closing, every=self._users <= 0)
                self._closing = set()
            elif self._idle:
                self._work.notify()

    def _take(self) -> list[tuple[str, str]]:
        """Everything queued so far, in order."""
        batch: list[tuple[str, str]] = []
        queue = self._queue
        while queue:
            batch.append(queue.popleft())
        return batch

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every line queued before this call is written; False on timeout."""
        mark = next(self._marks)
        with self._lock:
            if self._thread is None or self._thread is threading.current_thread():
                return not self._queue
            self._queue.append(("", str(mark)))
            if self._idle:
                self._work.notify()
            return self._done.wait_for(lambda: self._written >= mark, timeout)

    def _run(self) -> None:
        while True:
            with self._lock:
                self._idle = True
                # a write that came before ``_idle`` was set is in the queue now; one that
                # comes after it sees ``_idle`` and wakes this wait under the lock
                while not self._queue:
                    if self._users <= 0 and not self._fds:
                        self._thread = None  # the next handler starts another writer
                        self._idle = False
                        return
                    self._work.wait()
                self._idle = False
                # the lines of a handler that closed were queued before it said so
                closing, self._closing = self._closing, set()
                last_user_gone = self._users <= 0
                batch = self._take()
            mark = self._write_batch(batch)
            self._close_files(closing, every=last_user_gone)
            with self._lock:
                if mark:
                    self._written = max(self._written, mark)
                    self._done.notify_all()

    def _write_batch(self, batch: list[tuple[str, str]]) -> int:
        """Append each file's lines of ``batch`` in one write; the last flush mark in it."""
        files: dict[str, list[str]] = {}
        mark = 0
        for path, text in batch:
            if path:
                files.setdefault(path, []).append(text)
            elif text:
                mark = max(mark, int(text))
        for path, texts in files.items():
            self._append(path, "".join(texts).encode("utf-8"))
        return mark

    def _close_files(self, paths: set[str], every: bool) -> None:
        for path in paths:
            fd = self._fds.pop(path, None)
            if fd is not None:
                os.close(fd)
        if every:
            while self._fds:
                os.close(self._fds.popitem()[1])

    def _append(self, path: str, data: bytes) -> None:
        try:
            fd = self._fds.pop(path, None)
            if fd is None:
                fd = self._open(path)
                while len(self._fds) >= self._limit:
                    os.close(self._fds.popitem(last=False)[1])
            self._fds[path] = fd
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        except OSError as exc:  # what logging.Handler.handleError does: say so, go on
            with contextlib.suppress(Exception):
                assert sys.__stderr__ is not None
                sys.__stderr__.write(f"--- ember could not write to the log {path}: {exc}\n")

    @staticmethod
    def _open(path: str) -> int:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        try:
            return os.open(path, flags, 0o644)
        except FileNotFoundError:  # the site's folder is made with its first line
            os.makedirs(os.path.dirname(path), exist_ok=True)
            return os.open(path, flags, 0o644)


_writer = _LogWriter(MAX_OPEN_LOG_FILES)


def flush_log_files(timeout: float | None = None) -> bool:
    """Wait until every site log record logged so far is in its file."""
    return _writer.flush(timeout)


class OpenPerRecordHandler(logging.FileHandler):
    """Appends each record to its file through the process's one log writer (a thread,
    at most :data:`MAX_OPEN_LOG_FILES` files open): a simulation of 1000 sites neither
    holds 2000 files open (the usual limit is 1024 per process) nor opens one per record,
    and a site's thread never waits on the disk."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, mode="a", encoding="utf-8", delay=True)
        _writer.register()
        self._registered = True

    def emit(self, record: logging.LogRecord) -> None:
        try:
            _writer.write(self.baseFilename, self.format(record) + self.terminator)
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        if self._registered:
            self._registered = False
            _writer.unregister(self.baseFilename)
        super().close()


def _file_handlers(folder: Path, hold_open: bool) -> list[logging.Handler]:
    """The text (``log.txt``) and JSON-lines (``log.jsonl``) handlers of ``folder``."""

    def handler(path: Path) -> logging.FileHandler:
        if hold_open:
            return logging.FileHandler(path, encoding="utf-8")
        return OpenPerRecordHandler(path)

    text = handler(folder / "log.txt")
    text.setFormatter(logging.Formatter(TEXT_FORMAT))
    jsonl = handler(folder / "log.jsonl")
    jsonl.setFormatter(JsonLinesFormatter())
    return [text, jsonl]


class SharedLogFiles:
    """One ``log.txt`` and ``log.jsonl`` in ``folder`` that many nodes write to (through the
    process's log writer): a simulation of 10,000 sites makes neither 10,000 folders nor
    20,000 files for its sites' logs. Each record names its node (its logger's name,
    ``ember.job.<job id>.<site>``). :meth:`close` once no node writes any more."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.handlers = _file_handlers(folder, hold_open=False)

    def close(self) -> None:
        for handler in self.handlers:
            handler.close()


class NodeLogs:
    """Attaches text and JSON-lines file handlers for one node's logger; ``close`` detaches
    them and forgets the logger (names carry the job id, so they must not accumulate).

    ``hold_open=False``: the records go through the process's one log writer, which makes
    ``folder`` with the first line (a site that never logs gets no folder). ``shared``: the
    node writes to those files instead of its own folder's (they stay open after
    :meth:`close`)."""

    def __init__(
        self,
        logger_name: str,
        folder: Path,
        level: int,
        hold_open: bool = True,
        shared: SharedLogFiles | None = None,
    ) -> None:
        if hold_open and shared is None:
            folder.mkdir(parents=True, exist_ok=True)
        self.logger = logging.getLogger(logger_name)
        self.logger.level = level  # not setLevel(): it clears a cache over every logger
        self.handlers = shared.handlers if shared else _file_handlers(folder, hold_open)
        self._owned = shared is None
        for each in self.handlers:
            self.logger.addHandler(each)

    def close(self, wait: bool = True) -> None:
        """Detach the handlers; with ``wait``, return once every record is in its file
        (``wait=False`` for many nodes at once, then :func:`flush_log_files`)."""
        for handler in self.handlers:
            self.logger.removeHandler(handler)
            if self._owned:
                handler.close()
        logging.Logger.manager.loggerDict.pop(self.logger.name, None)
        if wait:
            flush_log_files()


def forget_logger_tree(prefix: str) -> None:
    """Drop every logger (and placeholder) named ``prefix`` or below it."""
    names = [
        n for n in logging.Logger.manager.loggerDict if n == prefix or n.startswith(prefix + ".")
    ]
    for name in names:
        logging.Logger.manager.loggerDict.pop(name, None)


def resolve_level(log_config: str | dict[str, Any] | None) -> int:
    """``log_config``: None (INFO), a level name, a dictConfig dict or a JSON file with one."""
    if log_config is None:
        return logging.INFO
    from logging import config as dict_config  # only here: kept off every job's imports

    if isinstance(log_config, dict):
        dict_config.dictConfig(log_config)
        return logging.INFO
    if isinstance(log_config, str) and log_config.upper() in logging.getLevelNamesMapping():
        return logging.getLevelNamesMapping()[log_config.upper()]
    path = Path(log_config)
    if path.is_file():
        dict_config.dictConfig(json.loads(path.read_text(encoding="utf-8")))
        return logging.INFO
    raise ValueError(
        f"log_config {log_config!r} is neither a level name (DEBUG, INFO, WARNING, ERROR), a "
        "logging dictConfig dict, nor a JSON file holding one"
    )


# -- live log streaming: a site's files to the server, in order, while the job runs -------

#: the topic a site sends its new log lines on; the server's :class:`LogCollector` answers
TOPIC = "logs.lines"
#: where the server keeps the streamed files: ``<server folder>/site_logs/<site>/<file>``
SITE_LOGS = "site_logs"
_RECORD = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ (\S+): ")


def is_script_record(line: str, site: str) -> bool:
    """Whether a line of a site's ``log.txt`` is its script's output rather than one of its
    log records: a record of its ``.stdout``/``.stderr`` logger (in-process scripts), or
    not a record at all (a subprocess script's raw output, a traceback's lines)."""
    match = _RECORD.match(line)
    return match is None or match.group(1).endswith((f"{site}.stdout", f"{site}.stderr"))


#: the most bytes one batch carries (a file that grew more is sent in several batches)
MAX_BATCH = 1 << 20


def _streamable(name: Any) -> bool:
    path = PurePosixPath(str(name))
    return (
        isinstance(name, str)
        and bool(name)
        and not path.is_absolute()
        and ".." not in path.parts
        and "\\" not in name
    )


class LogStreamer:
    """Tails a site's files (``log.txt``: its log records and its scripts' output) and
    sends the complete lines they gained to the server every ``interval`` seconds.

    One thread sends, batch after batch, each with its file's sequence number: a batch is
    sent again (same number, same lines) until the server took it, so the server's copy
    grows in the order the site wrote it. :meth:`close` sends what is left, a last partial
    line included."""

    def __init__(
        self,
        site: str,
        folder: Path,
        names: list[str],
        send: Callable[[dict[str, Any]], Any],
        interval: float,
    ) -> None:
        self.site = site
        self.folder = Path(folder)
        self.names = [n for n in dict.fromkeys(names) if _streamable(n)]
        self.send = send
        self.interval = interval
        self._offsets = dict.fromkeys(self.names, 0)
        self._seq = dict.fromkeys(self.names, 0)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(
            target=self._loop, name=f"ember-{site}-log-streamer", daemon=True
        )

    def start(self) -> LogStreamer:
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.flush()

    def flush(self, final: bool = False) -> bool:
        """Send every file's new complete lines (all of it if ``final``); False if a batch
        could not be sent (it is sent again next time)."""
        flush_log_files()  # the site's records logged so far are in its files
        with self._lock:
            for name in self.names:
                while True:
                    sent = self._send_batch(name, final)
                    if sent is None:
                        break
                    if not sent:
                        return False
        return True

    def _send_batch(self, name: str, final: bool) -> bool | None:
        """One batch of ``name``: True if sent, False if it failed, None if nothing new."""
        path = self.folder / name
        try:
            size = path.stat().st_size
        except OSError:
            return None
        offset = self._offsets[name]
        if size < offset:  # the file was replaced: start over
            offset = self._offsets[name] = 0
        if size == offset:
            return None
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read(MAX_BATCH)
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            if not final and len(data) < MAX_BATCH:
                return None  # only a partial line so far
            cut = len(data)
        lines = data[:cut].decode("utf-8", errors="replace").splitlines()
        payload = {"file": name, "seq": self._seq[name], "lines": lines}
        try:
            self.send(payload)
        except Exception:  # the server is busy or gone: the same batch goes again
            return False
        self._offsets[name] = offset + cut
        self._seq[name] += 1
        return True

    def close(self) -> None:
        """Stop the thread and send what is left."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.flush(final=True)


def start_log_streaming(
    site: str, folder: Path, request: Callable[..., Any], server: str = "server"
) -> LogStreamer | None:
    """The site's :class:`LogStreamer`, started, when the job's config says so
    (``logs.stream``, ``logs.stream_files``, ``logs.stream_interval``), else None.
    ``request(sender, target, topic, payload, timeout)`` is the site's transport."""
    from ember.config import get_setting

    if not bool(get_setting("logs.stream")):
        return None
    names = [n.strip() for n in str(get_setting("logs.stream_files")).split(",") if n.strip()]
    interval = float(get_setting("logs.stream_interval"))
    timeout = max(10.0, 10 * interval)
    return LogStreamer(
        site,
        folder,
        names or ["log.txt"],
        lambda payload: request(site, server, TOPIC, payload, timeout),
        interval,
    ).start()


class LogCollector:
    """The server's end: appends each site's streamed lines to
    ``<root>/<site>/<file>`` in the order they were written, and tells ``on_lines(site,
    file, lines)`` (SimEnv's console)."""

    def __init__(
        self,
        root: Path,
        sites: list[str],
        on_lines: Callable[[str, str, list[str]], None] | None = None,
    ) -> None:
        self.root = Path(root)
        self.sites = set(sites)
        self.on_lines = on_lines
        self._next: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def attach(self, endpoint: Any) -> None:
        endpoint.register_handler(TOPIC, self._on_lines)

    def _on_lines(self, sender: str, payload: Any) -> Any:
        if sender not in self.sites:
            return {"error": f"{sender} is not a site of this job"}
        if not isinstance(payload, dict):
            return {"error": "malformed log lines"}
        name, seq, lines = payload.get("file"), payload.get("seq"), payload.get("lines")
        if (
            not _streamable(name)
            or not isinstance(seq, int)
            or not isinstance(lines, list)
            or not all(isinstance(line, str) for line in lines)
        ):
            return {"error": "malformed log lines"}
        with self._lock:
            key = (sender, str(name))
            expected = self._next.get(key, 0)
            if seq < expected:  # sent again after its reply was lost: already written
                return True
            if seq > expected:
                return {"error": f"log batch {seq} of {name} from {sender}: expected {expected}"}
            path = self.root / sender / str(name)
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as f:
                f.writelines(line + "\n" for line in lines)
            self._next[key] = seq + 1
        if self.on_lines is not None:
            self.on_lines(sender, str(name), lines)
        return True


def read_log_chunk(path: Path, offset: int, final: bool) -> tuple[str, int]:
    """The complete lines of ``path`` from byte ``offset`` (up to :data:`MAX_BATCH` bytes;
    with ``final``, a last partial line too) and the offset after them: what a follower of
    a growing log asks for next."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read(MAX_BATCH)
    except OSError:
        return "", offset
    cut = len(data) if final or len(data) == MAX_BATCH else data.rfind(b"\n") + 1
    return data[:cut].decode("utf-8", errors="replace"), offset + cut


def log_path(workspace: Path, site: str | None, name: str) -> Path:
    """Where the server keeps a job's log ``name``: its own (``site`` None) or a site's
    streamed copy; ValueError for a name that would leave the folder."""
    if not _streamable(name):
        raise ValueError(f"{name!r} is not the name of a log file (relative, no '..')")
    if site is None:
        return workspace / "server" / name
    if not _streamable(site) or "/" in site:
        raise ValueError(f"{site!r} is not a site name")
    return workspace / "server" / SITE_LOGS / site / name


class FlushingTransport:
    """A site's transport that sends its last streamed lines before it tells the server its
    script ended (``site_done``, ``site_failed``): once every site has said so, the server's
    job process may end, and lines sent after that would be lost. Everything else is the
    wrapped transport's."""

    END_TOPICS = ("site_done", "site_failed")  # ember.client.link.Topic

    def __init__(self, transport: Any, streamer: LogStreamer) -> None:
        self.transport = transport
        self.streamer = streamer

    def request(
        self, sender: str, target: str, topic: str, payload: Any, timeout: float | None = None
    ) -> Any:
        if topic in self.END_TOPICS:
            self.streamer.flush(final=True)
        return self.transport.request(sender, target, topic, payload, timeout)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)
