"""The server side of a Flower job: the SuperLink on loopback, the app submitted with
``flwr run``, the run followed (``flwr log``) to its end and mapped to the job's status."""

from __future__ import annotations

import ast
import contextlib
import json
import re
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from ember.common import FLModel, TaskResult
from ember.config import describe_setting, get_setting, setting_timeout
from ember.controllers import Collected, JobAborted, JobError, ServerContext
from ember.tunnel import TUNNEL_META, HttpUpstream, TunnelCall, TunnelReply
from ember_flower.processes import Guarded, executable, flower_env, free_port, listening
from ember_flower.site import ACTION, NODE_CONFIG

TUNNEL = "flower"
FLEET = "/v1/fleet/"
FEDERATION = "ember"
TASK = "flower"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_ROUND = re.compile(r"\[ROUND (\d+)/(\d+)\]")
_AGGREGATED = re.compile(r"Aggregated MetricRecord: (\{.*\})\s*$")


class FleetWatch:
    """The tunnel's upstream: :class:`HttpUpstream` to the SuperLink, counting the nodes that
    activated (so the run is submitted once every started site's SuperNode is in)."""

    def __init__(self, url: str) -> None:
        self.inner = HttpUpstream(url)
        self.activated = 0
        self._cond = threading.Condition()

    def forward(self, call: TunnelCall, timeout: float) -> TunnelReply:
        reply = self.inner.forward(call, timeout)
        if call.method == f"{FLEET}activate-node" and reply.status == 200:
            with self._cond:
                self.activated += 1
                self._cond.notify_all()
        return reply

    def wait_activated(self, count: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.activated >= count, timeout)

    def close(self) -> None:
        self.inner.close()


class RunLog:
    """Follows ``flwr log RUN`` (it streams the ServerApp's log and exits when the run ends):
    lines to ``server/flower_run.log`` and the job's log, rounds to the job's progress,
    each round's aggregated train and evaluate metrics collected."""

    def __init__(self, ctx: ServerContext, command: list[str], env: dict[str, str]) -> None:
        self.ctx = ctx
        self.path = ctx.server_dir / "flower_run.log"
        self.rounds: dict[int, dict[str, Any]] = {}
        self.total = 0
        self.lines: list[str] = []
        self._round = 0
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env
        )
        self._thread = threading.Thread(target=self._read, daemon=True, name="ember-flwr-log")
        self._thread.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        with open(self.path, "a", encoding="utf-8") as out:
            for raw in self.process.stdout:
                line = _ANSI.sub("", raw.decode("utf-8", "replace")).rstrip()
                out.write(line + "\n")
                out.flush()
                self.lines = [*self.lines[-199:], line]
                if line.strip():
                    self.ctx.log.info("flower: %s", line.strip())
                self._parse(line)

    def _parse(self, line: str) -> None:
        found = _ROUND.search(line)
        if found:
            self._round, self.total = int(found.group(1)), int(found.group(2))
            self.ctx.progress.round_started(self._round - 1, self.total, 0)
            return
        found = _AGGREGATED.search(line)
        if found and self._round:
            try:  # a literal (no code runs): Flower prints the MetricRecord's dict
                metrics = ast.literal_eval(found.group(1))
            except (ValueError, SyntaxError):
                return
            if isinstance(metrics, dict):
                known = self.rounds.setdefault(self._round, {})
                for key, value in metrics.items():
                    if isinstance(value, int | float) and not isinstance(value, bool):
                        known[key if key not in known else f"evaluate_{key}"] = float(value)

    def wait(self, timeout: float) -> bool:
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        self._thread.join(5)
        return True

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._thread.join(5)

    def tail(self, count: int = 15) -> str:
        return "\n".join(line for line in self.lines[-count:] if line.strip())


