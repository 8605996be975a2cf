"""Memory-aware scheduling in SimEnv: how many sites may train at once in one process.

A simulation's sites share one process, so its memory is what they hold together. SimEnv
keeps an estimate of a site's **footprint** and caps the sites at work (holding a task's
data) so that the estimated peak stays under a **memory budget**:

    peak(k) = base + server + (sites - k) x kept + k x training

- ``base``: this process's resident memory when the job starts (the interpreter, what the
  user's ``job.py`` holds, such as the recipe's own model).
- ``server``: the global model until the last site has its copy, and the running sum: 2x the
  model, 1x when the server keeps its models on disk (``streaming.offload_dir``).
- ``training``: what a site holds while it trains: the model it received and the result it
  makes, 2x the model to begin with.
- ``kept``: what a site's script keeps between tasks: an ordinary script keeps its received
  model until its next ``receive()`` returns, so 1x the model to begin with.

The model's size comes first from the job folder (its largest model file), then from each
task's params (their declared sizes) as sites receive them. What each site really holds is
then measured from its own arrays, not from the process's RSS: with every site a thread of
one process, an RSS delta around one site's training also holds the other sites' and the
server's allocations and frees of that moment, while the arrays a site received and sent
are its own. ``training`` becomes the largest sum of the received and sent arrays' bytes a
site had (each array counted once); ``kept``, the largest bytes of its received arrays
still alive (weak references) when it asks for its next task. A script's other memory
(optimizer state, data) is caught by the process-wide check: whenever a site sends a result
while the process's resident memory is over the budget, one site fewer may train at once.

The budget (``SimEnv(memory_budget=...)``, else the setting ``sim.memory_budget``) is a
fraction of the memory available when the job starts (``<= 1``) on top of what the process
already holds, or a number of bytes (``> 1``); 0 turns this off. "Available" is
``MemAvailable`` of ``/proc/meminfo``, or less when the process's cgroup has a limit
(v2 ``memory.max`` less ``memory.current``; v1 ``memory.limit_in_bytes`` less
``memory.usage_in_bytes``).

When even one site at a time would not fit, SimEnv also keeps the server's models on disk
(``streaming.offload_dir``, under the job's server folder) if the user set no folder and
the disk has room; failing that it runs one site at a time and warns. A job whose workflow
needs every site at once (``all_sites_at_once``) cannot be capped: if it cannot fit, it is
refused at start.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ember.client.slots import WorkSlots
from ember.errors import EmberError
from ember.runtime.process_memory import current_rss

GIB = 1 << 30
MIB = 1 << 20
#: the setting and the SimEnv argument that set the budget
SETTING = "sim.memory_budget"
ARGUMENT = "SimEnv(memory_budget=...)"
#: files of a job folder that hold a model (the largest is the model's size at start)
MODEL_SUFFIXES = (".npz", ".npy", ".safetensors", ".pt", ".pth", ".ckpt", ".h5", ".keras")
#: the process's RSS is read at most this often (seconds), when a site sends a result
RSS_CHECK_INTERVAL = 0.05
#: a cgroup v1 limit at or above this means "no limit" (the kernel's is 2^63 rounded down)
_V1_UNLIMITED = 1 << 60


class MemoryBudgetError(EmberError, RuntimeError):
    """A simulated job cannot fit its memory budget (and cannot be made to)."""


def describe_bytes(n: float) -> str:
    """``n`` bytes as people read it: ``2.0 GiB``, ``256 MiB``, ``12 KiB``."""
    if abs(n) >= GIB:
        return f"{n / GIB:.1f} GiB"
    if abs(n) >= MIB:
        return f"{n / MIB:.0f} MiB"
    return f"{n / 1024:.0f} KiB"


# --- what the machine has ----------------------------------------------------------------


@dataclass(frozen=True)
class Available:
    """The memory this process may still take, and where that figure comes from."""

    bytes: int
    source: str


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    if text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def mem_available(root: Path = Path("/")) -> int | None:
    """``MemAvailable`` of ``/proc/meminfo`` in bytes (None where there is none)."""
    try:
        lines = (root / "proc" / "meminfo").read_text(encoding="ascii").splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("MemAvailable:"):
            parts = line.split()
            try:
                return int(parts[1]) * (1024 if parts[-1].lower() == "kb" else 1)
            except (IndexError, ValueError):
                return None
    return None


def cgroup_room(root: Path = Path("/")) -> tuple[int, str] | None:
    """What this process's cgroup still allows (limit less usage) and a description; None
    when it has no memory limit. Reads ``/proc/self/cgroup``: a v2 entry ``0::/path`` is
    looked up under ``/sys/fs/cgroup/path`` (``memory.max``, ``memory.current``), a v1
    ``N:...memory...:/path`` under ``/sys/fs/cgroup/memory/path``
    (``memory.limit_in_bytes``, ``memory.usage_in_bytes``); inside a container that mounts
    its own cgroup at the root, the root's files are read."""
    try:
        entries = (root / "proc" / "self" / "cgroup").read_text(encoding="ascii").splitlines()
    except OSError:
        return None
    base = root / "sys" / "fs" / "cgroup"
    for entry in entries:
        parts = entry.split(":", 2)
        if len(parts) != 3:
            continue
        ids, controllers, path = parts
        relative = path.lstrip("/")
        if ids == "0" and controllers == "":
            names, folders = ("memory.max", "memory.current"), [base / relative, base]
            kind = "cgroup v2 memory.max"
        elif "memory" in controllers.split(","):
            names = ("memory.limit_in_bytes", "memory.usage_in_bytes")
            folders = [base / "memory" / relative, base / "memory"]
            kind = "cgroup v1 memory.limit_in_bytes"
        else:
            continue
        for folder in folders:
            if not (folder / names[0]).is_file():
                continue
            limit = _read_int(folder / names[0])
            if limit is None or limit >= _V1_UNLIMITED:
                return None
            usage = _read_int(folder / names[1]) or 0
            room = max(0, limit - usage)
            return room, f"{kind} {describe_bytes(limit)} less {describe_bytes(usage)} used"
    return None


