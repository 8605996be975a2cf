"""Run a site's training script in a thread of this process, with its own Client API session."""

from __future__ import annotations

import builtins
import contextlib
import io
import logging
import shlex
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from types import CodeType
from typing import Any, TextIO

from ember.client.api import bind_session
from ember.client.session import ClientSession
from ember.runtime.script_argv import thread_argv
from ember.streaming import StreamNode, bind_node

_path_lock = threading.Lock()
_route_lock = threading.Lock()
_local = threading.local()

#: ``sink(line, stream_name)``: where a site thread's complete output lines go
LineSink = Callable[[str, str], None]

#: the longest partial line kept before it is passed on as a line of its own
MAX_PARTIAL = 64 * 1024


class ThreadRoutedStream(io.TextIOBase):
    """``sys.stdout`` / ``sys.stderr`` for a process whose threads run sites' scripts.

    In a site's thread (:func:`route_output`) writes are cut into lines, each passed whole
    to that site's sink (its log and the console, prefixed by the site), so two sites'
    prints never share a line. Other threads write to the original stream as before.
    Threads a script starts itself are not its site's: their output is the process's.
    """

    def __init__(self, original: TextIO, name: str) -> None:
        super().__init__()
        self.original = original
        self.name = name

    def write(self, text: str) -> int:
        sink: LineSink | None = getattr(_local, "sink", None)
        if getattr(_local, "busy", False):  # what a sink itself writes: straight through
            return self.original.write(text)
        key = self.name
        if sink is None:
            console = _console
            if console is None:
                return self.original.write(text)
            sink, key = (lambda line, name: console(line)), f"other-{self.name}"
        partial: dict[str, str] = _local.__dict__.setdefault("partial", {})
        *lines, rest = (partial.get(key, "") + text).split("\n")
        if len(rest) > MAX_PARTIAL:
            lines.append(rest)
            rest = ""
        partial[key] = rest
        _local.busy = True
        try:
            for line in lines:
                sink(line, self.name)
        finally:
            _local.busy = False
        return len(text)

    def flush(self) -> None:
        if getattr(_local, "sink", None) is None and _console is None:
            with contextlib.suppress(ValueError):  # the original was closed under us
                self.original.flush()

    def isatty(self) -> bool:
        return bool(self.original.isatty())

    def fileno(self) -> int:
        return self.original.fileno()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return str(getattr(self.original, "encoding", "utf-8"))

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return getattr(self.original, "errors", None)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.original, name)


_console: Callable[[str], None] | None = None


def show_other_output(console: Callable[[str], None] | None) -> None:
    """While a live display is drawn (SimEnv's console), send the whole lines that threads
    of no site write to ``console`` (drawn above the display) instead of the terminal."""
    global _console
    install_output_routing()
    _console = console


def install_output_routing() -> None:
    """Make ``sys.stdout`` and ``sys.stderr`` route by thread (once per process)."""
    with _route_lock:
        if not isinstance(sys.stdout, ThreadRoutedStream):
            sys.stdout = ThreadRoutedStream(sys.stdout, "stdout")
        if not isinstance(sys.stderr, ThreadRoutedStream):
            sys.stderr = ThreadRoutedStream(sys.stderr, "stderr")


def route_output(sink: LineSink | None) -> None:
    """Send this thread's stdout/stderr lines to ``sink`` (None: back to the process's),
    passing on a last partial line first."""
    previous: LineSink | None = getattr(_local, "sink", None)
    if previous is not None:
        for name, rest in getattr(_local, "partial", {}).items():
            if rest and name in ("stdout", "stderr"):
                previous(rest, name)
    _local.sink = sink
    _local.partial = {}


def describe_exception(exc: BaseException) -> str:
    """``Type: message`` plus the traceback, for logs and job status."""
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return f"{type(exc).__name__}: {exc}\n{tb}"


def compile_script(script: Path) -> CodeType:
    """Compile a training script once for all the sites that run it in this process."""
    return compile(script.read_bytes(), str(script), "exec")


class InProcessSite:
    """A thread that runs ``script`` as ``__main__`` with ``session`` bound to it."""

    def __init__(
        self,
        session: ClientSession,
        script: Path,
        args: str,
        code: CodeType,
        node: StreamNode | None = None,
        echo: Callable[[str, str], None] | None = None,
    ) -> None:
        self.session = session
        self.echo = echo
        self.node = node
        self.script = script
        self.code = code
        self.args = args
        self.thread = threading.Thread(target=self._run, name=f"ember-{session.site}", daemon=True)
        self.error: str | None = None

    def start(self) -> None:
        argv = thread_argv()
        self._argv = [str(self.script), *shlex.split(self.args)]
        with _path_lock:
            folder = str(self.script.parent)
            if folder not in sys.path:
                sys.path.insert(0, folder)
        self._argv_proxy = argv
        install_output_routing()
        self.thread.start()

    def _output(self, line: str, stream: str) -> None:
        """One line the script printed: into the site's log files (its own handlers only: a
        handler of the root logger may itself write to this thread's stream), and to the
        console, prefixed by the site."""
        logger = self.session.logger
        record = logger.makeRecord(
            f"{logger.name}.{stream}", logging.INFO, str(self.script), 0, "%s", (line,), None
        )
        for handler in logger.handlers:
            if record.levelno >= handler.level:
                handler.handle(record)
        if self.echo is not None:
            self.echo(self.session.site, line)

    def _run(self) -> None:
        link = self.session.link
        bind_session(self.session)
        bind_node(self.node)
        self._argv_proxy.set_for_thread(self._argv)
        route_output(self._output)
        try:
            # a fresh namespace per site; sys.modules["__main__"] is left alone (runpy would
            # swap it, which races when many sites start at once)
            exec(
                self.code,
                {
                    "__name__": "__main__",
                    "__file__": str(self.script),
                    "__builtins__": builtins,
                    "__package__": None,
                    "__spec__": None,
                },
            )
        except SystemExit as exc:
            if exc.code not in (None, 0):
                self.error = f"{self.script.name} exited with status {exc.code}"
        except BaseException as exc:
            self.error = describe_exception(exc)
        finally:
            route_output(None)
            self.session.release_slot()
            bind_session(None)
            bind_node(None)
            self._argv_proxy.set_for_thread(None)
        if self.error is not None:
            self.session.logger.error("script failed: %s", self.error)
        else:
            self.session.logger.info("script %s returned", self.script.name)
        try:
            if self.error is not None:
                link.report_failure(self.error)
            else:
                link.report_done()
        except Exception:  # the job is already over; nothing is listening
            pass

    def join(self, timeout: float | None) -> bool:
        self.thread.join(timeout)
        return not self.thread.is_alive()
