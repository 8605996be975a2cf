"""The client daemon: one site's standing connection to the server.

It dials out (a site opens no port), takes job deployments — downloads the job's files and
starts the job's process (:mod:`ember.system.client_job_process`), one per job — aborts
jobs, and answers for their logs. Connection loss is the net layer's business: the node
reconnects with backoff.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

from ember.config import get_setting
from ember.runtime.logs import NodeLogs
from ember.system.archive import temp_zip, unpack
from ember.system.client_job_process import job_root
from ember.system.kit import Kit
from ember.system.lifeline import JobProcessStarter

SERVER = "server"


class ClientDaemon:
    """One site of a project."""

    def __init__(self, folder: Path) -> None:
        self.kit = Kit.load(folder)
        if self.kit.kind != "client":
            raise ValueError(f"{folder} holds a {self.kit.kind} kit, not a client kit")
        self.site = self.kit.name
        self.logs = NodeLogs(f"ember.client.{self.site}", self.kit.folder, logging.INFO)
        self.log = self.logs.logger
        self._lock = threading.Lock()
        self._jobs: dict[str, subprocess.Popen[bytes]] = {}
        self._starter = JobProcessStarter(
            "ember.system.client_job_process", bool(get_setting("system.warm_job_processes"))
        )

    def start(self, timeout: float) -> None:
        """Connect to the server (raises ConnectError after ``timeout``)."""
        from ember.net import NetNode, NetTransport

        self.node = NetNode(self.site, self.kit.address, self.kit.tls, server_name=self.kit.host)
        self.transport = NetTransport(self.node)
        self.endpoint = self.transport.add_endpoint(self.site)
        self.endpoint.register_handler("job.deploy", self._deploy)
        self.endpoint.register_handler("job.abort", self._abort)
        self.endpoint.register_handler("job.logs", self._logs)
        self.endpoint.register_handler("system.stop", self._stop_requested)
        self.node.start(timeout)
        self.log.info("client %s connected to %s", self.site, self.kit.address)

    def stop(self) -> None:
        with self._lock:
            jobs = dict(self._jobs)
        for job_id, proc in jobs.items():
            self._kill(job_id, proc)
        self._starter.close()
        self.transport.close()
        self.node.close()
        self.logs.close()

    def _deploy(self, sender: str, payload: Any) -> dict[str, Any]:
        if sender != SERVER or not isinstance(payload, dict):
            raise ValueError(f"{sender} cannot deploy jobs here")
        job_id = str(payload["job_id"])
        self._check_submitter(payload)
        with self._lock:
            old = self._jobs.get(job_id)
        if old is not None:  # a redeployment (the server restarted): the old run stops first
            self._kill(job_id, old)
        root = job_root(self.kit.folder, job_id)
        if payload.get("resume"):  # a resumed job: new files, the workspace (its logs) kept
            shutil.rmtree(root / "job", ignore_errors=True)
        elif root.exists():
            shutil.rmtree(root)
        tmp = temp_zip(f"ember-deploy-{job_id}-")
        try:
            assert self.endpoint.stream is not None
            self.endpoint.stream.fetcher.download_file(
                str(payload["owner"]), str(payload["ref"]), tmp
            )
            unpack(tmp, root / "job")
        finally:
            shutil.rmtree(tmp.parent, ignore_errors=True)
        try:
            self._check_code(root / "job")
        except PermissionError:
            shutil.rmtree(root, ignore_errors=True)
            raise
        # its own session: an abort kills the job's process group, its scripts too
        proc = self._starter.start(
            [str(self.kit.folder), job_id, str(os.getpid())], root / "workspace" / "process.log"
        )
        with self._lock:
            self._jobs[job_id] = proc
        threading.Thread(
            target=self._watch, args=(job_id, proc), name=f"ember-job-{job_id}", daemon=True
        ).start()
        self.log.info("job %s: process %d started", job_id, proc.pid)
        return {"pid": proc.pid}

    def _check_submitter(self, payload: dict[str, Any]) -> None:
        """This site's own policy (``startup/authorization.json``): may the submitter's role
        run jobs here? A site without a policy file (a PoC) runs every job."""
        path = self.kit.startup / "authorization.json"
        if not path.is_file():
            return
        from ember.provision.policy import allowed

        role = str(payload.get("submitter_role") or "")
        who = f"{payload.get('submitter')} ({role} of {payload.get('submitter_org') or 'no org'})"
        if not allowed(
            json.loads(path.read_text(encoding="utf-8")),
            role=role,
            right="submit_job",
            actor_name=str(payload.get("submitter") or ""),
            actor_org=str(payload.get("submitter_org") or ""),
            job_submitter=None,
            job_submitter_org=None,
        ):
            raise PermissionError(f"{self.site}'s authorization policy refuses jobs of {who}")

    def _check_code(self, job_dir: Path) -> None:
        """``startup/resources.json``: with ``allow_custom_code`` false, every Python file a
        job brings must be one the site trusts (its SHA-256 in ``trusted_code_sha256``)."""
        path = self.kit.startup / "resources.json"
        resources = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        if resources.get("allow_custom_code", True):
            return
        trusted = set(resources.get("trusted_code_sha256") or [])
        for file in sorted(job_dir.rglob("*.py")):
            digest = hashlib.sha256(file.read_bytes()).hexdigest()
            if digest not in trusted:
                raise PermissionError(
                    f"{self.site} runs no custom code (resources.json allow_custom_code=false) "
                    f"and does not trust {file.relative_to(job_dir)} (sha256 {digest}); its "
                    "operator may add the hash to trusted_code_sha256"
                )

    def _stop_requested(self, sender: str, payload: Any) -> bool:
        """The server relays an admin's order (checked there) to stop this daemon: it ends
        as on SIGTERM, after this reply is sent."""
        if sender != SERVER:
            raise ValueError(f"{sender} cannot stop this site")
        by = payload.get("by") if isinstance(payload, dict) else None
        self.log.warning("stopping: asked by %s through the server", by)
        os.kill(os.getpid(), signal.SIGTERM)  # the daemon's loop stops it, replies flushed
        return True

    def _watch(self, job_id: str, proc: subprocess.Popen[bytes]) -> None:
        code = proc.wait()
        with self._lock:
            if self._jobs.get(job_id) is proc:  # not a redeployment's process
                del self._jobs[job_id]
        self.log.info("job %s: process ended with code %d", job_id, code)

    def _kill(self, job_id: str, proc: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(float(get_setting("system.stop_timeout")))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

    def _abort(self, sender: str, payload: Any) -> bool:
        if sender != SERVER or not isinstance(payload, dict):
            raise ValueError(f"{sender} cannot abort jobs here")
        with self._lock:
            proc = self._jobs.get(str(payload.get("job_id")))
        if proc is None:
            return False
        if payload.get("wait"):  # a resuming server: reply once the process is gone
            self._kill(str(payload["job_id"]), proc)
            return True
        threading.Thread(
            target=self._kill, args=(str(payload["job_id"]), proc), daemon=True
        ).start()
        return True

    def _logs(self, sender: str, payload: Any) -> dict[str, str]:
        if sender != SERVER or not isinstance(payload, dict):
            raise ValueError(f"{sender} cannot read logs here")
        workspace = job_root(self.kit.folder, str(payload.get("job_id"))) / "workspace"
        parts = []
        for name in ("log.txt", "process.log"):
            path = workspace / name
            if path.is_file():
                parts.append(
                    f"==> {name} <==\n{path.read_text(encoding='utf-8', errors='replace')}"
                )
        return {"text": "\n".join(parts)}
