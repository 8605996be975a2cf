"""``PocEnv``: the job runs on a real server and real clients on this machine, over gRPC
with mutual TLS, submitted through the admin API.

``recipe.execute(PocEnv(num_clients=2))`` prepares the PoC workspace if there is none
(``ember poc prepare``), starts its daemons if they are not running (``ember poc start``),
exports the job and submits it as the workspace's admin. The returned :class:`PocRun`
follows the job on the server; ``get_result`` waits for the end and downloads the result.
A handle that loses its server (a restart) reconnects, for up to
``system.run_reconnect_timeout``, instead of raising.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ember.config import describe_setting, describe_timeout, get_setting, setting_timeout
from ember.envs.run import RunTimeout, wait_limit
from ember.errors import EmberError
from ember.system import daemon
from ember.system.admin import AdminClient
from ember.system.jobstore import FINISHED
from ember.system.poc import DEFAULT_WORKSPACE, PocError, PocWorkspace, client_names, prepare

if TYPE_CHECKING:
    from ember.job.definition import Deployable

T = TypeVar("T")


class RunConnectionError(EmberError, ConnectionError):
    """A Run handle lost its server and could not reach it again in time."""


def start_workspace(ws: PocWorkspace) -> None:
    """Start the server, then every client, unless they run already."""
    daemon.start("server", ws.server.folder)
    for kit in ws.clients:
        daemon.start("client", kit.folder)


def stop_workspace(ws: PocWorkspace) -> list[str]:
    """Stop every daemon of the workspace (clients first); the names of those that ran."""
    stopped = [k.name for k in ws.clients if daemon.stop(k.folder)]
    if daemon.stop(ws.server.folder):
        stopped.append(ws.server.name)
    return stopped


class PocRun:
    """A job submitted to a PoC (or any) server."""

    def __init__(
        self,
        admin: AdminClient,
        job_id: str,
        result_dir: Path,
        stop: Callable[[], object] | None = None,
    ) -> None:
        self.admin = admin
        self.job_id = job_id
        self.result_dir = result_dir
        self._stop = stop  # what get_result(clean_up=True) stops: the PoC system
        self._record: dict[str, Any] = {}

    def get_job_id(self) -> str:
        return self.job_id

    def _server(self, call: Callable[[], T]) -> T:
        """``call()`` against the server; a lost connection (the server restarting, the
        network) is dialled again with back-off until ``system.run_reconnect_timeout``."""
        from ember.net import ConnectError
        from ember.net.messenger import RemoteError
        from ember.runtime.transport import TransportError, UnknownTopicError

        deadline: float | None = None
        backoff = float(get_setting("net.reconnect_backoff_min"))
        most = float(get_setting("net.reconnect_backoff_max"))
        while True:
            try:
                if self.admin.connected and not self.admin.linked:
                    # lost and being dialled again: dial afresh, within this method's bound
                    self.admin.close()
                if not self.admin.connected:
                    if deadline is None:
                        deadline = time.monotonic() + float(
                            get_setting("system.run_reconnect_timeout")
                        )
                    remaining = max(0.001, deadline - time.monotonic())
                    self.admin.connect(min(setting_timeout("net.connect_timeout"), remaining))
                return call()
            except (RemoteError, UnknownTopicError):
                raise  # the server answered: not a connection problem
            except (ConnectError, TransportError) as exc:
                if isinstance(exc, ConnectError) and daemon.permanent(exc):
                    raise  # refused for good (certificates): waiting will not help
                self.admin.close()  # a fresh connection next time
                now = time.monotonic()
                if deadline is None:
                    deadline = now + float(get_setting("system.run_reconnect_timeout"))
                if now >= deadline:
                    raise RunConnectionError(
                        f"lost the server of job {self.job_id} and could not reach it again "
                        f"within {describe_setting('system.run_reconnect_timeout')}: {exc}; "
                        "is the server daemon running (`ember poc start`, `ember daemon "
                        "start`)?"
                    ) from exc
                time.sleep(min(backoff, deadline - now))  # back-off between dials
                backoff = min(2 * backoff, most)

    def _refresh(self, wait: float = 0.0) -> dict[str, Any]:
        if self._record.get("status") not in FINISHED:
            self._record = self._server(lambda: self.admin.status(self.job_id, wait=wait))
        return self._record

    def get_status(self) -> str:
        return str(self._refresh()["status"])

    def get_message(self) -> str:
        """Why the job failed or was aborted; empty when it completed."""
        return str(self._refresh().get("message", ""))

    def get_result(self, timeout: float | None = None, clean_up: bool = False) -> str:
        """Wait for the job to finish, download its result; returns the result folder.
        ``clean_up`` then stops the PoC system the env started (a ProdEnv deployment is not
        the admin's to stop); see :meth:`ember.envs.run.Run.get_result`."""
        timeout = wait_limit(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._refresh().get("status") not in FINISHED:
            remaining = 60.0 if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                raise RunTimeout(
                    f"job {self.job_id} did not finish within {describe_timeout(timeout)} "
                    f"(status {self._record.get('status')})"
                )
            self._refresh(wait=min(remaining, 60.0))  # the server answers when it ends
        if not (self.result_dir / "server").is_dir():
            self._server(lambda: self.admin.download(self.job_id, self.result_dir))
        self.admin.close()  # the job is over; a later call reconnects
        if clean_up and self._stop is not None:
            self._stop()
        return str(self.result_dir)

    def abort(self) -> None:
        self._record = self._server(lambda: self.admin.abort(self.job_id))


class PocEnv:
    """Run jobs on a local proof-of-concept system: a server and ``num_clients`` clients
    (``site-1`` ...) or the named ``clients``, each its own process, over mutual TLS.

    ``workspace``: the PoC workspace (default ``/tmp/ember/poc``); an existing one is used as
    it is (its clients must include the ones asked for). Results are downloaded to
    ``<workspace>/results/<job name>-<job id>/``.
    """

    def __init__(
        self,
        num_clients: int = 2,
        clients: list[str] | None = None,
        workspace: str | Path | None = None,
    ) -> None:
        self.names = client_names(num_clients, clients)
        self.workspace = Path(workspace or DEFAULT_WORKSPACE).expanduser().resolve()

    def system(self) -> PocWorkspace:
        """The prepared workspace (made now if missing), with its daemons running."""
        try:
            ws = PocWorkspace.load(self.workspace)
        except PocError:
            ws = prepare(self.workspace, clients=self.names)
        missing = sorted(set(self.names) - {k.name for k in ws.clients})
        if missing:
            raise PocError(
                f"the PoC workspace {ws.root} has clients {[k.name for k in ws.clients]}, not "
                f"{missing}; prepare it again (`ember poc clean` then "
                f"`ember poc prepare --clients {','.join(self.names)}`)"
            )
        start_workspace(ws)
        return ws

    def deploy(self, recipe: Deployable) -> PocRun:
        ws = self.system()
        tmp = Path(tempfile.mkdtemp(prefix="ember-poc-job-"))
        try:
            job_dir = recipe.export(tmp / recipe.name)
            admin = AdminClient(ws.admin).connect()
            record = admin.submit(job_dir, sites=self.names)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        result = ws.root / "results" / f"{recipe.name}-{record['id']}"
        return PocRun(admin, str(record["id"]), result, stop=lambda: stop_workspace(ws))
