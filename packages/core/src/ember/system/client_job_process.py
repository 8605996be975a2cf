"""A job's site side in its own process: ``python -m ember.system.client_job_process
CLIENT_FOLDER JOB_ID``.

It connects to the server's hub as ``<site>.job.<id>`` with the site's certificate and runs
the site's training script exactly as SimEnv does (in a thread, or in its own process with
``launch_external_process``), talking to the job's server process. It ends when the job
does, and with its daemon: if the client daemon dies, the job's processes go too.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

from ember.config import Config, get_setting, setting_timeout, use_process_config
from ember.job.definition import JobDefinition
from ember.runtime.logs import FlushingTransport, NodeLogs, start_log_streaming
from ember.runtime.process_memory import peak_rss_bytes
from ember.runtime.site_runner import build_site_runner
from ember.system.kit import Kit
from ember.system.lifeline import watch_parent
from ember.system.scoped import JobTransport, net_name

#: what a spare of this process (:mod:`ember.system.warm_start`) imports ahead of its job:
#: the modules ``run`` imports late
WARM_IMPORTS = ("ember.net", "ember.net.datalink", "ember.client")


def job_root(folder: Path, job_id: str) -> Path:
    """Where a client keeps one job: ``job/`` (its files) and ``workspace/`` (its outputs)."""
    return folder / "jobs" / job_id


def run(folder: Path, job_id: str) -> int:
    kit = Kit.load(folder)
    site = kit.name
    root = job_root(kit.folder, job_id)
    job = JobDefinition.from_dir(root / "job")
    use_process_config(Config(job.config))
    site_dir = root / "workspace"
    logs = NodeLogs(f"ember.job.{job_id}.{site}", site_dir, logging.INFO)

    from ember.net import NetNode, NetTransport
    from ember.net.datalink import DataLinks, LinkSettings

    node = NetNode(net_name(site, job_id), kit.address, kit.tls, server_name=kit.host)
    node.start(setting_timeout("system.start_timeout"))
    links = DataLinks(node, kit.tls, LinkSettings.current())
    links.dial(kit.host, server_name=kit.host)
    transport = NetTransport(node, links)
    jobs = JobTransport(transport, job_id)
    endpoint = jobs.add_endpoint(site, relay_tensors=job.client.launch_external_process)
    streamer = start_log_streaming(site, site_dir, jobs.request)  # enable_log_streaming
    runner = build_site_runner(
        site,
        job,
        job_id,
        root / "job",
        site_dir,
        jobs if streamer is None else FlushingTransport(jobs, streamer),
        endpoint,  # type: ignore[arg-type]
        float(get_setting("runtime.task_poll_interval")),
        logs.logger,
        site_folder=kit.folder,  # its local/privacy.json: filters the site always applies
    )
    try:
        runner.start()
        runner.join(None)
        if streamer is not None:  # the last lines, while the server's process still listens
            streamer.close()
            streamer = None
        assert endpoint.stream is not None
        logs.logger.info("transfers: %s", json.dumps(endpoint.stream.fetcher.transfer_stats()))
        logs.logger.info("memory: %s", json.dumps({"peak_rss_bytes": peak_rss_bytes()}))
    finally:
        if streamer is not None:
            streamer.close()
        logs.close()
        transport.close()
        links.close()
        node.close()
    return 0


def main() -> None:
    folder, job_id = sys.argv[1], sys.argv[2]
    watch_parent(int(sys.argv[3]) if len(sys.argv) > 3 else os.getppid())
    sys.exit(run(Path(folder), job_id))


if __name__ == "__main__":
    main()