class FlowerController:
    """Run the Flower app in ``job_dir/<app_folder>`` (see :class:`ember_flower.FlowerRecipe`).

    1. Start the SuperLink on a free loopback port (``server/flower_superlink.log``) and
       open the tunnel ``flower`` to it for the job's sites, allowing only ``/v1/fleet/``.
    2. Task ``flower`` {start}: every alive site starts a SuperNode through the tunnel (at
       least ``min_clients``); wait until each activated (``flower.start_timeout``).
    3. ``flwr run`` the app (``run_config`` as overrides), follow it with ``flwr log``;
       every ``flower.poll_interval``: an abort or a dead site stops the run (``flwr stop``)
       and ends the job naming the site; past ``timeout`` (0: ``flower.run_timeout``) too.
    4. ``flwr ls``: ``finished:completed`` completes the job, anything else fails it with
       Flower's status, details and the ServerApp's last lines.
    5. Task ``flower`` {stop} to the sites; the SuperLink's process group ends (also on
       every failure: ``finally``).
    """

    def __init__(
        self,
        app_folder: str,
        min_clients: int = 1,
        run_config: dict[str, Any] | None = None,
        timeout: float = 0,
    ) -> None:
        self.app_folder = app_folder
        self.min_clients = min_clients
        self.run_config = dict(run_config or {})
        self.timeout = timeout

    def run(self, ctx: ServerContext) -> None:
        started_at = time.monotonic()
        start_timeout = float(setting_timeout("flower.start_timeout"))
        stop_timeout = float(get_setting("flower.stop_timeout"))
        app = ctx.job_dir / self.app_folder
        sites = [s for s in ctx.board.sites if s in ctx.board.alive_sites()]
        if len(sites) < self.min_clients:
            raise JobError(
                f"the Flower app needs min_clients={self.min_clients} sites, only "
                f"{len(sites)} are alive ({', '.join(sites) or 'none'})"
            )
        home = ctx.server_dir / ".flower"
        (home / "superlink").mkdir(parents=True, exist_ok=True)
        cli_home = home / "cli"
        cli_home.mkdir(parents=True, exist_ok=True)
        port = free_port()
        superlink = Guarded(
            [
                executable("flower-superlink"),
                "--insecure",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--disable-runtime-dependency-installation",
            ],
            flower_env(home / "superlink"),
            ctx.server_dir / "flower_superlink.log",
            stop_timeout,
            cwd=home / "superlink",
        )
        watch = FleetWatch(f"http://127.0.0.1:{port}")
        started: list[str] = []
        try:
            self._wait_listening(ctx, superlink, port, start_timeout)
            ctx.log.info("Flower SuperLink on 127.0.0.1:%d", port)
            ctx.tunnels.open(TUNNEL, watch, sites=sites, allow=(FLEET,))
            started = self._start_sites(ctx, sites, start_timeout)
            if not watch.wait_activated(len(started), start_timeout):
                raise JobError(
                    f"{watch.activated} of {len(started)} SuperNodes registered with the "
                    f"SuperLink within {describe_setting('flower.start_timeout')}"
                )
            (cli_home / "config.toml").write_text(
                f'[superlink]\ndefault = "{FEDERATION}"\n\n[superlink.{FEDERATION}]\n'
                f'address = "127.0.0.1:{port}"\ninsecure = true\n',
                encoding="utf-8",
            )
            env = flower_env(cli_home)
            run_id = self._submit(ctx, app, env, start_timeout)
            ctx.state["flower_run_id"] = run_id
            self._follow(ctx, run_id, env, superlink, started, started_at)
            self._stop_sites(ctx, started, stop_timeout)
        finally:
            ctx.tunnels.close(TUNNEL)
            superlink.stop()

    @staticmethod
    def _wait_listening(ctx: ServerContext, superlink: Guarded, port: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not listening(port):
            if not superlink.alive():
                raise JobError(f"Flower's SuperLink exited at start: {superlink.tail()}")
            if time.monotonic() > deadline:
                raise JobError(
                    "the SuperLink did not listen within "
                    f"{describe_setting('flower.start_timeout')}: {superlink.tail()}"
                )
            with contextlib.suppress(subprocess.TimeoutExpired):  # returns early if it dies
                superlink.process.wait(0.2)

    def _start_sites(self, ctx: ServerContext, sites: list[str], timeout: float) -> list[str]:
        spec = {"name": TUNNEL, "protocol": "http", "allow": [FLEET]}

        def task(site: str) -> FLModel:
            return FLModel(
                params={},
                meta={
                    TUNNEL_META: spec,
                    ACTION: "start",
                    NODE_CONFIG: {
                        "partition-id": sites.index(site),
                        "num-partitions": len(sites),
                    },
                },
                current_round=0,
                total_rounds=1,
            )

        def on_result(site: str, result: TaskResult) -> None:
            ctx.log.info("%s: SuperNode started", site)

        collected = ctx.board.broadcast(TASK, task, sites, self.min_clients, timeout, on_result)
        return list(collected.responded)

    def _submit(self, ctx: ServerContext, app: Path, env: dict[str, str], timeout: float) -> str:
        command = [executable("flwr"), "run", str(app), FEDERATION, "--format", "json"]
        if self.run_config:
            overrides = " ".join(f"{k}={json.dumps(v)}" for k, v in self.run_config.items())
            command += ["--run-config", overrides]
        try:
            done = subprocess.run(
                command, capture_output=True, env=env, timeout=timeout, cwd=app, check=False
            )
        except subprocess.TimeoutExpired:
            raise JobError(
                "`flwr run` did not submit the app within "
                + describe_setting("flower.start_timeout")
            ) from None
        out = done.stdout.decode("utf-8", "replace")
        try:
            answer = json.loads(out[out.index("{") :])
            run_id = str(answer["run-id"])
        except (ValueError, KeyError, TypeError):
            raise JobError(
                f"`flwr run` did not submit the app (exit code {done.returncode}): "
                f"{(out + done.stderr.decode('utf-8', 'replace')).strip()[-2000:]}"
            ) from None
        ctx.log.info("Flower run %s submitted", run_id)
        return run_id

    def _follow(
        self,
        ctx: ServerContext,
        run_id: str,
        env: dict[str, str],
        superlink: Guarded,
        started: list[str],
        started_at: float,
    ) -> None:
        poll = float(get_setting("flower.poll_interval"))
        stop_timeout = float(get_setting("flower.stop_timeout"))
        limit = (
            float(self.timeout) if self.timeout else float(setting_timeout("flower.run_timeout"))
        )
        deadline = time.monotonic() + limit
        flwr = executable("flwr")
        log = RunLog(ctx, [flwr, "log", run_id], env)
        problem: Exception | None = None
        try:
            while not log.wait(poll):
                if ctx.board.aborted:
                    problem = JobAborted(f"aborted; Flower run {run_id} stopped")
                else:
                    alive = set(ctx.board.alive_sites())
                    dead = [s for s in started if s not in alive]
                    if dead:
                        reasons = {s: ctx.board.sites[s].failure or "ended" for s in dead}
                        problem = JobError(
                            f"site {', '.join(dead)} died during Flower run {run_id} ("
                            + "; ".join(f"{s}: {r}" for s, r in reasons.items())
                            + "); the run was stopped"
                        )
                    elif not superlink.alive():
                        problem = JobError(f"Flower's SuperLink exited: {superlink.tail()}")
                    elif time.monotonic() > deadline:
                        what = (
                            f"FlowerRecipe(timeout={self.timeout})"
                            if self.timeout
                            else describe_setting("flower.run_timeout")
                        )
                        problem = JobError(f"the Flower run did not finish within {what}")
                if problem is not None:
                    subprocess.run(
                        [flwr, "stop", run_id, FEDERATION],
                        capture_output=True,
                        env=env,
                        timeout=stop_timeout + 30,
                        check=False,
                    )
                    raise problem
        finally:
            log.stop()
        status, details = self._status(run_id, env, flwr, stop_timeout)
        collected = Collected(responded=list(started))
        for rnd in sorted(log.rounds):
            ctx.records.round(rnd - 1, collected, log.rounds[rnd], {}, 0.0)
            ctx.progress.round_done(rnd - 1, log.rounds[rnd])
        if status != "finished:completed":
            raise JobError(
                f"Flower run {run_id} ended {status} ({details}); the ServerApp's last "
                f"lines:\n{log.tail()}"
            )
        ctx.records.summary(
            flower_run_id=run_id,
            flower_status=status,
            rounds=len(log.rounds),
            duration=time.monotonic() - started_at,
        )

    @staticmethod
    def _status(run_id: str, env: dict[str, str], flwr: str, timeout: float) -> tuple[str, str]:
        done = subprocess.run(
            [flwr, "ls", "--run-id", run_id, "--format", "json"],
            capture_output=True,
            env=env,
            timeout=timeout + 30,
            check=False,
        )
        out = done.stdout.decode("utf-8", "replace")
        try:
            run = json.loads(out[out.index("{") :])["runs"][0]
            return str(run["status"]), str(run.get("status-details", ""))
        except (ValueError, KeyError, IndexError, TypeError):
            return "unknown", f"`flwr ls` answered: {out.strip()[-1000:]}"

    @staticmethod
    def _stop_sites(ctx: ServerContext, started: list[str], timeout: float) -> None:
        alive = [s for s in started if s in ctx.board.alive_sites()]
        stop = FLModel(params={}, meta={ACTION: "stop"}, current_round=0, total_rounds=1)
        ctx.board.broadcast(TASK, stop, alive, 0, timeout + 10, lambda site, result: None)
