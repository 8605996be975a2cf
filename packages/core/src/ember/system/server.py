"""The server daemon: the hub every participant dials, the job store, the scheduler and the
admin API.

Jobs queue in the store; a job starts when the sites it needs are connected and fewer than
``system.max_running_jobs`` run. Each job's server side runs in its own process
(:mod:`ember.system.server_job_process`) and each site's in a process its client daemon
starts, so a crashed job cannot take the daemon down: the daemon sees the process end and
fails the job with the reason. Admin commands arrive as requests from ``admin:<name>:*``
nodes, authenticated by the admin's certificate.

A daemon that starts again after a crash resumes the jobs the store still has running
(``system.resume_jobs``): once every site of such a job has reconnected (within
``system.resume_timeout``) it stops what is left of the job at its sites, starts the job's
server process again, which goes on from the workflows' last round checkpoints
(:mod:`ember.runtime.checkpoint`), and deploys the job to its sites again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ember.config import describe_setting, get_setting, setting_timeout
from ember.errors import EmberError
from ember.job.definition import JobDefinition, JobDefinitionError
from ember.runtime.checkpoint import CheckpointError, last_checkpointed_round
from ember.runtime.logs import NodeLogs
from ember.system import jobstore
from ember.system.archive import pack, temp_zip, unpack
from ember.system.jobstore import JobRecord, JobStore
from ember.system.kit import Kit
from ember.system.lifeline import JobProcessStarter
from ember.system.scoped import net_name, split_job_name

SERVER = "server"
ADMIN_PREFIX = "admin:"


class AdminError(EmberError, RuntimeError):
    """An admin command cannot be done (unknown job, wrong state, ...); its message says why."""


class NotAuthorized(AdminError):
    """The admin's role does not allow the command (the project's authorization policy)."""


@dataclass(frozen=True)
class Actor:
    """Who sent an admin command: from the certificate its connection presented."""

    name: str
    org: str
    role: str


class ServerDaemon:
    """One project's server."""

    def __init__(self, folder: Path) -> None:
        self.kit = Kit.load(folder)
        if self.kit.kind != "server":
            raise AdminError(f"{folder} holds a {self.kit.kind} kit, not a server kit")
        self.logs = NodeLogs("ember.server", self.kit.folder, logging.INFO)
        self.log = self.logs.logger
        self.store = JobStore(self.kit.folder)
        self._cond = threading.Condition()
        self._sites: set[str] = set()  # connected client daemons
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._reported: dict[str, tuple[str, str]] = {}
        self._recorded: set[str] = set()  # jobs whose reported outcome is in the store
        self._job_nodes: set[str] = set()  # connected job processes
        # jobs running when the server stopped, to resume: job id -> deadline for its sites
        self._resuming: dict[str, float] = {}
        self._restarting: set[str] = set()  # resumed jobs whose process is not started yet
        self._spawned: dict[str, float] = {}  # job id -> when its server process started
        self._node_since: dict[str, float] = {}  # job process node -> when it connected
        self._stopping = False
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="ember-server")
        self._starter = JobProcessStarter(
            "ember.system.server_job_process", bool(get_setting("system.warm_job_processes"))
        )
        policy = self.kit.startup / "authorization.json"
        # a provisioned server enforces its policy; a PoC (no policy file) trusts its admin
        self.policy: dict[str, Any] | None = (
            json.loads(policy.read_text(encoding="utf-8")) if policy.is_file() else None
        )

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        from ember.net import Hub, NetTransport

        self._recover()
        from ember.provision.certs import identity

        # the server's own certificate connects its job processes
        self._own_name = identity(self.kit.tls.cert.read_bytes()).name
        host = self.kit.bind_host
        bind = f"{'[::]' if host == '::' else host}:{self.kit.port}"
        self.hub = Hub(SERVER, bind, self.kit.tls, self._authorize)
        self.hub.on_connect = self._connected
        self.hub.on_disconnect = self._disconnected
        self.transport = NetTransport(self.hub.local)
        self.endpoint = self.transport.add_endpoint(SERVER)
        handlers = {
            "job.finished": self._job_finished,
            "admin.submit": self._submit,
            "admin.list": self._list,
            "admin.status": self._status,
            "admin.abort": self._abort,
            "admin.download": self._download,
            "admin.logs": self._logs,
            "admin.system": self._system,
            "admin.stop_site": self._stop_site,
        }
        for topic, handler in handlers.items():
            self.endpoint.register_handler(topic, self._guarded(topic, handler))
        self.hub.start()
        self._scheduler = threading.Thread(
            target=self._schedule, name="ember-scheduler", daemon=True
        )
        self._scheduler.start()
        self.log.info("server %s listening on %s", self.kit.project, self.kit.address)

    def _recover(self) -> None:
        """Jobs the store has running were cut off by a crash: resume them from their
        checkpoints once their sites are back (or fail them: ``system.resume_jobs``)."""
        running = self.store.list(jobstore.RUNNING)
        if running and not bool(get_setting("system.resume_jobs")):
            for job in running:
                self.store.set_status(
                    job.id,
                    jobstore.FAILED,
                    "the server stopped while the job ran (system.resume_jobs is off)",
                )
                self.log.warning("job %s was running when the server stopped: failed", job.id)
            return
        deadline = time.monotonic() + float(get_setting("system.resume_timeout"))
        for job in running:
            server_dir = self.store.workspace(job.id) / SERVER
            try:
                rnd = last_checkpointed_round(server_dir)
            except CheckpointError as exc:
                message = f"the job cannot resume after the server restart: {exc}"
                self.store.set_status(job.id, jobstore.FAILED, message)
                self.log.error("job %s: %s", job.id, message)
                continue
            note = (
                f"resumed from round {rnd}"
                if rnd is not None
                else "restarted from the beginning (no round was checkpointed)"
            )
            self.store.set_resumed(job.id, note)
            self._resuming[job.id] = deadline
            self.log.warning(
                "job %s was running when the server stopped: %s once %s are connected",
                job.id,
                note,
                ", ".join(job.sites),
            )

    def stop(self) -> None:
        """Abort running jobs (their processes end), stop listening, close the store."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            procs = dict(self._procs)
            waiting = [*self._resuming, *self._restarting]
            self._resuming.clear()
        for job_id in waiting:  # to resume, not started again yet: they end as running ones
            self.store.set_status(job_id, jobstore.ABORTED, "the server stopped")
        for job_id, proc in procs.items():
            self._terminate(job_id, proc, "the server stopped")
        self._starter.close()
        self.hub.stop(1.0)
        self.transport.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.store.close()
        self.logs.close()

    # -- identities -----------------------------------------------------------------------------
    def _authorize(self, common_name: str | None, requested: str) -> str | None:
        """Which node names a certificate may take: the server's own certificate its job
        processes, a site its name and its job processes, an admin ``admin:<name>:*``."""
        if not common_name:
            return "no client certificate"
        if common_name == self._own_name:
            parts = split_job_name(requested)
            if parts is not None and parts[0] == SERVER:
                return None
            return f"the server's certificate may only connect job processes, not {requested!r}"
        if requested.startswith(ADMIN_PREFIX):
            # admins are named by e-mail; site names cannot hold '@'
            if "@" in common_name and requested.startswith(f"{ADMIN_PREFIX}{common_name}:"):
                return None
            return f"certificate {common_name!r} is not an admin's; admin commands are refused"
        if "@" in common_name:
            return f"an admin's certificate ({common_name}) cannot connect as {requested!r}"
        parts = split_job_name(requested)
        if requested == common_name or (parts is not None and parts[0] == common_name):
            return None
        return f"certificate of {common_name!r} cannot connect as {requested!r}"

    def _connected(self, name: str) -> None:
        with self._cond:
            if split_job_name(name) is None and not name.startswith(ADMIN_PREFIX):
                self._sites.add(name)
                self.log.info("client %s connected", name)
                if self._procs:  # running jobs may have lost this site's process
                    threading.Thread(
                        target=self._rejoin, args=(name,), name=f"ember-rejoin-{name}", daemon=True
                    ).start()
            elif split_job_name(name) is not None:
                self._job_nodes.add(name)
                self._node_since[name] = time.monotonic()
            self._cond.notify_all()

    def _disconnected(self, name: str, reason: str) -> None:
        parts = split_job_name(name)
        if parts is None:
            with self._cond:
                self._sites.discard(name)
                self._cond.notify_all()
            if not name.startswith(ADMIN_PREFIX):
                self.log.warning("client %s disconnected: %s", name, reason)
            return
        try:
            self._job_node_lost(name, parts, reason)
        finally:  # only now: a site rejoining waits for its old process's loss to be told
            with self._cond:
                self._job_nodes.discard(name)
                self._node_since.pop(name, None)
                self._cond.notify_all()

    def _job_node_lost(self, name: str, parts: tuple[str, str], reason: str) -> None:
        site, job_id = parts
        record = self.store.get(job_id)
        if site == SERVER or record is None or record.status != jobstore.RUNNING:
            return
        with self._cond:
            spawned = self._spawned.get(job_id)
            since = self._node_since.get(name)
        if since is None or spawned is None or since < spawned:
            return  # a job process from before the server's restart: not the current run's
        self.log.warning("job %s: %s's job process disconnected: %s", job_id, site, reason)
        try:  # the job's server process counts the site out (if it still runs)
            self.transport.request(
                SERVER,
                net_name(SERVER, job_id),
                "job.site_lost",
                {"site": site, "reason": f"{site}'s job process disconnected ({reason})"},
                setting_timeout("system.admin_timeout"),
            )
        except Exception as exc:
            self.log.info("job %s: could not tell its server process: %s", job_id, exc)

    def _guarded(self, topic: str, handler: Any) -> Any:
        def call(sender: str, payload: Any) -> Any:
            if topic.startswith("admin.") and not sender.startswith(ADMIN_PREFIX):
                raise AdminError(f"{sender} is not an admin; {topic} is refused")
            return handler(sender, payload if isinstance(payload, dict) else {})

        return call

    def _actor(self, sender: str) -> Actor:
        """The admin behind ``sender``, as its certificate states (name, org, role)."""
        from ember.provision.certs import identity

        pem = self.hub.peer_certificate(sender)
        if pem is None:
            raise NotAuthorized(f"{sender} presented no certificate")
        who = identity(pem)
        return Actor(who.name, who.org or "", who.kind or "")

    def _authorize_admin(self, sender: str, right: str, job: JobRecord | None = None) -> Actor:
        """The actor, if the policy lets it do ``right`` (to ``job``); else NotAuthorized."""
        actor = self._actor(sender)
        if self.policy is None:
            return actor
        from ember.provision.policy import allowed

        if allowed(
            self.policy,
            role=actor.role,
            right=right,
            actor_name=actor.name,
            actor_org=actor.org,
            job_submitter=job.submitter if job else None,
            job_submitter_org=job.submitter_org if job else None,
        ):
            return actor
        target = f" job {job.id} (submitted by {job.submitter}, {job.submitter_org})" if job else ""
        raise NotAuthorized(
            f"{actor.name} ({actor.role} of {actor.org or 'no org'}) may not {right}{target} "
            "under this project's authorization policy"
        )

    # -- scheduling -----------------------------------------------------------------------------
    def _schedule(self) -> None:
        while True:
            with self._cond:
                job, resume = None, False
                while not self._stopping:
                    self._expire_resumes()
                    job, resume = self._startable()
                    if job is not None:
                        break
                    deadlines = list(self._resuming.values())
                    self._cond.wait(
                        max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
                    )
                if self._stopping:
                    return
                assert job is not None
                sites = job.sites or sorted(self._sites)
                if resume:
                    del self._resuming[job.id]
                    self._restarting.add(job.id)
                else:
                    self.store.set_status(job.id, jobstore.RUNNING)
                    self._procs[job.id] = self._spawn(job.id, sites)
            self._pool.submit(self._restart if resume else self._launch, job, sites)

    def _expire_resumes(self) -> None:
        """Fail the jobs to resume whose sites did not come back in time (under the lock)."""
        now = time.monotonic()
        for job_id, deadline in list(self._resuming.items()):
            if now < deadline:
                continue
            del self._resuming[job_id]
            record = self.store.get(job_id)
            missing = sorted(set(record.sites) - self._sites) if record else []
            message = (
                f"the job could not resume after the server restart: {', '.join(missing)} did "
                f"not reconnect within {describe_setting('system.resume_timeout')}; start "
                "their client daemons (`ember daemon start`) and submit the job again"
            )
            self.store.set_status(job_id, jobstore.FAILED, message)
            self.log.error("job %s: %s", job_id, message)
            self._cond.notify_all()

    def _startable(self) -> tuple[JobRecord | None, bool]:
        """A job to resume whose sites are all back, else the oldest queued job whose sites
        are connected if a slot is free; and whether it is resumed."""
        for job_id in list(self._resuming):  # they held their slots before the restart
            record = self.store.get(job_id)
            if record is None or record.status != jobstore.RUNNING:
                del self._resuming[job_id]
            elif set(record.sites) <= self._sites:
                return record, True
        busy = len(self._procs) + len(self._restarting) + len(self._resuming)
        if busy >= int(get_setting("system.max_running_jobs")):
            return None, False
        return self._queued(), False

    def _queued(self) -> JobRecord | None:
        for job in self.store.list(jobstore.SUBMITTED):
            if job.sites and set(job.sites) <= self._sites:
                return job
            if not job.sites and len(self._sites) >= job.min_clients:
                return job
        return None

    def _restart(self, job: JobRecord, sites: list[str]) -> None:
        """Resume a job: stop what is left of it at its sites (scripts of before the
        restart), then start its server process and deploy it again."""
        started = time.monotonic()
        for site in sites:
            try:
                self.transport.request(
                    SERVER,
                    site,
                    "job.abort",
                    {"job_id": job.id, "wait": True},
                    float(get_setting("system.stop_timeout"))
                    + setting_timeout("system.admin_timeout"),
                )
            except Exception as exc:  # its deployment will tell
                self.log.warning(
                    "job %s: could not stop its old process at %s: %s", job.id, site, exc
                )
        with self._cond:
            self._restarting.discard(job.id)
            if self._stopping:
                return  # stop() ended it (ABORTED)
            reported = self._reported.pop(job.id, None)
            if reported is None:
                self._procs[job.id] = self._spawn(job.id, sites)
            self._cond.notify_all()
        if reported is not None:  # aborted while it waited
            self.store.set_status(job.id, *reported)
            return
        self.log.info(
            "job %s: resuming (%s), old site processes stopped in %.2f s",
            job.id,
            job.resumed,
            time.monotonic() - started,
        )
        self._launch(job, sites, resume=True)

    def _spawn(self, job_id: str, sites: list[str]) -> subprocess.Popen[bytes]:
        self.store.set_sites(job_id, sites)
        self._spawned[job_id] = time.monotonic()
        proc = self._starter.start(
            [str(self.kit.folder), job_id], self.store.workspace(job_id) / "server_process.log"
        )
        self.log.info("job %s: server process %d started for %s", job_id, proc.pid, sites)
        threading.Thread(
            target=self._watch, args=(job_id, proc), name=f"ember-watch-{job_id}", daemon=True
        ).start()
        return proc

    def _launch(self, job: JobRecord, sites: list[str], resume: bool = False) -> None:
        """Wait for the job's server process to connect, then deploy the job to its sites."""
        node = net_name(SERVER, job.id)
        deadline = time.monotonic() + float(get_setting("system.start_timeout"))
        with self._cond:
            while node not in self._job_nodes and job.id in self._procs:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            ready = node in self._job_nodes
        if not ready:
            self._fail_start(
                job.id, "the job's server process did not connect within system.start_timeout"
            )
            return
        problems = self._deploy(job, sites, resume)
        if problems:
            self._fail_start(job.id, "sites could not start the job: " + "; ".join(problems))
        else:
            self.log.info("job %s deployed to %s", job.id, sites)

    def _deploy(self, job: JobRecord, sites: list[str], resume: bool) -> list[str]:
        """Send the job to ``sites`` (each starts its job process); what went wrong, by site."""
        tmp = temp_zip(f"ember-job-{job.id}-")
        try:
            archive = pack(self.store.job_dir(job.id), tmp)
            assert self.endpoint.stream is not None
            ref = self.endpoint.stream.downloader.add_file(
                archive, receivers=len(sites), timeout=setting_timeout("system.deploy_timeout")
            )
            payload = {
                "job_id": job.id,
                "owner": SERVER,
                "ref": ref,
                # each site decides whether it runs jobs of this submitter (its own policy)
                "submitter": job.submitter,
                "submitter_org": job.submitter_org,
                "submitter_role": job.submitter_role,
                "resume": resume,  # the site keeps its workspace (its logs) of before
            }
            futures = {
                site: self._pool.submit(
                    self.transport.request,
                    SERVER,
                    site,
                    "job.deploy",
                    payload,
                    setting_timeout("system.deploy_timeout"),
                )
                for site in sites
            }
            problems = []
            for site, future in futures.items():
                try:
                    future.result()
                except Exception as exc:
                    problems.append(f"{site}: {exc}")
            return problems
        finally:
            shutil.rmtree(tmp.parent, ignore_errors=True)

    def _rejoin(self, site: str) -> None:
        """A client daemon (re)connected: the running jobs it lost its process of (the
        daemon restarted) take the site back at their next task, and it gets them again."""
        with self._cond:
            jobs = [j for j in self._procs if j not in self._restarting]
        for job_id in jobs:
            record = self.store.get(job_id)
            if record is None or record.status != jobstore.RUNNING or site not in record.sites:
                continue
            node = net_name(site, job_id)
            deadline = time.monotonic() + float(get_setting("system.stop_timeout"))
            with self._cond:  # a dead daemon's job process ends within a second (its lifeline)
                while node in self._job_nodes and not self._stopping:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                if node in self._job_nodes or net_name(SERVER, job_id) not in self._job_nodes:
                    continue  # its job process lives on (a network blip), or the job ends
            try:
                back = self.transport.request(
                    SERVER,
                    net_name(SERVER, job_id),
                    "job.site_rejoin",
                    {"site": site},
                    setting_timeout("system.admin_timeout"),
                )
            except Exception as exc:
                self.log.warning("job %s: %s could not rejoin: %s", job_id, site, exc)
                continue
            if not back:
                continue  # alive, finished its script, or the job is ending
            self.log.info("job %s: %s restarted; it rejoins at its next task", job_id, site)
            problems = self._deploy(record, [site], resume=True)
            if problems:
                self.log.warning("job %s: %s", job_id, "; ".join(problems))

    def _fail_start(self, job_id: str, reason: str) -> None:
        self.log.error("job %s: %s", job_id, reason)
        with self._cond:
            self._reported[job_id] = (jobstore.FAILED, reason)
            proc = self._procs.get(job_id)
        if proc is not None:
            self._terminate(job_id, proc, reason)

    def _watch(self, job_id: str, proc: subprocess.Popen[bytes]) -> None:
        code = proc.wait()
        with self._cond:
            status, message = self._reported.pop(job_id, (None, ""))
            self._procs.pop(job_id, None)
            recorded = job_id in self._recorded
            self._recorded.discard(job_id)
        if status is None:
            how = f"signal {-code}" if code < 0 else f"exit code {code}"
            status = jobstore.FAILED
            message = (
                f"the job's server process ended ({how}) without reporting an outcome; see "
                f"jobs/{job_id}/workspace/server_process.log"
            )
        if not recorded:  # a reported outcome is in the store since its report
            self.store.set_status(job_id, status, message)
            self.log.info("job %s ended %s %s", job_id, status, message)
        record = self.store.get(job_id)
        for site in record.sites if record else []:
            # leftovers (a site still running a script) stop; a gone site has nothing left
            with contextlib.suppress(Exception):
                self.transport.request(
                    SERVER,
                    site,
                    "job.abort",
                    {"job_id": job_id},
                    float(get_setting("system.stop_timeout")),
                )
        with self._cond:
            self._cond.notify_all()

    def _terminate(self, job_id: str, proc: subprocess.Popen[bytes], reason: str) -> None:
        """Ask the job's server process to abort; kill its process group if it lingers."""
        with contextlib.suppress(Exception):  # not connected (yet, or any more)
            self.transport.request(
                SERVER,
                net_name(SERVER, job_id),
                "job.abort",
                {"reason": reason},
                float(get_setting("system.stop_timeout")),
            )
        try:
            proc.wait(float(get_setting("system.stop_timeout")))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

    # -- handlers -------------------------------------------------------------------------------
    def _job_finished(self, sender: str, payload: dict[str, Any]) -> bool:
        job_id = str(payload.get("job_id"))
        if sender != net_name(SERVER, job_id):
            raise AdminError(f"{sender} cannot report the outcome of job {job_id}")
        with self._cond:
            status, message = self._reported.setdefault(
                job_id, (str(payload.get("status")), str(payload.get("message") or ""))
            )
            if job_id not in self._procs or status not in jobstore.FINISHED:
                return True  # its end is recorded when its process is reaped
            self._recorded.add(job_id)
        # the outcome is final once reported (the process has written its results and
        # closed its logs): waiters (`status --wait`, get_result) learn it now rather than
        # once the process has also torn its interpreter down (about 0.2 s)
        self.store.set_status(job_id, status, message)
        self.log.info("job %s ended %s %s", job_id, status, message)
        with self._cond:
            self._cond.notify_all()
        return True

    def _record(self, payload: dict[str, Any]) -> JobRecord:
        job_id = str(payload.get("job_id", ""))
        record = self.store.get(job_id)
        if record is None:
            raise AdminError(f"no job {job_id!r} on this server (see `ember job list`)")
        return record

    def _submit(self, sender: str, payload: dict[str, Any]) -> dict[str, Any]:
        actor = self._authorize_admin(sender, "submit_job")
        admin = actor.name
        tmp = temp_zip("ember-submit-")
        try:
            assert self.endpoint.stream is not None
            self.endpoint.stream.fetcher.download_file(
                str(payload["owner"]), str(payload["ref"]), tmp
            )
            folder = unpack(tmp, tmp.parent / "job")
            try:
                job = JobDefinition.from_dir(folder)
            except JobDefinitionError as exc:
                raise AdminError(f"the submitted folder is not a job: {exc}") from None
            sites = [str(s) for s in payload.get("sites") or []]
            if sites and len(sites) < job.min_clients:
                raise AdminError(
                    f"job {job.name!r} needs min_clients={job.min_clients} sites, "
                    f"{len(sites)} named: {sites}"
                )
            record = self.store.add(job.name, admin, sites, job.min_clients, actor.org, actor.role)
            dest = self.store.job_dir(record.id)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(folder), dest)
        finally:
            shutil.rmtree(tmp.parent, ignore_errors=True)
        self.log.info(
            "job %s (%s) submitted by %s for %s",
            record.id,
            job.name,
            admin,
            sites or "every connected site",
        )
        with self._cond:
            self._cond.notify_all()
        return record.describe()

    def _list(self, sender: str, payload: dict[str, Any]) -> list[dict[str, Any]]:
        self._authorize_admin(sender, "view")
        return [j.describe() for j in self.store.list()]

    def _status(self, sender: str, payload: dict[str, Any]) -> dict[str, Any]:
        """The job's record; with ``wait`` seconds, once it finished or the wait is over."""
        record = self._record(payload)
        self._authorize_admin(sender, "view", record)
        deadline = time.monotonic() + float(payload.get("wait") or 0.0)
        with self._cond:
            while record.status not in jobstore.FINISHED:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stopping:
                    break
                self._cond.wait(remaining)
                record = self._record(payload)
        return self._with_progress(record)

    def _with_progress(self, record: JobRecord) -> dict[str, Any]:
        info = record.describe()
        rounds = self.store.workspace(record.id) / SERVER / "round_metrics.jsonl"
        if rounds.is_file():
            info["rounds_completed"] = len(rounds.read_text(encoding="utf-8").splitlines())
        return info

    def _abort(self, sender: str, payload: dict[str, Any]) -> dict[str, Any]:
        record = self._record(payload)
        admin = self._authorize_admin(sender, "manage_job", record).name
        reason = f"aborted by {admin}"
        if record.status == jobstore.SUBMITTED:
            self.store.set_status(record.id, jobstore.ABORTED, reason + " before it started")
        elif record.status == jobstore.RUNNING:
            with self._cond:
                proc = self._procs.get(record.id)
                waiting = self._resuming.pop(record.id, None) is not None
                if not waiting:
                    self._reported.setdefault(record.id, (jobstore.ABORTED, reason))
            if waiting:  # to resume, its sites not back yet: nothing runs
                self.store.set_status(record.id, jobstore.ABORTED, reason)
            elif proc is not None:
                self._terminate(record.id, proc, reason)
        with self._cond:
            self._cond.notify_all()
        return self._record(payload).describe()

    def _download(self, sender: str, payload: dict[str, Any]) -> dict[str, Any]:
        record = self._record(payload)
        self._authorize_admin(sender, "download_job", record)
        workspace = self.store.workspace(record.id)
        if not workspace.is_dir():
            raise AdminError(f"job {record.id} has no results yet (it is {record.status})")
        archive = pack(workspace, self.kit.folder / "downloads" / f"{record.id}.zip")
        assert self.endpoint.stream is not None
        ref = self.endpoint.stream.downloader.add_file(archive, receivers=1)
        return {"owner": SERVER, "ref": ref, "job": record.describe()}

    def _logs(self, sender: str, payload: dict[str, Any]) -> dict[str, Any]:
        record = self._record(payload)
        self._authorize_admin(sender, "download_job", record)
        site = payload.get("site")
        if payload.get("offset") is not None:
            return self._follow_logs(record, payload)
        if not site:
            path = self.store.workspace(record.id) / SERVER / "log.txt"
            return {
                "site": SERVER,
                "text": path.read_text(encoding="utf-8") if path.is_file() else "",
            }
        if site not in record.sites:
            raise AdminError(f"job {record.id} ran on {record.sites}, not on {site!r}")
        reply = self.transport.request(
            SERVER,
            str(site),
            "job.logs",
            {"job_id": record.id},
            setting_timeout("system.admin_timeout"),
        )
        return {"site": site, "text": str(reply.get("text", ""))}

    def _follow_logs(self, record: JobRecord, payload: dict[str, Any]) -> dict[str, Any]:
        """A job's log from byte ``offset`` on: the server's ``log.txt`` or the copy a site
        streams (``recipe.enable_log_streaming``); waits up to ``wait`` s for new lines
        while the job runs. ``finished``: the job ended and nothing more will come."""
        from ember.runtime.logs import log_path, read_log_chunk

        site = str(payload["site"]) if payload.get("site") else None
        if site is not None and site not in record.sites:
            raise AdminError(f"job {record.id} ran on {record.sites}, not on {site!r}")
        name = str(payload.get("file") or "log.txt")
        offset = payload.get("offset")
        if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
            raise AdminError(f"offset must be a byte offset >= 0, got {offset!r}")
        try:
            path = log_path(self.store.workspace(record.id), site, name)
        except ValueError as exc:
            raise AdminError(str(exc)) from None
        wait = min(max(0.0, float(payload.get("wait") or 0.0)), 30.0)
        deadline = time.monotonic() + wait
        while True:
            ended = record.status in jobstore.FINISHED
            size = path.stat().st_size if path.is_file() else 0
            remaining = deadline - time.monotonic()
            if size > offset or ended or remaining <= 0 or self._stopping:
                break
            with self._cond:  # a job's end wakes it; new lines are looked for 4 times a second
                self._cond.wait(min(remaining, 0.25))
            record = self._record(payload)
        text, after = read_log_chunk(path, offset, final=ended)
        size = path.stat().st_size if path.is_file() else 0
        return {
            "site": site or SERVER,
            "file": name,
            "text": text,
            "offset": after,
            "finished": ended and after >= size,
            "status": record.status,
        }

    def _stop_site(self, sender: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Stop a site's daemon (and the jobs it runs): an ``operate`` right."""
        actor = self._authorize_admin(sender, "operate")
        site = str(payload.get("site") or "")
        with self._cond:
            connected = site in self._sites
        if not connected:
            raise AdminError(f"{site!r} is not a connected site (see `ember job system`)")
        self.log.warning("%s stops site %s", actor.name, site)
        self.transport.request(
            SERVER,
            site,
            "system.stop",
            {"by": actor.name},
            setting_timeout("system.admin_timeout"),
        )
        return {"site": site, "stopping": True}

    def _system(self, sender: str, payload: dict[str, Any]) -> dict[str, Any]:
        self._authorize_admin(sender, "view")
        with self._cond:
            clients = sorted(self._sites)
            running = {job_id: proc.pid for job_id, proc in sorted(self._procs.items())}
        return {
            "project": self.kit.project,
            "address": self.kit.address,
            "clients": clients,
            "running_jobs": running,
            "queued_jobs": [j.id for j in self.store.list(jobstore.SUBMITTED)],
        }
