"""SimEnv's Ray backend: sites run in a pool of Ray actors, on one machine or a cluster.

The server stays in the driver (the process that called ``SimEnv.deploy``), unchanged.
Each actor hosts a group of sites: their scripts run there exactly as in the thread backend
(in-process, or as external processes started by the actor), each with its own Client API
session. A site's requests to the server (``get_task``, ``submit_result``, metrics, its end)
are relayed by one driver thread per site: one Ray call carries the reply to the site's last
request and brings back its next one. Tasks and results travel as Ray call arguments and
return values, so their arrays go through Ray's object store (numpy arrays are read
zero-copy, read-only, on the same node); the driver hands each result to the server's
transport as it comes, and the server adds results one at a time as with threads.

The pool is sized to the cluster's resources: each actor reserves one site's
``site_resources`` and lets one of its sites train at a time (the sites of an actor take
turns, like ``SimEnv(num_threads=...)``), so 10,000 sites on 16 CPUs mean 16 actors.

Ray pickles call arguments between the processes of its cluster: a Ray cluster is a trusted
boundary (as Ray's own security docs say); nothing from outside the cluster is unpickled.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import math
import queue
import tarfile
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from ember.client.link import SERVER, Topic
from ember.config import describe_setting
from ember.errors import MissingDependencyError, RecipeArgumentError
from ember.runtime.sim_backends import SiteHost

RESOURCE_KEYS = ("num_cpus", "num_gpus", "memory")
_FORWARDED = (
    Topic.GET_TASK,
    Topic.SUBMIT_RESULT,
    Topic.METRICS,
    Topic.SITE_FAILED,
    Topic.SITE_DONE,
)
_ENDS = (Topic.SITE_DONE, Topic.SITE_FAILED)


def import_ray() -> Any:
    """The ``ray`` module, or an error naming the extra that installs it."""
    try:
        return importlib.import_module("ray")
    except ImportError as exc:
        raise MissingDependencyError(
            "SimEnv(backend='ray') needs Ray, which is not installed: "
            "pip install 'ember-core[ray]' (or use backend='threads')"
        ) from exc


def check_site_resources(resources: dict[str, float] | None) -> dict[str, float]:
    """``site_resources`` checked: ``num_cpus`` (default 1), ``num_gpus`` (default 0, a
    fraction shares a GPU), ``memory`` (bytes, Ray's memory resource)."""
    given = dict(resources or {})
    unknown = sorted(set(given) - set(RESOURCE_KEYS))
    if unknown:
        raise RecipeArgumentError(
            f"site_resources has unknown keys {unknown}; it takes {list(RESOURCE_KEYS)}"
        )
    checked = {"num_cpus": 1.0, "num_gpus": 0.0, **given}
    for key, value in checked.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise RecipeArgumentError(
                f"site_resources[{key!r}] must be a number >= 0, got {value!r}"
            )
    if 1 < checked["num_gpus"] != int(checked["num_gpus"]):
        raise RecipeArgumentError(
            f"site_resources['num_gpus'] above 1 must be whole, got {checked['num_gpus']}"
        )
    return {k: float(v) for k, v in checked.items()}


def pool_size(num_sites: int, cluster: dict[str, float], per_site: dict[str, float]) -> int:
    """How many actors: as many as the cluster's resources hold, at most one per site."""
    ray_names = {"num_cpus": "CPU", "num_gpus": "GPU", "memory": "memory"}
    fits = num_sites
    for key, need in per_site.items():
        if need > 0:
            have = float(cluster.get(ray_names[key], 0.0))
            fits = min(fits, math.floor(have / need + 1e-9))
    if fits < 1:
        raise RecipeArgumentError(
            f"the Ray cluster cannot hold one site with site_resources={per_site} "
            f"(it has {cluster}); lower site_resources or add nodes"
        )
    return fits


def gpu_memory_fraction(num_gpus: float) -> float | None:
    """The share of its GPU's memory an actor with ``num_gpus`` may allocate: the fraction
    itself when it shares a GPU (0 < num_gpus < 1), None (no cap) otherwise."""
    return num_gpus if 0 < num_gpus < 1 else None


def limit_gpu_memory(num_gpus: float) -> float | None:
    """Cap this process's CUDA allocations to its GPU share (torch only: other frameworks
    are scheduled on the fraction but not capped). Ray has set ``CUDA_VISIBLE_DEVICES`` to
    the actor's GPU, so it is device 0."""
    fraction = gpu_memory_fraction(num_gpus)
    if fraction is None:
        return None
    try:
        torch = importlib.import_module("torch")
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    torch.cuda.set_per_process_memory_fraction(fraction, 0)
    return fraction


def _archive(folder: Path) -> bytes:
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:gz") as tar:
        tar.add(folder, arcname="job")
    return data.getvalue()


class _Pipe:
    def __init__(self) -> None:
        self.requests: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.replies: queue.Queue[tuple[bool, Any]] = queue.Queue()


class SiteWorker:
    """The code of one Ray actor: a group of sites, each with its script and session."""

    def __init__(
        self,
        job_dir: str,
        job_archive: bytes,
        job_id: str,
        workspace: str,
        sites: list[str],
        log_level: int,
        num_gpus: float,
    ) -> None:
        from ember.client.slots import WorkSlots
        from ember.config import Config
        from ember.job.definition import JobDefinition
        from ember.runtime.transport import InProcessTransport

        self.gpu_fraction = limit_gpu_memory(num_gpus)
        folder = Path(job_dir)
        if not folder.is_dir():
            # another host: the job folder comes with the actor
            tmp = Path(tempfile.mkdtemp(prefix="ember-ray-job-"))
            with tarfile.open(fileobj=io.BytesIO(job_archive), mode="r:gz") as tar:
                tar.extractall(tmp, filter="data")
            folder = tmp / "job"
        self.job_dir = folder
        self.job = JobDefinition.from_dir(folder)
        self.job_id = job_id
        self.workspace = Path(workspace)
        self.sites = sites
        self.log_level = log_level
        self.config = Config(self.job.config)
        self.bound = float(self.config.get("runtime.task_timeout")) + float(
            self.config.get("runtime.task_poll_interval")
        )
        self.transport = InProcessTransport(serialize=False)
        server = self.transport.add_endpoint(SERVER)
        for topic in _FORWARDED:
            server.register_handler(topic, self._forwarder(topic))
        self.pipes = {site: _Pipe() for site in sites}
        self.slots = WorkSlots(1, sites) if len(sites) > 1 else None
        self.runners: list[Any] = []
        self.logs: list[Any] = []

    def node_id(self) -> str:
        ray = importlib.import_module("ray")
        return str(ray.get_runtime_context().get_node_id())

    def _forwarder(self, topic: str) -> Any:
        def forward(sender: str, payload: Any) -> Any:
            pipe = self.pipes[sender]
            pipe.requests.put((topic, payload))
            try:
                ok, value = pipe.replies.get(timeout=self.bound)
            except queue.Empty:
                from ember.runtime.transport import TransportError

                raise TransportError(
                    f"{sender}'s {topic!r} got no reply from the driver within "
                    f"{describe_setting('runtime.task_timeout', self.bound)}"
                ) from None
            if not ok:
                from ember.runtime.transport import TransportError

                raise TransportError(str(value))
            return value

        return forward

    def start(self) -> list[str]:
        from ember.config import use_config
        from ember.runtime.inprocess_site import compile_script
        from ember.runtime.logs import NodeLogs
        from ember.runtime.site_runner import build_site_runner

        app = self.job.client
        code = (
            None
            if app.launch_external_process
            else compile_script((self.job_dir / app.script).resolve())
        )
        with use_config(self.config):
            poll = float(self.config.get("runtime.task_poll_interval"))
            for site in self.sites:
                endpoint = self.transport.add_endpoint(
                    site, relay_tensors=app.launch_external_process
                )
                site_dir = self.workspace / site
                logs = NodeLogs(
                    f"ember.job.{self.job_id}.{site}", site_dir, self.log_level, hold_open=False
                )
                self.logs.append(logs)
                self.runners.append(
                    build_site_runner(
                        site,
                        self.job,
                        self.job_id,
                        self.job_dir,
                        site_dir,
                        self.transport,
                        endpoint,
                        poll,
                        logs.logger,
                        self.slots,
                        code,
                    )
                )
            for runner in self.runners:
                runner.start()
        return self.sites

    def close(self) -> None:
        """Flush and close the sites' log files (before the actor is killed)."""
        for logs in self.logs:
            logs.close()

    def exchange(self, site: str, reply: tuple[bool, Any] | None, last: bool) -> Any:
        """Hand ``site`` the reply to its last request; return its next request."""
        pipe = self.pipes[site]
        if reply is not None:
            pipe.replies.put(reply)
        if last:
            return None
        try:
            return pipe.requests.get(timeout=self.bound)
        except queue.Empty:
            return ("__timeout__", None)


class RayBackend:
    """Sites in a pool of Ray actors (see the module's docstring)."""

    name = "ray"

    def __init__(self, address: str | None, site_resources: dict[str, float]) -> None:
        self.address = address
        self.site_resources = site_resources
        self.ray: Any = import_ray()  # the extra missing: said when SimEnv is made
        self.owns_runtime = False
        self.actors: list[Any] = []
        self.placement: dict[str, str] = {}  # site: Ray node id
        self.site_actor: dict[str, Any] = {}
        self.pumps: list[threading.Thread] = []
        self.killed = threading.Event()
        self.dead: dict[str, str] = {}

    def start(self, host: SiteHost) -> None:
        ray = self.ray
        if not ray.is_initialized():
            ray.init(
                address=self.address,
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
            )
            self.owns_runtime = self.address is None
        self.host = host
        sites = host.sites
        per_site = self.site_resources
        pool = pool_size(len(sites), ray.cluster_resources(), per_site)
        if host.job.all_sites_at_once and pool < len(sites):
            raise RecipeArgumentError(
                f"job {host.job.name!r} needs all {len(sites)} sites training at once, but the "
                f"Ray cluster holds only {pool} sites with site_resources={per_site}: "
                "lower site_resources or add nodes"
            )
        self.bound = float(host.config.get("runtime.task_timeout")) + float(
            host.config.get("runtime.task_poll_interval")
        )
        groups = [sites[i::pool] for i in range(pool)]
        archive = ray.put(_archive(host.job_dir))
        options: dict[str, Any] = {
            "num_cpus": per_site["num_cpus"],
            "num_gpus": per_site["num_gpus"],
            "scheduling_strategy": "SPREAD",
            "max_restarts": 0,
        }
        if per_site.get("memory"):
            options["memory"] = per_site["memory"]
        worker_class = ray.remote(SiteWorker)
        for group in groups:
            actor = worker_class.options(max_concurrency=2 * len(group) + 2, **options).remote(
                str(host.job_dir),
                archive,
                host.job_id,
                str(host.workspace),
                group,
                host.log_level,
                per_site["num_gpus"],
            )
            self.actors.append(actor)
        nodes = self._get([a.node_id.remote() for a in self.actors])
        for group, node in zip(groups, nodes, strict=True):
            for site in group:
                self.placement[site] = node
        for group, actor in zip(groups, self.actors, strict=True):
            for site in group:
                self.site_actor[site] = actor
        for site in sites:
            host.transport.add_endpoint(site)
        self._get([a.start.remote() for a in self.actors])
        host.server_log.info(
            "ray backend: %d sites on %d actors over %d nodes", len(sites), pool, len(set(nodes))
        )
        for group, actor in zip(groups, self.actors, strict=True):
            for site in group:
                pump = threading.Thread(
                    target=self._pump, args=(site, actor), name=f"ember-ray-{site}", daemon=True
                )
                self.pumps.append(pump)
                pump.start()

    def _get(self, refs: Any) -> Any:
        from ember.errors import EmberError

        try:
            return self.ray.get(refs, timeout=self.bound)
        except self.ray.exceptions.GetTimeoutError:
            raise EmberError(
                "the Ray actors did not start within "
                f"{describe_setting('runtime.task_timeout', self.bound)}"
            ) from None

    def _pump(self, site: str, actor: Any) -> None:
        """Relay ``site``'s requests between its actor and the server, until it ends."""
        ray = self.ray
        transport = self.host.transport
        reply: tuple[bool, Any] | None = None
        while True:
            try:
                request = ray.get(actor.exchange.remote(site, reply, False), timeout=self.bound)
            except ray.exceptions.GetTimeoutError:
                timeout = describe_setting("runtime.task_timeout", self.bound)
                self._fail(site, f"site {site}'s Ray actor sent nothing within {timeout}")
                return
            except Exception as exc:  # RayActorError, a lost node, ...
                self._fail(site, f"site {site}'s Ray actor died: {type(exc).__name__}: {exc}")
                return
            reply = None
            topic, payload = request
            if topic == "__timeout__":
                timeout = describe_setting("runtime.task_timeout", self.bound)
                self._fail(site, f"site {site}'s script sent nothing within {timeout}")
                return
            if self.killed.is_set():
                return
            try:
                value: tuple[bool, Any] = (True, transport.request(site, SERVER, topic, payload))
            except Exception as exc:
                value = (False, f"{type(exc).__name__}: {exc}")
            if topic in _ENDS:
                actor.exchange.remote(site, value, True)
                return
            reply = value
            del request, payload

    def _fail(self, site: str, reason: str) -> None:
        self.dead[site] = reason
        if self.killed.is_set():
            return
        with contextlib.suppress(Exception):  # the job is over; nothing is listening
            self.host.transport.request(site, SERVER, Topic.SITE_FAILED, {"reason": reason})

    def stop(self, timeout: float) -> list[str]:
        deadline = time.monotonic() + timeout
        for pump in self.pumps:
            pump.join(max(0.0, deadline - time.monotonic()))
        late = [p.name.removeprefix("ember-ray-") for p in self.pumps if p.is_alive()]
        if self.actors and not self.killed.is_set():
            with contextlib.suppress(Exception):  # a dead actor has nothing to flush
                self.ray.get(
                    [a.close.remote() for a in self.actors],
                    timeout=max(1.0, deadline - time.monotonic()),
                )
        self.kill()
        if self.owns_runtime and self.ray is not None:
            self.ray.shutdown()
            self.owns_runtime = False
        return late

    def kill(self) -> None:
        """Stop every actor now (an aborted job, or the job's end)."""
        self.killed.set()
        for actor in self.actors:
            with contextlib.suppress(Exception):  # already gone
                self.ray.kill(actor, no_restart=True)
        self.actors = []
