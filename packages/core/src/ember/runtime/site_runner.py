"""Build the runner of one site of a job: its link to the server (wrapped by the job's site
workflow, if any), its Client API config, and the script in a thread or a subprocess.

SimEnv builds every site of a job in one process; a networked env's client builds its one
site in the job's process. Both go through :func:`build_site_runner`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from types import CodeType
from typing import Any

from ember.client.link import ServerLink, TransportLink
from ember.client.session import ClientSession
from ember.client.slots import WorkSlots
from ember.job.definition import JobDefinition
from ember.plugins.entries import load_target
from ember.runtime.inprocess_site import InProcessSite, compile_script
from ember.runtime.peers import PeerLink
from ember.runtime.records import MetricSink
from ember.runtime.subprocess_site import SubprocessSite
from ember.runtime.trackers import TrackingLink, tracking_specs
from ember.runtime.transport import Endpoint


def build_site_runner(
    site: str,
    job: JobDefinition,
    job_id: str,
    job_dir: Path,
    site_dir: Path,
    transport: Any,
    endpoint: Endpoint,
    poll_interval: float,
    log: logging.Logger,
    slots: WorkSlots | None = None,
    code: CodeType | None = None,
    echo: Callable[[str, str], None] | None = None,
) -> InProcessSite | SubprocessSite:
    """The runner of ``site``'s script (not started). ``transport`` and ``endpoint`` are the
    site's messaging API (the endpoint relays tensors when the script has its own process);
    ``code``: the script compiled once for all in-process sites of this process;
    ``echo(site, line)``: shows each line the script prints (SimEnv's console); every line
    also goes to the site's ``log.txt``."""
    app = job.client.for_site(site)  # with the site's per_site_config entry
    script = (job_dir / app.script).resolve()
    stream = endpoint.stream
    assert stream is not None
    link: ServerLink = TransportLink(transport, site)
    if app.site_workflow is not None:
        link = load_target(app.site_workflow["target"])(
            link,
            peers=PeerLink(site, endpoint, transport),
            site=site,
            site_dir=site_dir,
            job_dir=job_dir,
            fetcher=stream.fetcher,
            params_format=app.params_format,
            **app.site_workflow.get("args", {}),
        )
    if any(spec.client_side for spec in tracking_specs(job.tracking)):
        # client-side tracking: this site writes what its scripts log in its own folder
        sink = MetricSink(site_dir, job.tracking, side="client", job=job, job_id=job_id,
                          sites=[site], log=log)
        link = TrackingLink(link, sink, forward=sink_forwards(job.tracking))
    client_config = {
        "site_name": site,
        "job_id": job_id,
        "workspace": str(site_dir),
        "train_args": app.args,
        "params_transfer_type": app.params_transfer_type,
        "client_memory_gc_rounds": app.client_memory_gc_rounds,
        "params_format": app.params_format,
        "cuda_empty_cache": app.cuda_empty_cache,
    }
    if app.launch_external_process:
        if not app.launch_once:
            # the script is started anew for each task; its session ends once it has
            # sent that task's result
            client_config["launch_once"] = False
        return SubprocessSite(
            site,
            job_id,
            link,
            client_config,
            script,
            app.args,
            app.command,
            site_dir,
            site_dir / "log.txt",
            log,
            stream,
            job.config,
            launch_once=app.launch_once,
            echo=echo,
        )
    session = ClientSession(site, job_id, link, client_config, poll_interval, slots, log)
    return InProcessSite(
        session, script, app.args, code or compile_script(script), stream, echo=echo
    )


def sink_forwards(tracking: object) -> bool:
    """Whether a site sends what its scripts log to the server: only when a server-side
    tracker writes it (client-side only: the values stay at the site)."""
    return any(spec.server_side for spec in tracking_specs(tracking))
