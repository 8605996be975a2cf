"""Run a site's training script in this process (its own thread, or a greenlet on a shared
carrier thread), with its own Client API session."""

from __future__ import annotations

import builtins
import contextlib
import contextvars
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
from ember.common.carriers import Carrier
from ember.runtime.script_argv import thread_argv
from ember.streaming import StreamNode, bind_node

_path_lock = threading.Lock()
_route_lock = threading.Lock()

#: ``sink(line, stream_name)``: where a site thread's complete output lines go
LineSink = Callable[[str, str], None]

#: the longest partial line kept before it is passed on as a line of its own
MAX_PARTIAL = 64 * 1024


class _Routing:
    """Where one script's (or thread's) output goes, and the partial lines it holds."""

    __slots__ = ("busy", "partial", "sink")

    def __init__(self, sink: LineSink | None) -> None:
        self.sink = sink
        self.partial: dict[str, str] = {}
        self.busy = False


# per context: a site's script (its thread or its greenlet), or any other thread
_routing: contextvars.ContextVar[_Routing | None] = contextvars.ContextVar(
    "ember_output_routing", default=None
)


def _here() -> _Routing:
    routing = _routing.get()
    if routing is None:
        routing = _Routing(None)
        _routing.set(routing)
    return routing


class ThreadRoutedStream(io.TextIOBase):
    """``sys.stdout`` / ``sys.stderr`` for a process whose threads run sites' scripts.

    In a site's script (:func:`route_output`) writes are cut into lines, each passed whole
    to that site's sink (its log and the console, prefixed by the site), so two sites'
    prints never share a line. Other threads write to the original stream as before.
    Threads a script starts itself are not its site's: their output is the process's.
    """

    def __init__(self, original: TextIO, name: str) -> None:
        super().__init__()
        self.original = original
        self.name = name

    def write(self, text: str) -> int:
        here = _here()
        sink = here.sink
        if here.busy:  # what a sink itself writes: straight through
            return self.original.write(text)
        key = self.name
        if sink is None:
            console = _console
            if console is None:
                return self.original.write(text)
            sink, key = (lambda line, name: console(line)), f"other-{self.name}"
        partial = here.partial
        *lines, rest = (partial.get(key, "") + text).split("\n")
        if len(rest) > MAX_PARTIAL:
            lines.append(rest)
            rest = ""
        partial[key] = rest
        here.busy = True
        try:
            for line in lines:
                sink(line, self.name)
        finally:
            here.busy = False
        return len(text)

    def flush(self) -> None:
        routing = _routing.get()
        if (routing is None or routing.sink is None) and _console is None:
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
    """Send the calling script's (or thread's) stdout/stderr lines to ``sink`` (None: back
    to the process's), passing on a last partial line first."""
    previous = _routing.get()
    if previous is not None and previous.sink is not None:
        for name, rest in previous.partial.items():
            if rest and name in ("stdout", "stderr"):
                previous.sink(rest, name)
    _routing.set(_Routing(sink))


def describe_exception(exc: BaseException) -> str:
    """``Type: message`` plus the traceback, for logs and job status."""
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return f"{type(exc).__name__}: {exc}\n{tb}"


def compile_script(script: Path) -> CodeType:
    """Compile a training script once for all the sites that run it in this process."""
    return compile(script.read_bytes(), str(script), "exec")


class InProcessSite:
    """Runs ``script`` as ``__main__`` with ``session`` bound to it: in a thread of its own,
    or as a greenlet on ``carrier`` (a thread shared with other sites' scripts, see
    :mod:`ember.common.carriers`)."""

    def __init__(
        self,
        session: ClientSession,
        script: Path,
        args: str,
        code: CodeType,
        node: StreamNode | None = None,
        echo: Callable[[str, str], None] | None = None,
        carrier: Carrier | None = None,
    ) -> None:
        self.session = session
        self.echo = echo
        self.node = node
        self.script = script
        self.code = code
        self.args = args
        self.carrier = carrier
        self._returned = threading.Event()
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
        if self.carrier is not None:
            self.carrier.spawn(self._run, self._returned.set)
        else:
            threading.Thread(
                target=self._script_thread, name=f"ember-{self.session.site}", daemon=True
            ).start()

    def _script_thread(self) -> None:
        try:
            self._run()
        finally:
            self._returned.set()

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
        self._argv_proxy.set_for_script(self._argv)
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
            self._argv_proxy.set_for_script(None)
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
        """Wait up to ``timeout`` s for the script to return; whether it has."""
        return self._returned.wait(timeout)
