"""A job's server side in its own process: ``python -m ember.system.server_job_process
SERVER_FOLDER JOB_ID``.

It connects to the server daemon's hub as ``server.job.<id>`` with the server's certificate,
runs the job's workflows (the same :class:`~ember.runtime.server_job.ServerJob` SimEnv runs)
against the sites' job processes, writes the results under ``jobs/<id>/workspace`` and
reports the outcome to the daemon. A crash here cannot take the daemon down: the daemon
sees the process end and fails the job with the reason.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from ember.config import Config, get_setting, setting_timeout, use_process_config
from ember.job.definition import JobDefinition
from ember.runtime.logs import SITE_LOGS, LogCollector, NodeLogs
from ember.runtime.process_memory import peak_rss_bytes
from ember.runtime.progress import Progress
from ember.runtime.server_job import ServerJob
from ember.streaming import FileReceiver, bind_node
from ember.system.jobstore import JobStore
from ember.system.kit import Kit
from ember.system.lifeline import watch_parent
from ember.system.scoped import JobTransport, logical_name, net_name, split_job_name

SERVER = "server"

#: what a spare of this process (:mod:`ember.system.warm_start`) imports ahead of its job:
#: the modules ``run`` imports late
WARM_IMPORTS = ("ember.net", "ember.net.datalink")


def run(folder: Path, job_id: str) -> int:
    """Run the job; returns the process exit code (0 once the outcome is reported)."""
    kit = Kit.load(folder)
    store = JobStore(kit.folder)
    record = store.get(job_id)
    store.close()
    if record is None:
        print(f"unknown job {job_id}", file=sys.stderr)
        return 2
    job_dir = store.job_dir(job_id)
    workspace = store.workspace(job_id)
    job = JobDefinition.from_dir(job_dir)
    use_process_config(Config(job.config))
    server_dir = workspace / SERVER
    logs = NodeLogs(f"ember.job.{job_id}.server", server_dir, logging.INFO)
    log = logs.logger
    sites = record.sites

    from ember.net import NetNode, NetTransport
    from ember.net.datalink import DataLinks, LinkSettings

    node = NetNode(net_name(SERVER, job_id), kit.address, kit.tls, server_name=kit.host)
    links = DataLinks(node, kit.tls, LinkSettings.current())

    def link_refusal(name: str) -> str | None:
        parts = split_job_name(name)
        if parts is None or parts[1] != job_id or parts[0] not in sites:
            return f"{name} is not a site of job {job_id}"
        return None

    port = links.listen(kit.bind_host, link_refusal, lambda name: logical_name(name, job_id))
    node.start(setting_timeout("system.start_timeout"))
    transport = NetTransport(node, links)
    jobs = JobTransport(transport, job_id)
    endpoint = jobs.add_endpoint(SERVER, lazy_tensors=True)
    if port:
        log.info("data links on port %d", port)
    server = ServerJob(
        job,
        job_id,
        job_dir,
        server_dir,
        sites,
        float(get_setting("runtime.task_timeout")),
        Progress(job.name, enabled=False),
        log,
    )
    server.attach(endpoint)  # type: ignore[arg-type]
    FileReceiver(server_dir / "uploads").attach(endpoint)
    LogCollector(server_dir / SITE_LOGS, sites).attach(endpoint)  # enable_log_streaming

    def abort(sender: str, payload: Any) -> bool:
        reason = payload.get("reason") if isinstance(payload, dict) else None
        server.abort(str(reason or "aborted by an admin"))
        return True

    def site_lost(sender: str, payload: Any) -> bool:
        if isinstance(payload, dict) and payload.get("site") in server.board.sites:
            server.board.fail_site(str(payload["site"]), str(payload.get("reason", "lost")))
        return True

    endpoint.register_handler("job.abort", abort)

    def site_rejoin(sender: str, payload: Any) -> bool:
        site = payload.get("site") if isinstance(payload, dict) else None
        if sender != SERVER or site not in server.board.sites:
            return False
        back = server.board.rejoin(str(site))
        if back:
            log.info("site %s restarted: it rejoins at its next task", site)
        return back

    endpoint.register_handler("job.site_lost", site_lost)
    endpoint.register_handler("job.site_rejoin", site_rejoin)
    assert endpoint.stream is not None
    bind_node(endpoint.stream)
    try:
        server.run()
        if not server.board.aborted:
            # the sites learn the end on their next request; wait for them to leave (an
            # aborted job's sites are stopped by their daemons instead)
            server.board.wait_sites_done(float(get_setting("runtime.site_stop_timeout")))
        (workspace / "meta.json").write_text(
            json.dumps(
                {
                    "job_id": job_id,
                    "job_name": job.name,
                    "sites": sites,
                    "status": server.status,
                    "message": server.message,
                },
                indent=2,
            ),
            encoding="utf-8",
        )
        from ember.runtime.plots import plot_round_metrics

        try:
            plot_round_metrics(server.records.rounds, server_dir / "round_metrics.png")
        except Exception as exc:  # a missing plot must not fail a finished job
            log.warning("could not plot round metrics: %s", exc)
        log.info("transfers: %s", json.dumps(endpoint.stream.fetcher.transfer_stats()))
        log.info("memory: %s", json.dumps({"peak_rss_bytes": peak_rss_bytes()}))
        # every line in its file first: the daemon takes the job as ended (and its result as
        # ready to download) on this report, not when this process is gone
        logs.close()
        transport.request(
            node.name,
            SERVER,
            "job.finished",
            {"job_id": job_id, "status": server.status, "message": server.message},
            setting_timeout("system.admin_timeout"),
        )
    finally:
        logs.close()
        transport.close()
        links.close()
        node.close()
    return 0


def main() -> None:
    folder, job_id = sys.argv[1], sys.argv[2]
    watch_parent(os.getppid())
    sys.exit(run(Path(folder), job_id))


if __name__ == "__main__":
    main()
