"""SimEnv's memory budget: the cap on sites at work, all-at-once jobs, cgroup limits."""

from __future__ import annotations

import logging
import sys
import textwrap
import threading
import types
from pathlib import Path

import numpy as np
import pytest

from ember.errors import RecipeArgumentError
from ember.runtime import memory_budget as mb
from ember.runtime.memory_budget import (
    Available,
    Footprint,
    MemoryBudgetError,
    MemorySlots,
    available_memory,
    estimate_peak,
    plan_cap,
    resolve_budget,
)
from support.sim import INITIAL, global_model, numpy_recipe, run_sim

COMPLETED = "FINISHED:COMPLETED"
MIB = 1 << 20
BASE = 100 * MIB  # what the process "holds" at start in these tests (current_rss patched)

PROBE_SCRIPT = """
import logging
import sys
import ember.client as flare
from ember.client import FLModel, ParamsType

probe = sys.modules["ember_memory_probe"]
flare.init()
while flare.is_running():
    model = flare.receive()
    if model is None:
        break
    probe.enter()
    new = {k: v + 1.0 for k, v in model.params.items()}
    probe.leave()
    flare.send(FLModel(params_type=ParamsType.FULL, params=new,
                       current_round=model.current_round))
"""


ORDINARY_SCRIPT = """
import ember.client as flare
from ember.client import FLModel, ParamsType

flare.init()
while flare.is_running():
    model = flare.receive()
    if model is None:
        break
    flare.send(FLModel(params_type=ParamsType.FULL,
                       params={k: v + 1.0 for k, v in model.params.items()},
                       current_round=model.current_round))
"""