def available_memory(root: Path = Path("/")) -> Available | None:
    """The memory available to this process: ``MemAvailable``, or its cgroup's room when
    that is less; None where neither can be read (not Linux)."""
    free = mem_available(root)
    room = cgroup_room(root)
    if room is not None and (free is None or room[0] < free):
        return Available(room[0], room[1])
    if free is None:
        return None
    return Available(free, "MemAvailable")


# --- the budget and the cap ---------------------------------------------------------------


@dataclass(frozen=True)
class Budget:
    """The most memory the simulation's process should hold, and why that much."""

    bytes: int
    why: str


def resolve_budget(
    value: float, origin: str, base: int, available: Available | None
) -> Budget | None:
    """The budget ``value`` (from ``origin``) stands for: None for 0 (off); ``<= 1`` a
    fraction of ``available`` on top of ``base`` (what the process holds now); more, bytes."""
    if value < 0:
        raise MemoryBudgetError(f"memory budget from {origin} must be >= 0, got {value!r}")
    if value == 0:
        return None
    if value > 1:
        return Budget(int(value), f"{describe_bytes(value)} ({origin})")
    if available is None:
        return None  # nothing to take a fraction of (not Linux): no cap
    total = base + int(value * available.bytes)
    return Budget(
        total,
        f"{describe_bytes(total)}: this process's {describe_bytes(base)} + {value:g} of "
        f"{describe_bytes(available.bytes)} available ({available.source}; {origin})",
    )


@dataclass
class Footprint:
    """What one site holds, in bytes: while it trains, and between its tasks."""

    model: int
    training: int
    kept: int
    measured: bool = False

    @classmethod
    def from_model(cls, model: int) -> Footprint:
        """The first guess: received + result while training, the received model kept."""
        return cls(model, 2 * model, model)

    def describe(self) -> str:
        how = "measured" if self.measured else f"from the {describe_bytes(self.model)} model"
        return (
            f"a site holds {describe_bytes(self.training)} training and "
            f"{describe_bytes(self.kept)} between tasks ({how})"
        )


def estimate_peak(k: int, sites: int, base: int, server: int, foot: Footprint) -> int:
    """The process's estimated peak with ``k`` of ``sites`` at work at once."""
    return base + server + (sites - k) * foot.kept + k * foot.training


