"""The server's task board: tasks waiting for sites, results waiting for controllers.

Sites pull tasks (``next_task``) and push results (``submit``); controllers post tasks and
consume results in a canonical site order (``collect``), so aggregation does not depend
on the order results arrive in. Everything waits on one condition variable: no polling.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ember.common.carriers import CooperativeCondition
from ember.common.ids import random_hex_id
from ember.common.messages import ResultStatus, Task, TaskResult
from ember.common.model import FLModel
from ember.config import describe_setting
from ember.runtime.errors import InsufficientClients, JobAborted, JobError


def task_ids(count: int) -> list[str]:
    """``count`` unguessable task ids (:func:`ember.common.ids.random_hex_id`: no system
    call per task)."""
    return [random_hex_id() for _ in range(count)]


@dataclass
class SiteState:
    """What the server knows about one site."""

    name: str
    alive: bool = True
    finished: bool = False
    failure: str | None = None


@dataclass
class Posted:
    """Tasks handed out by :meth:`TaskBoard.post`: their ids by site, and the deadline."""

    name: str
    deadline: float
    task_ids: dict[str, str] = field(default_factory=dict)
    timeout: float = 0.0


@dataclass
class Collected:
    """The outcome of one broadcast: who answered, who failed, who timed out."""

    responded: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    timed_out: list[str] = field(default_factory=list)


class TaskBoard:
    """Tasks and results of one job, shared by the server's handlers and its controller."""

    END = "END"

    def __init__(self, sites: Sequence[str]) -> None:
        # One lock; each site waits on its own condition and the controller on another, so
        # an event wakes only who it concerns (1000 idle sites are not woken per result).
        # A site's wait gives its carrier thread up to other sites' scripts (SimEnv).
        self._lock = threading.Lock()
        self._site_cond = {s: CooperativeCondition(self._lock) for s in sites}
        self._ctrl_cond = threading.Condition(self._lock)
        self.sites = {s: SiteState(s) for s in sites}
        self._queues: dict[str, deque[Task]] = {s: deque() for s in sites}
        self._results: dict[str, TaskResult] = {}
        self._open: dict[str, str] = {}  # task id -> site
        self._end_reason: str | None = None
        self.aborted = False
        # how many times a site stopped being alive: collect() recounts who can still answer
        # only when this changed (not on every result, which made a round O(sites^2))
        self._deaths = 0
        self._alive = len(self.sites)  # kept, not counted: the end waits on it per site

    # -- site side -------------------------------------------------------------------------
    def next_task(self, site: str, wait: float) -> Task | str | None:
        """The site's next task, ``END`` when the job is over, or None after ``wait`` s."""
        deadline = time.monotonic() + wait
        with self._lock:
            state = self._site(site)
            cond = self._site_cond[site]
            while True:
                if self._end_reason is not None or not state.alive:
                    return self.END
                if self._queues[site]:
                    return self._queues[site].popleft()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                cond.wait(remaining)

    def submit(self, result: TaskResult) -> bool:
        """Accept a result; False when its task is no longer awaited (late or unknown)."""
        with self._lock:
            self._site(result.site)
            if self._open.get(result.task_id) != result.site:
                return False
            del self._open[result.task_id]
            self._results[result.task_id] = result
            self._ctrl_cond.notify_all()
            return True

    def fail_site(self, site: str, reason: str) -> None:
        """Mark a site dead (script raised, process exited, connection lost)."""
        with self._lock:
            state = self._site(site)
            if state.alive:
                state.alive = False
                state.failure = reason
                self._deaths += 1
                self._alive -= 1
            self._ctrl_cond.notify_all()
            self._site_cond[site].notify_all()

    def site_finished(self, site: str) -> None:
        """The site's script ended normally; it takes no more tasks."""
        with self._lock:
            state = self._site(site)
            state.finished = True
            if state.alive:
                state.alive = False
                self._deaths += 1
                self._alive -= 1
            self._ctrl_cond.notify_all()
            self._site_cond[site].notify_all()

    def rejoin(self, site: str) -> bool:
        """A dead site whose process restarted mid-job (its daemon reconnected: PocEnv,
        ProdEnv) counts in again; False if it is alive, finished its script or the job ends.
        A task its lost process had taken fails now (its data left with that process), so
        the controller does not wait for it; a task still queued is the new process's."""
        with self._lock:
            state = self._site(site)
            if state.alive or state.finished or self._end_reason is not None:
                return False
            queued = {task.task_id for task in self._queues[site]}
            for task_id, owner in list(self._open.items()):
                if owner == site and task_id not in queued:
                    self._results[task_id] = TaskResult(
                        task_id,
                        site,
                        ResultStatus.EXECUTION_EXCEPTION,
                        None,
                        f"{site} restarted while it ran this task; it rejoins at its next task",
                    )
            state.alive, state.failure = True, None
            self._alive += 1
            self._ctrl_cond.notify_all()
            self._site_cond[site].notify_all()
            return True

    # -- controller side -------------------------------------------------------------------
    def alive_sites(self) -> list[str]:
        with self._lock:
            return [s.name for s in self.sites.values() if s.alive]

    def wait_sites_done(self, timeout: float) -> bool:
        """After :meth:`end`: wait until every site has finished its script or is dead."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._alive > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._ctrl_cond.wait(remaining)
        return True

    def end(self, reason: str, aborted: bool = False) -> None:
        """Stop handing out tasks; every waiting site gets ``END``."""
        with self._lock:
            if self._end_reason is None:
                self._end_reason = reason
                self.aborted = aborted
            self._ctrl_cond.notify_all()
            for cond in self._site_cond.values():
                cond.notify_all()

    def broadcast(
        self,
        name: str,
        data: FLModel | Callable[[str], FLModel] | None,
        targets: Sequence[str],
        min_responses: int,
        timeout: float,
        on_result: Callable[[str, TaskResult], None],
    ) -> Collected:
        """Give ``targets`` a task and feed their results to ``on_result`` in target order
        (:meth:`post` then :meth:`collect`)."""
        return self.collect(self.post(name, data, targets, timeout), min_responses, on_result)

    def post(
        self,
        name: str,
        data: FLModel | Callable[[str], FLModel] | None,
        targets: Sequence[str],
        timeout: float,
    ) -> Posted:
        """Queue a task for each target. The board keeps the task data only until each site
        has taken its task, so a caller that drops its own reference frees the data then."""
        posted = Posted(name, time.monotonic() + timeout, timeout=timeout)
        ids = task_ids(len(targets))
        with self._lock:
            for site, task_id in zip(targets, ids, strict=True):
                payload = data(site) if callable(data) else data
                task = Task(name, task_id, payload, timeout)
                posted.task_ids[site] = task.task_id
                self._open[task.task_id] = site
                self._queues[site].append(task)
                self._site_cond[site].notify_all()
        return posted

    def collect(
        self, posted: Posted, min_responses: int, on_result: Callable[[str, TaskResult], None]
    ) -> Collected:
        """Feed the results of posted tasks to ``on_result`` in target order.

        Returns once every target answered, failed or passed the timeout. Raises
        :class:`InsufficientClients` as soon as fewer than ``min_responses`` can still answer.
        """
        out = Collected()
        order = list(posted.task_ids)
        index = 0
        seen = [-1]  # the death count the last recount of who can still answer saw
        try:
            while index < len(order):
                site = order[index]
                result = self._wait_for(site, posted, order, index, out, min_responses, seen)
                index += 1
                if result is None:
                    seen[0] = -1  # one fewer can answer: recount
                    continue
                if result.status != ResultStatus.OK:
                    out.failed[site] = result.message or result.status
                    seen[0] = -1
                    continue
                on_result(site, result)
                out.responded.append(site)
        finally:
            with self._lock:
                for task_id in posted.task_ids.values():
                    self._open.pop(task_id, None)
                    self._results.pop(task_id, None)
        if len(out.responded) < min_responses:
            raise InsufficientClients(self._shortfall(posted, min_responses, out))
        return out

    def _wait_for(
        self,
        site: str,
        posted: Posted,
        order: Sequence[str],
        index: int,
        out: Collected,
        min_responses: int,
        seen: list[int],
    ) -> TaskResult | None:
        task_id, deadline = posted.task_ids[site], posted.deadline
        with self._lock:
            while True:
                if self._end_reason is not None:
                    raise (JobAborted if self.aborted else JobError)(self._end_reason)
                result = self._results.pop(task_id, None)
                if result is not None:
                    return result
                state = self.sites[site]
                if not state.alive:
                    out.failed[site] = state.failure or "finished its script early"
                    return None
                if seen[0] != self._deaths:
                    # only a death lowers who can answer: recount then, not per wake-up
                    seen[0] = self._deaths
                    alive = sum(1 for i in range(index, len(order)) if self.sites[order[i]].alive)
                    if len(out.responded) + alive < min_responses:
                        raise InsufficientClients(self._shortfall(posted, min_responses, out))
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    out.timed_out.append(site)
                    return None
                self._ctrl_cond.wait(remaining)

    def _shortfall(self, posted: Posted, min_responses: int, out: Collected) -> str:
        parts = [
            f"task {posted.name!r} needs results from min_clients={min_responses} sites, "
            f"only {len(out.responded)} can answer"
        ]
        dead = {s.name: s.failure or "ended its script" for s in self.sites.values() if not s.alive}
        for site, reason in {**dead, **out.failed}.items():
            parts.append(f"{site}: {reason}")
        if out.timed_out:
            parts.append(
                f"timed out: {', '.join(out.timed_out)} "
                f"({describe_setting('runtime.task_timeout', posted.timeout)})"
            )
        return "; ".join(parts)

    def _site(self, site: str) -> SiteState:
        try:
            return self.sites[site]
        except KeyError:
            raise JobError(
                f"unknown site {site!r}; this job runs on {sorted(self.sites)}"
            ) from None
