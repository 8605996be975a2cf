"""The admin API's client: what the ``ember job`` commands, PocEnv and ProdEnv call.

An admin connects with its startup kit (its certificate says who it is) as a short-lived
node ``admin:<name>:<nonce>``; job folders and results travel through the download service.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ember.config import setting_timeout
from ember.system.archive import pack, temp_zip, unpack
from ember.system.kit import Kit

SERVER = "server"


def check_job_settings(job_dir: Path) -> None:
    """Refuse, before anything is sent, a job whose settings break a declared relation
    (:func:`ember.config.check_relations`); a malformed job.json is the server's to refuse."""
    from ember.config import check_relations

    try:
        data = json.loads((job_dir / "job.json").read_text(encoding="utf-8"))
        overrides = dict(data.get("config") or {})
        name = str(data.get("name", job_dir.name))
    except (OSError, ValueError, TypeError, AttributeError):
        return
    check_relations(overrides, what=f"job {name!r}")


class AdminClient:
    """Admin commands against a running server."""

    def __init__(self, kit: Kit | str | Path) -> None:
        self.kit = kit if isinstance(kit, Kit) else Kit.load(kit)
        if self.kit.kind != "admin":
            raise ValueError(
                f"{self.kit.folder} holds a {self.kit.kind} kit; admin commands need an "
                "admin's startup kit"
            )
        self.name = f"admin:{self.kit.name}:{uuid.uuid4().hex[:8]}"
        self.timeout = setting_timeout("system.admin_timeout")
        self._node: Any = None

    @property
    def connected(self) -> bool:
        return self._node is not None

    @property
    def linked(self) -> bool:
        """Whether the connection is up right now (not lost, or being dialled again)."""
        return self._node is not None and bool(self._node.connected)

    def connect(self, timeout: float | None = None) -> AdminClient:
        from ember.net import NetNode, NetTransport

        node = NetNode(self.name, self.kit.address, self.kit.tls, server_name=self.kit.host)
        try:
            node.start(timeout if timeout is not None else self.timeout)
        except BaseException:
            node.close(0.0)
            raise
        self._node = node  # connected only once registered
        self._transport = NetTransport(node)
        self._endpoint = self._transport.add_endpoint(self.name)
        return self

    def close(self) -> None:
        if self._node is not None:
            self._transport.close()
            self._node.close()
            self._node = None

    def __enter__(self) -> AdminClient:
        return self.connect() if self._node is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, topic: str, payload: dict[str, Any], timeout: float | None = None) -> Any:
        if self._node is None:
            self.connect()
        return self._transport.request(
            self.name, SERVER, topic, payload, timeout if timeout is not None else self.timeout
        )

    def submit(self, job_dir: str | Path, sites: list[str] | None = None) -> dict[str, Any]:
        """Submit an exported job folder; returns its record (``id``, ``status``...)."""
        job_dir = Path(job_dir)
        if not (job_dir / "job.json").is_file():
            raise ValueError(
                f"{job_dir} is not a job folder (no job.json); export one with "
                "`python job.py --export --export-dir DIR`"
            )
        check_job_settings(job_dir)
        tmp = temp_zip("ember-admin-")
        try:
            archive = pack(job_dir, tmp)
            stream = self._endpoint.stream
            assert stream is not None  # a NetTransport endpoint has a download service
            ref = stream.downloader.add_file(archive, receivers=1)
            return self._call(  # type: ignore[no-any-return]
                "admin.submit", {"owner": self.name, "ref": ref, "sites": sites or []}
            )
        finally:
            shutil.rmtree(tmp.parent, ignore_errors=True)

    def list_jobs(self) -> list[dict[str, Any]]:
        return self._call("admin.list", {})  # type: ignore[no-any-return]

    def status(self, job_id: str, wait: float = 0.0) -> dict[str, Any]:
        """The job's record; with ``wait``, returns once it finished or ``wait`` s passed."""
        return self._call(  # type: ignore[no-any-return]
            "admin.status", {"job_id": job_id, "wait": wait}, timeout=wait + self.timeout
        )

    def abort(self, job_id: str) -> dict[str, Any]:
        return self._call("admin.abort", {"job_id": job_id})  # type: ignore[no-any-return]

    def download(self, job_id: str, dest: str | Path) -> Path:
        """The job's result workspace, unpacked into ``dest`` (replaced)."""
        offer = self._call("admin.download", {"job_id": job_id})
        dest = Path(dest)
        tmp = temp_zip("ember-result-")
        try:
            stream = self._endpoint.stream
            assert stream is not None  # a NetTransport endpoint has a download service
            stream.fetcher.download_file(str(offer["owner"]), str(offer["ref"]), tmp)
            if dest.exists():
                shutil.rmtree(dest)
            return unpack(tmp, dest)
        finally:
            shutil.rmtree(tmp.parent, ignore_errors=True)

    def logs(self, job_id: str, site: str | None = None) -> str:
        reply = self._call("admin.logs", {"job_id": job_id, "site": site})
        return str(reply["text"])

    def read_logs(
        self,
        job_id: str,
        site: str | None = None,
        offset: int = 0,
        wait: float = 0.0,
        file: str = "log.txt",
    ) -> dict[str, Any]:
        """The job's log (the server's, or the copy ``site`` streams) from byte ``offset``:
        ``text``, the next ``offset``, and ``finished`` once the job ended and all of it was
        read; waits up to ``wait`` s (30 at most) for new lines while the job runs."""
        return self._call(  # type: ignore[no-any-return]
            "admin.logs",
            {"job_id": job_id, "site": site, "offset": offset, "wait": wait, "file": file},
            timeout=wait + self.timeout,
        )

    def follow_logs(
        self, job_id: str, site: str | None = None, file: str = "log.txt", wait: float = 5.0
    ) -> Iterator[str]:
        """The job's log as it grows, piece by piece (whole lines), until the job ended."""
        offset = 0
        while True:
            reply = self.read_logs(job_id, site, offset, wait, file)
            if reply["text"]:
                yield str(reply["text"])
            offset = int(reply["offset"])
            if reply["finished"]:
                return

    def system(self) -> dict[str, Any]:
        return self._call("admin.system", {})  # type: ignore[no-any-return]

    def stop_site(self, site: str) -> dict[str, Any]:
        """Stop a site's daemon and its jobs (needs the ``operate`` right)."""
        return self._call("admin.stop_site", {"site": site})  # type: ignore[no-any-return]
