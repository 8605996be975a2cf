"""Build the runner of one site of a job: its link to the server (wrapped by the job's site
workflow, if any), its Client API config, and the script in a thread or a subprocess.

SimEnv builds every site of a job in one process; a networked env's client builds its one
site in the job's process. Both go through :func:`build_site_runner`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import CodeType
from typing import Any

from ember.client.link import ServerLink, TransportLink
from ember.client.session import ClientSession
from ember.client.slots import WorkSlots
from ember.common.carriers import Carrier
from ember.filters.base import FilterError
from ember.filters.chain import FilterChain
from ember.filters.link import FilterLink
from ember.filters.policy import site_policy
from ember.job.definition import APP_DIR, JobDefinition
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
    site_folder: Path | None = None,
    carrier: Carrier | None = None,
) -> InProcessSite | SubprocessSite | RefusedSite:
    """The runner of ``site``'s script (not started); a :class:`RefusedSite` when the site
    cannot run the job as it must (its filters or privacy policy). ``transport`` and
    ``endpoint`` are the site's messaging API (the endpoint relays tensors when the script
    has its own process);
    ``code``: the script compiled once for all in-process sites of this process;
    ``echo(site, line)``: shows each line the script prints (SimEnv's console); every line
    also goes to the site's ``log.txt``. ``site_folder``: the site's own folder (its startup
    kit), whose ``local/privacy.json`` names filters the site always applies.
    ``carrier``: the thread an in-process script shares with other sites' (None: its own)."""
    app = job.client.for_site(site)  # with the site's per_site_config entry
    script = (job_dir / app.script).resolve()
    stream = endpoint.stream
    assert stream is not None
    link: ServerLink = TransportLink(transport, site)
    workflow = None if app.site_workflow is None else load_target(app.site_workflow["target"])
    try:
        # the job's client filters, then the site's own policy: the one place a site filters
        specs = [*job.filters, *site_policy(site, site_folder)]
        chain = FilterChain("client", specs, job_id, job_dir / APP_DIR)
        if chain:
            refuse_filters_around(workflow, site)
            chain.build([site])
    except FilterError as exc:  # the site's own decision: the job fails at this site, by name
        return RefusedSite(site, link, str(exc), log)
    if chain:
        link = FilterLink(link, chain, site, fetcher=stream.fetcher)
    client_tracking = any(spec.client_side for spec in tracking_specs(job.tracking))
    if workflow is not None or client_tracking:
        site_dir.mkdir(parents=True, exist_ok=True)  # they write there; else made on demand
    if workflow is not None:
        assert app.site_workflow is not None
        link = workflow(
            link,
            peers=PeerLink(site, endpoint, transport),
            site=site,
            site_dir=site_dir,
            job_dir=job_dir,
            fetcher=stream.fetcher,
            params_format=app.params_format,
            **app.site_workflow.get("args", {}),
        )
    if client_tracking:
        # client-side tracking: this site writes what its scripts log in its own folder
        sink = MetricSink(
            site_dir, job.tracking, side="client", job=job, job_id=job_id, sites=[site], log=log
        )
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
        session,
        script,
        app.args,
        code or compile_script(script),
        stream,
        echo=echo,
        carrier=carrier,
    )


@dataclass(frozen=True)
class _SiteName:
    site: str


class RefusedSite:
    """The runner of a site that refuses the job: started, it reports ``reason`` as the
    site's failure (the server then fails the site, or the job below ``min_clients``,
    naming both) and runs nothing."""

    def __init__(self, site: str, link: ServerLink, reason: str, log: logging.Logger) -> None:
        self.session = _SiteName(site)
        self.link = link
        self.reason = reason
        self.log = log

    def start(self) -> None:
        self.log.error("%s", self.reason)
        self.link.report_failure(self.reason)

    def join(self, timeout: float | None) -> bool:
        return True


def refuse_filters_around(workflow: Any, site: str | None = None) -> None:
    """Refuse a site workflow whose traffic filters cannot see (``sends_around_filters``)
    when ``site`` (None: the job itself) has client filters: data must not leave unfiltered."""
    if workflow is None or not getattr(workflow, "sends_around_filters", False):
        return
    around = (
        f"its site workflow {workflow.__name__} sends data where filters cannot apply (to "
        "peers or through a tunnel)"
    )
    if site is None:
        raise FilterError(
            f"this job cannot take client filters: {around}; drop the filter, or use a "
            "recipe whose results go through the server"
        )
    raise FilterError(
        f"{site} refuses the job: the site has client filters (the job's, or its privacy "
        f"policy's local/privacy.json) and {around}. Run the job at sites without client "
        "filters, or use a recipe whose results go through the server"
    )


def sink_forwards(tracking: object) -> bool:
    """Whether a site sends what its scripts log to the server: only when a server-side
    tracker writes it (client-side only: the values stay at the site)."""
    return any(spec.server_side for spec in tracking_specs(tracking))