class Probe:
    """Counts the sites between receive() and send(); the first ones wait (bounded) until
    ``target`` are in at once, so a cap of ``target`` is reached, not only respected."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.inside = 0
        self.most = 0
        self.reached = False
        self.cond = threading.Condition()

    def enter(self) -> None:
        with self.cond:
            self.inside += 1
            self.most = max(self.most, self.inside)
            if self.inside >= self.target:
                self.reached = True
                self.cond.notify_all()
            self.cond.wait_for(lambda: self.reached, timeout=30)

    def leave(self) -> None:
        with self.cond:
            self.inside -= 1


@pytest.fixture
def fixed_rss(monkeypatch: pytest.MonkeyPatch) -> None:
    """The process "holds" BASE bytes: budgets in bytes give known caps."""
    monkeypatch.setattr(mb, "current_rss", lambda: BASE)


def model_of(mib: int) -> dict[str, np.ndarray]:
    """``mib`` MiB of float32, in 2 MiB arrays (streamed: at least 1 MiB each)."""
    return {f"layer{i}": np.zeros(MIB // 2, dtype=np.float32) for i in range(mib // 2)}


def test_the_cap_is_the_most_sites_whose_estimated_peak_fits_the_budget() -> None:
    foot = Footprint.from_model(100)  # 200 training, 100 kept
    assert (foot.training, foot.kept) == (200, 100)
    # base 1000 + server 200 + (4 - k) x 100 + k x 200
    assert [estimate_peak(k, 4, 1000, 200, foot) for k in (1, 2, 3, 4)] == [1700, 1800, 1900, 2000]
    assert plan_cap(4, 2000, 1000, 200, foot) == 4
    assert plan_cap(4, 1850, 1000, 200, foot) == 2
    assert plan_cap(4, 1700, 1000, 200, foot) == 1
    assert plan_cap(4, 1699, 1000, 200, foot) == 0


def test_a_budget_is_a_fraction_of_what_is_available_or_bytes() -> None:
    free = Available(1000 * MIB, "MemAvailable")
    half = resolve_budget(0.5, "sim.memory_budget = 0.5 (default)", 200 * MIB, free)
    assert half is not None
    assert half.bytes == 700 * MIB
    assert "0.5 of 1000 MiB available (MemAvailable" in half.why
    assert resolve_budget(3e9, "x", 200 * MIB, free).bytes == 3_000_000_000  # type: ignore[union-attr]
    assert resolve_budget(0, "x", 200 * MIB, free) is None
    assert resolve_budget(0.5, "x", 200 * MIB, None) is None  # not Linux: nothing to take


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v2_limits_are_read_from_its_files(tmp_path: Path) -> None:
    write(tmp_path / "proc/meminfo", "MemTotal: 24000000 kB\nMemAvailable: 20000000 kB\n")
    write(tmp_path / "proc/self/cgroup", "0::/user.slice/job.scope\n")
    folder = tmp_path / "sys/fs/cgroup/user.slice/job.scope"
    write(folder / "memory.max", f"{1 << 30}\n")
    write(folder / "memory.current", f"{256 * MIB}\n")
    got = available_memory(tmp_path)
    assert got == Available(768 * MIB, "cgroup v2 memory.max 1.0 GiB less 256 MiB used")
    write(folder / "memory.max", "max\n")  # no limit: MemAvailable
    assert available_memory(tmp_path) == Available(20000000 * 1024, "MemAvailable")


def test_cgroup_v1_limits_and_a_container_s_own_root_are_read(tmp_path: Path) -> None:
    write(tmp_path / "proc/meminfo", "MemAvailable: 20000000 kB\n")
    write(tmp_path / "proc/self/cgroup", "5:cpuacct,cpu:/docker/abc\n4:memory:/docker/abc\n")
    # the container mounts its own cgroup at the root: /docker/abc is not under it
    root = tmp_path / "sys/fs/cgroup/memory"
    write(root / "memory.limit_in_bytes", f"{2 << 30}\n")
    write(root / "memory.usage_in_bytes", f"{512 * MIB}\n")
    got = available_memory(tmp_path)
    assert got is not None
    assert got.bytes == (2 << 30) - 512 * MIB
    assert got.source.startswith("cgroup v1 memory.limit_in_bytes 2.0 GiB")
    write(root / "memory.limit_in_bytes", "9223372036854771712\n")  # v1's "no limit"
    assert available_memory(tmp_path) == Available(20000000 * 1024, "MemAvailable")
    write(tmp_path / "proc/self/cgroup", "garbage\n")
    assert available_memory(tmp_path) == Available(20000000 * 1024, "MemAvailable")


def test_a_limit_above_what_the_machine_has_free_leaves_mem_available(tmp_path: Path) -> None:
    write(tmp_path / "proc/meminfo", "MemAvailable: 1024 kB\n")
    write(tmp_path / "proc/self/cgroup", "0::/\n")
    write(tmp_path / "sys/fs/cgroup/memory.max", f"{1 << 30}\n")
    write(tmp_path / "sys/fs/cgroup/memory.current", "0\n")
    assert available_memory(tmp_path) == Available(1024 * 1024, "MemAvailable")
    assert available_memory(tmp_path / "nowhere") is None


def test_memory_slots_hold_waiting_sites_and_let_more_in_when_resized() -> None:
    slots = MemorySlots(2, ["a", "b", "c", "d"])
    entered: list[str] = []

    def work(site: str) -> None:
        slots.acquire(site)
        entered.append(site)

    threads = [threading.Thread(target=work, args=(s,)) for s in "abcd"]
    for t in threads:
        t.start()
    with slots._cond:
        assert slots._cond.wait_for(lambda: len(slots._waiting) == 2 and slots.busy == 2, 10)
    assert sorted(entered) == sorted(set("abcd") - slots._waiting)
    slots.resize(3)
    with slots._cond:
        assert slots._cond.wait_for(lambda: slots.busy == 3, 10)
    slots.release()
    for t in threads:
        t.join(10)
    assert slots.max_busy == 3
    assert sorted(entered) == ["a", "b", "c", "d"]


def test_the_cap_limits_how_many_sites_train_at_once(tmp_path: Path, fixed_rss: None) -> None:
    script = tmp_path / "scripts" / "probe_client.py"
    write(script, textwrap.dedent(PROBE_SCRIPT))
    probe = Probe(target=2)
    module = types.ModuleType("ember_memory_probe")
    module.enter, module.leave = probe.enter, probe.leave  # type: ignore[attr-defined]
    sys.modules["ember_memory_probe"] = module
    try:
        recipe = numpy_recipe(
            model=model_of(8), train_script=str(script), num_rounds=2, key_metric=None
        )
        # model file F ~ 8 MiB: peak(k) = BASE + 2F + (4 - k) F + 2k F; 2 fit, 3 do not
        budget = BASE + int(8.5 * 8 * MIB)
        run = run_sim(recipe, tmp_path, num_clients=4, memory_budget=budget)
    finally:
        del sys.modules["ember_memory_probe"]
    assert run.get_status() == COMPLETED, run.get_message()
    memory = run.simulation.memory
    assert memory.cap == 2
    assert memory.slots.max_busy == 2
    assert probe.most == 2
    assert probe.reached
    # measured: 8 MiB received + 8 MiB sent while training, the received 8 MiB kept
    assert (memory.footprint.training, memory.footprint.kept) == (16 * MIB, 8 * MIB)
    log = (Path(run.get_result()) / "server" / "log.txt").read_text()
    assert "at most 2 site(s) train at once" in log
    assert "SimEnv(memory_budget=" in log
    assert "sim.memory_budget" in log


def test_an_all_at_once_job_the_budget_cannot_hold_fails_at_start(
    tmp_path: Path, fixed_rss: None
) -> None:
    script = tmp_path / "scripts" / "plus_one.py"
    write(script, textwrap.dedent(ORDINARY_SCRIPT))
    recipe = numpy_recipe(model=model_of(8), train_script=str(script), key_metric=None)
    recipe.job.all_sites_at_once = True
    with pytest.raises(MemoryBudgetError) as caught:
        run_sim(recipe, tmp_path, num_clients=4, memory_budget=BASE + 20 * MIB)
    message = str(caught.value)
    assert "needs all 4 sites training at once" in message
    assert "a site holds 16 MiB training" in message  # the footprint
    assert "over the memory budget 120 MiB" in message  # the budget
    assert "SimEnv(memory_budget=...)" in message
    assert "sim.memory_budget" in message
    # with room for all four it runs, every site at once
    run = run_sim(recipe, tmp_path / "roomy", num_clients=4, memory_budget=BASE + 200 * MIB)
    assert run.get_status() == COMPLETED, run.get_message()
    assert run.simulation.memory is None


def test_results_are_bit_identical_with_and_without_the_cap(
    tmp_path: Path, fixed_rss: None
) -> None:
    def recipe() -> object:
        r = numpy_recipe(train_args="--noise")
        r.set_config("streaming.min_tensor_bytes", 1)  # every array streamed
        return r

    free = run_sim(recipe(), tmp_path / "free", num_clients=4, memory_budget=0)
    # a budget below what the process holds: one site at a time, models on the server's disk
    tight = run_sim(recipe(), tmp_path / "tight", num_clients=4, memory_budget=BASE // 2)
    for run in (free, tight):
        assert run.get_status() == COMPLETED, run.get_message()
    assert free.simulation.memory is None
    assert tight.simulation.memory.cap == 1
    assert tight.simulation.memory.offload
    assert global_model(tight.get_result()).tobytes() == global_model(free.get_result()).tobytes()
    assert not np.array_equal(global_model(free.get_result()), INITIAL)


def test_simenv_refuses_a_memory_budget_that_is_not_a_number() -> None:
    from ember import SimEnv

    for bad in (-1, "half", True):
        with pytest.raises(RecipeArgumentError, match="memory_budget must be"):
            SimEnv(num_clients=2, memory_budget=bad)  # type: ignore[arg-type]


def test_the_default_budget_leaves_a_small_job_uncapped_and_logs_why(tmp_path: Path) -> None:
    run = run_sim(numpy_recipe(), tmp_path, num_clients=3)
    assert run.get_status() == COMPLETED, run.get_message()
    assert run.simulation.memory.cap == 3
    log = (Path(run.get_result()) / "server" / "log.txt").read_text()
    line = next(x for x in log.splitlines() if "memory budget" in x)
    assert "sim.memory_budget = 0.5 (default)" in line
    assert "all 3 sites may train" in line


def test_a_process_over_its_budget_lets_one_site_fewer_train_at_a_time(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    log = logging.getLogger("test.memory")
    scheduler = mb.MemoryScheduler(
        list("abcd"),
        mb.Budget(1000 * MIB, "1000 MiB"),
        0,
        Footprint.from_model(MIB),
        False,
        None,
        log,
    )
    assert scheduler.cap == 4
    for site in "abcd":
        scheduler.slots.acquire(site)
    monkeypatch.setattr(mb, "current_rss", lambda: 2000 * MIB)  # what the scripts hold
    monkeypatch.setattr(mb, "RSS_CHECK_INTERVAL", 0.0)
    with caplog.at_level(logging.INFO, logger="test.memory"):
        scheduler.sending("a", None)
        assert scheduler.cap == 3
        assert "this process holds 2.0 GiB, over the budget" in caplog.text
        scheduler.sending("b", None)  # 4 still at work: the last lowering is not in force yet
        assert scheduler.cap == 3
        scheduler.slots.release()
        scheduler.sending("c", None)
        assert scheduler.cap == 2
    # what the sites hold cannot raise it again past what the process showed
    scheduler._learn(training=1, kept=0)
    assert scheduler.cap == 2
