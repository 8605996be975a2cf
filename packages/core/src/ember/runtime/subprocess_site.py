"""Run a site's training script as a subprocess that talks FOBS to its site over a local socket.

The child is started with ``subprocess.Popen`` (exec, never a fork of this threaded
process). A token in its environment authenticates it; its output goes to the site's log.
A nonzero exit, a crash or a connection that never comes is reported as the site's failure.

With ``launch_once`` (the default) the script is started once and takes task after task in
a ``flare.receive()`` loop. Without it the site fetches each task itself and starts the
script anew for it: the script's ``flare.receive()`` gets that task and its
``flare.is_running()`` turns False once the result is sent, so it exits; a process that
exits without sending that result fails the site.
"""

from __future__ import annotations

import collections
import logging
import os
import secrets
import shlex
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ember import fobs
from ember.client.channel import Channel
from ember.client.ipc import ConnectionClosed, recv_frame, send_frame
from ember.client.link import ServerLink
from ember.common.messages import Task
from ember.config import describe_setting, get_setting
from ember.streaming.node import StreamNode

ENV_ENDPOINT = "EMBER_CLIENT_ENDPOINT"
ENV_TOKEN = "EMBER_CLIENT_TOKEN"


class SubprocessSite:
    """One site whose script runs in a child process."""

    def __init__(
        self,
        site: str,
        job_id: str,
        link: ServerLink,
        config: dict[str, Any],
        script: Path,
        args: str,
        command: str | None,
        cwd: Path,
        log_path: Path,
        log: logging.Logger,
        node: StreamNode | None,
        job_config: dict[str, Any],
        launch_once: bool = True,
        echo: Any = None,
    ) -> None:
        self.log = log
        #: ``echo(site, line)``: shows each line of the script's output (SimEnv's console)
        self.echo = echo
        self.launch_once = launch_once
        self.node = node
        self.job_config = job_config
        self.channel: Channel | None = None
        self.site = site
        self.job_id = job_id
        self.link = link
        self.config = config
        self.script = script
        self.args = args
        self.command = shlex.split(command) if command else [sys.executable, "-u"]
        self.cwd = cwd
        self.log_path = log_path
        self.token = secrets.token_hex(16)
        self.tail: collections.deque[str] = collections.deque(maxlen=40)
        self.proc: subprocess.Popen[bytes] | None = None
        self._listener: socket.socket | None = socket.create_server(("127.0.0.1", 0))
        self._stopping = False
        # launch_once=False: the task the running process handles, and whether it sent it
        self._task: Task | None = None
        self._sent = False
        self._supervisor: threading.Thread | None = None
        self._threads: list[threading.Thread] = []
        self.max_frame = int(get_setting("fobs.max_message_bytes"))
        # read here, in the thread that has the job's config (a recipe's launch_timeout
        # sets it in job_config): the accepting thread does not
        name = "runtime.subprocess_connect_timeout"
        self.connect_timeout = float(job_config.get(name, get_setting(name)))
        self._connect_timeout_desc = describe_setting(name, self.connect_timeout)
        name = "runtime.task_poll_interval"
        self.poll_interval = float(job_config.get(name, get_setting(name)))

    def start(self) -> None:
        if self.launch_once:
            if self._launch():
                self._spawn(self._watch)
        else:
            self._supervisor = self._spawn(self._run_tasks)

    def _spawn(self, target: Any) -> threading.Thread:
        thread = threading.Thread(
            target=target, name=f"ember-{self.site}-{target.__name__}", daemon=True
        )
        thread.start()
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        return thread

    def _launch(self) -> bool:
        """Start the script's process (and the threads serving it); False if it cannot."""
        if self._listener is None:  # a relaunch: a fresh socket and token for this process
            self._listener = socket.create_server(("127.0.0.1", 0))
            self.token = secrets.token_hex(16)
            self.tail.clear()
        host, port = self._listener.getsockname()[:2]
        env = {
            **os.environ,
            ENV_ENDPOINT: f"{host}:{port}",
            ENV_TOKEN: self.token,
            "EMBER_SITE_NAME": self.site,
            "EMBER_JOB_ID": self.job_id,
        }
        pythonpath = [str(self.script.parent), env.get("PYTHONPATH", "")]
        env["PYTHONPATH"] = os.pathsep.join(p for p in pythonpath if p)
        argv = [*self.command, str(self.script), *shlex.split(self.args)]
        self.cwd.mkdir(parents=True, exist_ok=True)
        try:
            self.proc = subprocess.Popen(
                argv,
                cwd=self.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                close_fds=True,
            )
        except OSError as exc:
            self._listener.close()
            self._listener = None
            self.link.report_failure(f"cannot start {shlex.join(argv)}: {exc}")
            return False
        self.log.info("started %s (pid %d)", shlex.join(argv), self.proc.pid)
        for target in (self._pump_output, self._serve):
            self._spawn(target)
        return True

    def _pump_output(self) -> None:
        assert self.proc is not None
        assert self.proc.stdout is not None
        with open(self.log_path, "ab") as log:
            for line in self.proc.stdout:  # whole lines: the script runs unbuffered (-u)
                log.write(line)
                log.flush()
                text = line.decode(errors="replace").rstrip("\r\n")
                self.tail.append(text.rstrip())
                if self.echo is not None:
                    self.echo(self.site, text)

    def _serve(self) -> None:
        timeout = self.connect_timeout
        listener, token, proc = self._listener, self.token, self.proc
        assert listener is not None
        deadline = time.monotonic() + timeout
        try:
            # another local process may reach this port first (a client re-dialling a port
            # the system gave out again): drop any connection that does not bring the
            # script's token, and wait on for the script until the connect timeout
            while True:
                conn = self._accept_script(listener, token, deadline - time.monotonic())
                if conn is not None:
                    break
                if time.monotonic() >= deadline or self._stopping:
                    if not self._stopping and proc is not None and proc.poll() is None:
                        self._fail(
                            f"{self.script.name} did not connect within "
                            f"{self._connect_timeout_desc}"
                        )
                        proc.kill()
                    return
        finally:
            listener.close()
            if self._listener is listener:
                self._listener = None
        try:
            send_frame(
                conn,
                {
                    "site": self.site,
                    # the name the script offers downloads under: this site's node
                    "stream_owner": self.node.name if self.node is not None else self.site,
                    "job_id": self.job_id,
                    "config": self.config,
                    "job_config": self.job_config,
                    "poll_interval": float(get_setting("runtime.task_poll_interval")),
                },
            )
        except (ConnectionClosed, OSError):
            conn.close()
            return
        # references in what the script sends stay references: the server pulls the data
        # from the script's process through this site (node.forward)
        self.channel = Channel(
            conn,
            self._dispatch,
            self.max_frame,
            name=f"ember-{self.site}",
            decode=lambda: fobs.Context({"relay_tensors": True}),
        )
        if self.node is not None:
            channel = self.channel
            self.node.forward = lambda sender, topic, payload: channel.request(
                "serve", {"sender": sender, "topic": topic, "payload": payload}
            )

    def _accept_script(
        self, listener: socket.socket, token: str, left: float
    ) -> socket.socket | None:
        """The next connection if it says hello with ``token`` (within ``left`` seconds);
        None for one that does not (closed) or when the time is up."""
        if left <= 0:
            return None
        listener.settimeout(left)
        try:
            conn, _ = listener.accept()
        except (TimeoutError, OSError):
            return None
        try:
            conn.settimeout(max(left, 0.001))
            hello = recv_frame(conn, 1 << 16)
            if isinstance(hello, dict) and hello.get("token") == token:
                conn.settimeout(None)
                return conn
        except (ConnectionClosed, OSError, fobs.FOBSError):
            pass
        conn.close()
        return None

    def _dispatch(self, op: str, payload: Any) -> Any:
        if not isinstance(payload, dict):
            raise ValueError("malformed request")
        if op == "get_task":
            if not self.launch_once:  # the task this process was started for, then the end
                return "END" if self._sent else self._task
            return self.link.get_task(float(payload.get("wait", 1.0)))
        if op == "submit_result":
            accepted = self.link.submit_result(payload["result"])
            if not self.launch_once:
                self._sent = True
            return accepted
        if op == "metrics":
            self.link.log_metrics(payload["records"])
            return True
        if op == "stream":  # the script pulls what another node offers, through this site
            assert self.node is not None
            return self.node.fetcher.relay(
                str(payload["target"]), str(payload["topic"]), payload["payload"]
            )
        raise ValueError(f"unknown op {op!r}")

    def _wait_exit(self) -> int:
        """Wait for the script's process to end (and its output to be logged); its code."""
        assert self.proc is not None
        rc = self.proc.wait()
        for thread in self._threads:
            if thread is not threading.current_thread() and thread.name.endswith("_pump_output"):
                thread.join(5)
        self.log.info("%s exited with code %d", self.script.name, rc)
        return rc

    def _watch(self) -> None:
        rc = self._wait_exit()
        if self._stopping and rc in (0, -9, -15):
            return
        if rc == 0:
            self.link.report_done()
        else:
            self._fail(f"{self.script.name} exited with code {rc}")

    def _run_tasks(self) -> None:
        """``launch_once=False``: fetch each task here and start the script for it."""
        while not self._stopping:
            try:
                got = self.link.get_task(self.poll_interval)
            except Exception as exc:
                if not self._stopping:
                    self._fail(f"could not get the next task for {self.script.name}: {exc}")
                return
            if got == "END":
                self.link.report_done()
                return
            if not isinstance(got, Task):
                continue
            self._task, self._sent = got, False
            round_ = got.data.current_round if got.data is not None else None
            if self._stopping or not self._launch():
                return
            rc = self._wait_exit()
            if self.channel is not None:
                self.channel.close()
                self.channel = None
            if self._stopping and rc in (0, -9, -15):
                return
            what = f"task {got.name} (round {round_})"
            if rc != 0:
                self._fail(f"{self.script.name} exited with code {rc} in {what}")
                return
            if not self._sent:
                self._fail(
                    f"{self.script.name} exited without sending the result of {what}: with "
                    "launch_once=False each process gets one task from flare.receive() and "
                    "must flare.send() its result"
                )
                return
            self._task = None

    def _fail(self, reason: str) -> None:
        self.log.error("%s", reason)
        tail = "\n".join(self.tail)
        self.link.report_failure(f"{reason}; last output:\n{tail}" if tail else reason)

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the script's process to end (and its exit to be reported)."""
        if self._supervisor is not None:  # launch_once=False: until the last task's process
            self._supervisor.join(timeout)
            return not self._supervisor.is_alive()
        if self.proc is None:
            return True
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        for thread in self._threads:
            if thread.name.endswith("_watch"):
                thread.join(timeout)
        return True

    def stop(self, timeout: float) -> None:
        """Wait for the child to end after the job ended; terminate, then kill, if it will not."""
        self._stopping = True
        deadline = time.monotonic() + timeout
        if self._supervisor is not None:
            # it ends at its next poll, or waits for the process it started (self.proc)
            self._supervisor.join(
                min(max(0.0, deadline - time.monotonic()), self.poll_interval + 1.0)
            )
        if self.proc is None:
            return
        try:
            self.proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            try:
                self.proc.wait(2)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._supervisor is not None:
            self._supervisor.join(2)
        if self.channel is not None:
            self.channel.close()
        for thread in self._threads:
            thread.join(2)
