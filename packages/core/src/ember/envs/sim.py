"""``SimEnv``: the whole federation in one process, for development and research at scale."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ember.errors import RecipeArgumentError
from ember.runtime.logs import resolve_level
from ember.runtime.sim_backends import SHARED_SITE_LOGS
from ember.runtime.simulation import Simulation

if TYPE_CHECKING:
    from ember.job.definition import Deployable

DEFAULT_WORKSPACE_ROOT = "/tmp/ember/simulation"
#: the folders of a job's workspace that are not a site's: the exported job, the server's,
#: the sites' shared logs (``sim.shared_site_logs``); no site may have one of these names
WORKSPACE_FOLDERS = ("job", "server", SHARED_SITE_LOGS)


class SimRun:
    """The Run of a simulated job."""

    def __init__(self, simulation: Simulation) -> None:
        self.simulation = simulation

    def get_job_id(self) -> str:
        return self.simulation.job_id

    def get_status(self) -> str:
        return self.simulation.status

    def get_message(self) -> str:
        """Why the job failed or was aborted (sites and tracebacks); empty when it completed."""
        return self.simulation.message

    def get_result(self, timeout: float | None = None, clean_up: bool = False) -> str:
        """See :meth:`ember.envs.run.Run.get_result`; a simulation stops with its job, so
        ``clean_up`` has nothing more to stop."""
        from ember.config import describe_timeout
        from ember.envs.run import RunTimeout, wait_limit

        timeout = wait_limit(timeout)
        if not self.simulation.wait(timeout):
            raise RunTimeout(
                f"job {self.get_job_id()} did not finish within {describe_timeout(timeout)} "
                f"(status {self.get_status()})"
            )
        return str(self.simulation.workspace)

    def wait_for_plot(self, timeout: float | None = None) -> Path | None:
        """The round-metrics PNG (``server/round_metrics.png``), once written: it is rendered
        in a process of its own after the job ends, so :meth:`get_result` does not wait for
        it. None when the job has no metrics or the plot could not be made (the reason is a
        WARNING in ``server/log.txt``)."""
        return self.simulation.wait_for_plot(timeout)

    def abort(self) -> None:
        self.simulation.abort()
        self.simulation.wait()


class SimEnv:
    """Simulate ``num_clients`` sites (``site-1`` ...) or the named ``clients`` in this process.

    Each site's script runs in its own thread (or subprocess, with
    ``launch_external_process``); ``num_threads`` caps how many sites train at once.
    ``memory_budget`` (a fraction of the available memory, ``<= 1``, or bytes; 0: off; the
    default is the setting ``sim.memory_budget``) caps them further so that the process's
    memory stays under that budget, from each site's footprint (docs/simulation.md,
    "Memory budget").
    Results go to ``<workspace_root>/<job name>/``. With ``resume=True`` a job whose
    workspace holds a checkpoint (a simulation that was killed) goes on from its last
    completed round instead of starting over (docs/reliability.md).
    """

    def __init__(
        self,
        num_clients: int = 0,
        clients: list[str] | None = None,
        num_threads: int | None = None,
        workspace_root: str = DEFAULT_WORKSPACE_ROOT,
        log_config: str | dict[str, Any] | None = None,
        wait: bool = True,
        progress: bool | None = None,
        resume: bool = False,
        backend: str = "threads",
        ray_address: str | None = None,
        site_resources: dict[str, float] | None = None,
        memory_budget: float | None = None,
    ) -> None:
        self.resume = bool(resume)
        if memory_budget is not None and (
            isinstance(memory_budget, bool)
            or not isinstance(memory_budget, int | float)
            or not memory_budget >= 0
        ):
            raise RecipeArgumentError(
                "memory_budget must be a fraction of the available memory (0 < x <= 1), a "
                f"number of bytes (> 1) or 0 (no memory cap), got {memory_budget!r}"
            )
        self.memory_budget = memory_budget
        # where the sites run: "threads" (this process) or "ray" (Ray actors, a cluster);
        # checked now, Ray itself is imported only when the job starts (docs/simulation.md)
        from ember.runtime.sim_backends import make_backend

        make_backend(backend, ray_address, site_resources)
        self.backend = backend
        self.ray_address = ray_address
        self.site_resources = site_resources
        if clients is not None:
            if (
                not isinstance(clients, list | tuple)
                or not clients
                or not all(
                    isinstance(c, str) and c and c not in WORKSPACE_FOLDERS and "/" not in c
                    for c in clients
                )
            ):
                raise RecipeArgumentError(
                    "clients must be a non-empty list of site names (not "
                    f"{', '.join(map(repr, WORKSPACE_FOLDERS))}: folders of the job's "
                    f"workspace; no '/'), got {clients!r}"
                )
            if len(set(clients)) != len(clients):
                raise RecipeArgumentError(f"clients has duplicate names: {clients!r}")
            if num_clients and num_clients != len(clients):
                raise RecipeArgumentError(
                    f"num_clients={num_clients} disagrees with {len(clients)} names in clients"
                )
            self.clients = list(clients)
        else:
            if not isinstance(num_clients, int) or isinstance(num_clients, bool) or num_clients < 1:
                raise RecipeArgumentError(
                    f"SimEnv needs num_clients >= 1 or a list of clients, got {num_clients!r}"
                )
            self.clients = [f"site-{i + 1}" for i in range(num_clients)]
        if num_threads is not None and (not isinstance(num_threads, int) or num_threads < 1):
            raise RecipeArgumentError(f"num_threads must be an integer >= 1, got {num_threads!r}")
        self.num_threads = num_threads
        self.workspace_root = Path(workspace_root)
        self.log_level = resolve_level(log_config)
        self.wait = wait
        self.progress = progress

    def deploy(self, recipe: Deployable) -> SimRun:
        """Export the job into its workspace, run it, and (by default) wait for the end."""
        if len(self.clients) < recipe.job.min_clients:
            raise RecipeArgumentError(
                f"recipe {recipe.name!r} needs min_clients={recipe.job.min_clients} but SimEnv "
                f"has {len(self.clients)} clients"
            )
        workspace = self._fresh_workspace(recipe.name)
        return self._run(recipe.export(workspace / "job"), workspace)

    def run_job_dir(self, job_dir: Path, name: str | None = None) -> SimRun:
        """Run an exported job folder (what ``ember simulate`` does); it is copied into the
        workspace so the results are self-contained."""
        from ember.job.definition import JobDefinition

        job = JobDefinition.from_dir(Path(job_dir))
        with tempfile.TemporaryDirectory() as tmp:
            copy = Path(shutil.copytree(job_dir, Path(tmp) / "job"))
            workspace = self._fresh_workspace(name or job.name)
            shutil.move(copy, workspace / "job")
        return self._run(workspace / "job", workspace)

    def _fresh_workspace(self, name: str) -> Path:
        workspace = self.workspace_root / name
        if self.resume and (workspace / "server" / "checkpoint").is_dir():
            # resume=True: keep the last run's checkpoint and records (docs/reliability.md)
            shutil.rmtree(workspace / "job", ignore_errors=True)
            return workspace
        if workspace.exists():
            # moved aside first: the last run's round-metrics plot may still be writing there
            old = workspace.with_name(f".{workspace.name}.old-{os.getpid()}-{time.monotonic_ns()}")
            workspace.rename(old)
            shutil.rmtree(old, ignore_errors=True)
        workspace.mkdir(parents=True)
        return workspace

    def _run(self, job_dir: Path, workspace: Path) -> SimRun:
        from ember.runtime.sim_backends import make_backend

        simulation = Simulation(
            job_dir,
            self.clients,
            workspace,
            self.num_threads,
            self.log_level,
            self.progress,
            backend=make_backend(self.backend, self.ray_address, self.site_resources),
            memory_budget=self.memory_budget,
        )
        run = SimRun(simulation)
        simulation.start()
        if self.wait:
            with _sigterm_as_interrupt():
                try:
                    simulation.wait()
                except KeyboardInterrupt:
                    simulation.abort("interrupted (Ctrl-C or SIGTERM)")
                    simulation.wait(float(simulation.config.get("runtime.site_stop_timeout")) + 5)
                    raise
        return run


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """While waiting in the main thread, SIGTERM stops the job like Ctrl-C (no orphans)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