def plan_cap(sites: int, budget: int, base: int, server: int, foot: Footprint) -> int:
    """The most sites that may train at once under ``budget`` (0: not even one fits);
    constant time, since it is recomputed as sites report (10,000 sites and more)."""
    if sites < 1:
        return 0
    fixed = base + server + sites * foot.kept  # peak(k) = fixed + k x per
    per = foot.training - foot.kept
    if per <= 0:
        return sites if fixed + sites * per <= budget else 0
    return max(0, min(sites, (budget - fixed) // per))


def model_bytes_in(job_dir: Path) -> int:
    """The size of the largest model file in a job folder (0 if it has none)."""
    largest = 0
    for path in Path(job_dir).rglob("*"):
        if path.suffix in MODEL_SUFFIXES and path.is_file():
            largest = max(largest, path.stat().st_size)
    return largest


def params_bytes(params: Any) -> int:
    """The bytes of the arrays and tensors in ``params`` (declared sizes of references)."""
    if isinstance(params, dict):
        return sum(params_bytes(v) for v in params.values())
    if isinstance(params, list | tuple):
        return sum(params_bytes(v) for v in params)
    nbytes = getattr(params, "nbytes", None)
    if isinstance(nbytes, int):
        return nbytes
    shape, dtype = getattr(params, "shape", None), getattr(params, "dtype", None)
    itemsize = getattr(dtype, "itemsize", None)
    if isinstance(shape, tuple) and isinstance(itemsize, int):
        count = 1
        for n in shape:
            count *= int(n)
        return count * itemsize
    return 0


def _arrays(params: Any) -> list[Any]:
    """The arrays (anything with ``nbytes``) in ``params``, each once."""
    found: dict[int, Any] = {}
    stack = [params]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list | tuple):
            stack.extend(value)
        elif isinstance(getattr(value, "nbytes", None), int):
            found[id(value)] = value
    return list(found.values())


# --- the scheduler ------------------------------------------------------------------------


class MemorySlots(WorkSlots):
    """Work slots whose number can change while sites wait (the memory cap), counting how
    many sites are at work (``busy``) and the most there were at once (``max_busy``)."""

    def __init__(self, count: int, order: Sequence[str]) -> None:
        super().__init__(count, order)
        self.count = count
        self.busy = 0
        self.max_busy = 0

    def acquire(self, site: str) -> None:
        super().acquire(site)
        with self._cond:
            self.busy += 1
            self.max_busy = max(self.max_busy, self.busy)

    def release(self) -> None:
        with self._cond:
            self.busy -= 1
        super().release()

    def resize(self, count: int) -> None:
        """Let ``count`` sites work at once from now on (those at work finish first)."""
        if count < 1:
            raise ValueError(f"work slots must be at least 1, got {count}")
        with self._cond:
            self._free += count - self.count
            self.count = count
            self._dispatch()
            self._cond.notify_all()


@dataclass
class _SiteWatch:
    task: Any = None
    received: list[weakref.ref[Any]] = field(default_factory=list)
    received_bytes: list[int] = field(default_factory=list)


class MemoryScheduler:
    """Caps the sites of one simulation at work at once under a memory budget, and learns
    their footprint from what they hold (see the module's docstring)."""

    def __init__(
        self,
        sites: Sequence[str],
        budget: Budget,
        base: int,
        footprint: Footprint,
        offload: bool,
        limit: int | None,
        log: logging.Logger,
    ) -> None:
        self.sites = list(sites)
        self.budget = budget
        self.base = base
        self.footprint = footprint
        self.offload = offload
        self.limit = limit  # num_threads, if the user set it
        self.log = log
        self._lock = threading.Lock()
        self._watch: dict[str, _SiteWatch] = {}
        self._model = footprint.model
        self._training: int | None = None  # measured: the most a site held training
        self._kept: int | None = None  # measured: the most a site kept between tasks
        self._ceiling: int | None = None  # lowered by the process-wide check
        self._warned = False
        self._next_rss_check = 0.0
        self.cap = self._cap()
        self.slots = MemorySlots(self.cap, self.sites)
        #: the sites' transport endpoints: while the cap does not bind they pull a task's
        #: data as it arrives, as without a cap; once it binds, when they may work
        self.endpoints: list[Any] = []

    @property
    def capped(self) -> bool:
        """Whether fewer sites than all may train at once."""
        return self.cap < len(self.sites)

    @property
    def server(self) -> int:
        """The server's share: the running sum, and the global model unless on disk."""
        return (1 if self.offload else 2) * self.footprint.model

    def _cap(self) -> int:
        fits = plan_cap(len(self.sites), self.budget.bytes, self.base, self.server, self.footprint)
        cap = max(1, fits)
        if self.limit:
            cap = min(cap, self.limit)
        return cap if self._ceiling is None else min(cap, self._ceiling)

    def describe(self) -> str:
        """One line: the cap and why."""
        n = len(self.sites)
        all_at_once = estimate_peak(n, n, self.base, self.server, self.footprint)
        at_cap = estimate_peak(self.cap, n, self.base, self.server, self.footprint)
        line = (
            f"memory budget {self.budget.why}; {self.footprint.describe()}, the server "
            f"{describe_bytes(self.server)}"
            + (" (its models on disk)" if self.offload else "")
            + f": all {n} sites at once would peak at about {describe_bytes(all_at_once)}, so "
        )
        if self.cap >= n:
            return line + f"all {n} sites may train at once"
        line += f"at most {self.cap} site(s) train at once (about {describe_bytes(at_cap)})"
        if self.limit and self.cap == self.limit:
            line += f" (num_threads={self.limit})"
        if at_cap > self.budget.bytes:
            line += "; even one at a time is over the budget"
        return line + f". Change it with {ARGUMENT} or the setting {SETTING}"

    # the hooks the measuring transport calls, in each site's own thread

    def asking(self, site: str) -> None:
        """``site`` asks for its next task: what it still holds of its last one is kept."""
        watch = self._watch.get(site)
        if watch is None or not watch.received:
            return
        pairs = zip(watch.received, watch.received_bytes, strict=True)
        alive = sum(size for ref, size in pairs if ref() is not None)
        watch.received, watch.received_bytes = [], []
        self._learn(kept=alive)

    def got_task(self, site: str, task: Any) -> None:
        data = getattr(task, "data", None)
        if data is None:
            return
        self._watch.setdefault(site, _SiteWatch()).task = task
        model = params_bytes(data.params)
        if model > self.footprint.model:
            self._learn(model=model)

    def sending(self, site: str, result: Any) -> None:
        """``site`` sends ``result``: it holds what it received and what it sends now."""
        watch = self._watch.get(site)
        task = None if watch is None else watch.task
        data = getattr(result, "data", None)
        if watch is not None and task is not None and data is not None:
            watch.task = None
            received = _arrays(getattr(task.data, "params", None))
            sent = _arrays(getattr(data, "params", None))
            ids = {id(a) for a in received}
            training = sum(a.nbytes for a in received) + sum(
                a.nbytes for a in sent if id(a) not in ids
            )
            watch.received = []
            watch.received_bytes = []
            for array in received:
                try:
                    watch.received.append(weakref.ref(array))
                    watch.received_bytes.append(array.nbytes)
                except TypeError:  # not weakly referenceable: assume it is kept
                    pass
            self._learn(training=training)
        self._check_rss()

    def _learn(self, model: int = 0, training: int = 0, kept: int | None = None) -> None:
        """Take in a measurement: the first of each kind replaces the guess from the model's
        size, later ones only raise it (the largest any site held)."""
        if (
            model <= self._model
            and (self._training is not None and training <= self._training)
            and (kept is None or (self._kept is not None and kept <= self._kept))
        ):
            return  # nothing new (most reports, once every kind was measured)
        with self._lock:
            self._model = max(self._model, model)
            if training:
                self._training = max(self._training or 0, training)
            if kept is not None:
                self._kept = max(self._kept or 0, kept)
            self.footprint = Footprint(
                self._model,
                max(self._training or 0, 2 * self._model if self._training is None else 0),
                self._kept if self._kept is not None else self._model,
                self._training is not None,
            )
            self._apply("learned from what the sites hold")

    def _check_rss(self) -> None:
        now = time.monotonic()
        if now < self._next_rss_check:
            return
        self._next_rss_check = now + RSS_CHECK_INTERVAL
        rss = current_rss() or 0
        if not rss or rss <= self.budget.bytes:
            return
        with self._lock:
            if self.cap > 1 and self.slots.busy <= self.cap:
                # one fewer at a time, and again only once the last lowering is in force
                # (the sites at work have come down to the cap: the sender still counts)
                self._ceiling = self.cap - 1
                self._apply(f"this process holds {describe_bytes(rss)}, over the budget")
            elif self.cap == 1 and not self._warned:
                self._warned = True
                self.log.warning(
                    "memory: this process holds %s, over its memory budget %s, with one site "
                    "at work at a time; raise %s or the setting %s, or free memory",
                    describe_bytes(rss),
                    describe_bytes(self.budget.bytes),
                    ARGUMENT,
                    SETTING,
                )

    def _apply(self, why: str) -> None:
        cap = self._cap()
        if cap == self.cap:
            return
        self.cap = cap
        if self.capped:
            for endpoint in self.endpoints:
                endpoint.lazy_tensors = True  # a waiting site holds references, not copies
        self.slots.resize(cap)
        self.log.info("memory (%s): %s", why, self.describe())


class MeasuringTransport:
    """A site's view of the in-process transport that tells the scheduler what the site
    receives and sends (everything else is the transport's own)."""

    def __init__(self, transport: Any, scheduler: MemoryScheduler) -> None:
        self._transport = transport
        self._scheduler = scheduler

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def request(
        self, sender: str, target: str, topic: str, payload: Any, timeout: float | None = None
    ) -> Any:
        if topic == "get_task":
            self._scheduler.asking(sender)
        elif topic == "submit_result":
            self._scheduler.sending(sender, payload)
        reply = self._transport.request(sender, target, topic, payload, timeout)
        if topic == "get_task" and not isinstance(reply, str | type(None)):
            self._scheduler.got_task(sender, reply)
        return reply


# --- planning a job -----------------------------------------------------------------------


def can_offload(config: Any, folder: Path, model: int, sites: int) -> bool:
    """Whether SimEnv may keep the server's models on disk itself: streaming on, no folder
    set by the user, and room for one model per site plus one on ``folder``'s disk."""
    if model <= 0 or not config.get("streaming.enabled") or config.get("streaming.offload_dir"):
        return False
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return False
    return free > (sites + 2) * model


def plan(
    job: Any,
    job_dir: Path,
    sites: Sequence[str],
    config: Any,
    argument: float | None,
    num_threads: int | None,
    server_dir: Path,
    log: logging.Logger,
    available: Available | None = None,
    base: int | None = None,
) -> tuple[MemoryScheduler | None, str]:
    """The memory scheduler of a simulated job (None when the budget is off, cannot be
    known, or the workflow needs every site at once) and the line to log about it;
    refuses (:class:`MemoryBudgetError`) an ``all_sites_at_once`` job that cannot fit.
    ``available`` and ``base`` default to this machine's and this process's; ``log`` is
    where the scheduler logs its later changes."""
    if argument is not None:
        value, origin = float(argument), f"{ARGUMENT[:-4]}{argument!r})"
    else:
        value = float(config.get(SETTING))
        source = config.source(SETTING)
        origin = f"{SETTING} = {value:g} ({'default' if source == 'default' else source})"
    base = (current_rss() or 0) if base is None else base
    if available is None and 0 < value <= 1:
        available = available_memory()
    budget = resolve_budget(value, origin, base, available)
    if budget is None:
        if value == 0:
            return None, f"memory budget off ({origin}): sites are not capped for memory"
        return None, "memory budget unknown (no /proc/meminfo): sites are not capped for memory"
    n = len(sites)
    foot = Footprint.from_model(model_bytes_in(job_dir))
    if job.all_sites_at_once:
        need = estimate_peak(n, n, base, 2 * foot.model, foot)
        if need > budget.bytes:
            raise MemoryBudgetError(
                f"job {job.name!r} needs all {n} sites training at once (its workflow waits "
                f"for every site in each step), and {foot.describe()}: about "
                f"{describe_bytes(need)} with the server's {describe_bytes(2 * foot.model)} "
                f"and this process's {describe_bytes(base)}, over the memory budget "
                f"{budget.why}. Raise {ARGUMENT} or the setting {SETTING} (a fraction of the "
                "available memory, or bytes; 0 turns the check off), or run fewer sites"
            )
        return None, (
            f"memory budget {budget.why}; {foot.describe()}: all {n} sites train at once "
            f"(the job's workflow needs them), about {describe_bytes(need)}"
        )
    offload = False
    if not plan_cap(n, budget.bytes, base, 2 * foot.model, foot):
        offload = can_offload(config, server_dir, foot.model, n)
    scheduler = MemoryScheduler(sites, budget, base, foot, offload, num_threads, log)
    return scheduler, scheduler.describe()
