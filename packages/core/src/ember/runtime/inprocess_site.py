"""Run a site's training script in a thread of this process, with its own Client API session."""

from __future__ import annotations

import builtins
import shlex
import sys
import threading
import traceback
from pathlib import Path
from types import CodeType

from ember.client.api import bind_session
from ember.client.session import ClientSession
from ember.runtime.script_argv import thread_argv
from ember.streaming import StreamNode, bind_node

_path_lock = threading.Lock()


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
    ) -> None:
        self.session = session
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
        self.thread.start()

    def _run(self) -> None:
        link = self.session.link
        bind_session(self.session)
        bind_node(self.node)
        self._argv_proxy.set_for_thread(self._argv)
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
