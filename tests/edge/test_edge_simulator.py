"""ember_edge.simulator: the device pool's per-version sums, speeds and drop-outs."""

from __future__ import annotations

import numpy as np
import pytest

from ember_edge.simulator import (
    DevicePool,
    DeviceResult,
    DeviceTask,
    SimulatorError,
    check_speed,
)

CLOSED: list[str] = []


class Shift:
    """A device whose model is the task's plus its own index (weight: index + 1)."""

    def setup(self, device_id: str) -> None:
        self.device_id = device_id
        self.index = int(device_id.rsplit("-", 1)[1])

    def process_task(self, task: DeviceTask) -> DeviceResult:
        params = {k: np.asarray(v) + self.index for k, v in task.params.items()}
        return DeviceResult(params=params, params_type="FULL", weight=self.index + 1.0)

    def shutdown(self) -> None:
        CLOSED.append(self.device_id)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_pool_keeps_per_version_sums_of_weighted_updates() -> None:
    clock = Clock()
    pool = DevicePool("s", Shift, 4, clock=clock)
    params = {"w": np.zeros(2)}
    pool.start(["s/dev-0", "s/dev-1"], 0, params)
    pool.start(["s/dev-2", "s/dev-3"], 1, {"w": np.ones(2)})
    sums = pool.collect(deadline=0.0)
    assert sorted(sums) == [0, 1]
    np.testing.assert_allclose(sums[0].sums["w"], [2.0, 2.0])  # 1*0 + 2*1
    assert sums[0].weight == 3.0
    np.testing.assert_allclose(sums[1].sums["w"], [3 * 2 + 4 * 3] * 2)
    assert sums[1].devices == ["s/dev-2", "s/dev-3"]
    assert pool.collect(deadline=0.0) == {}


def test_a_slow_device_answers_only_after_its_time() -> None:
    clock = Clock()
    pool = DevicePool("s", Shift, 2, speed={"distribution": "constant", "value": 5.0}, clock=clock)
    pool.start(["s/dev-1"], 0, {"w": np.zeros(1)})
    assert pool.collect(deadline=0.0) == {}
    assert pool.outstanding == 1
    clock.now = 5.0
    assert pool.collect(deadline=5.0)[0].devices == ["s/dev-1"]


def test_dropped_out_devices_never_answer_and_are_counted() -> None:
    pool = DevicePool("s", Shift, 100, dropout=0.5, seed=1)
    pool.start(pool.device_ids, 0, {"w": np.zeros(1)})
    answered = pool.collect(deadline=0.0)[0].devices
    assert pool.stats["dropped_out"] + len(answered) == 100
    assert 20 < pool.stats["dropped_out"] < 80


def test_undelivered_sums_go_with_the_next_report_and_shutdown_closes_every_device() -> None:
    CLOSED.clear()
    pool = DevicePool("s", Shift, 3)
    pool.start(["s/dev-1"], 0, {"w": np.zeros(1)})
    held = pool.collect(deadline=0.0)
    pool.start(["s/dev-2"], 0, {"w": np.zeros(1)})
    pool.restore(held)
    sums = pool.collect(deadline=0.0)[0]
    assert sorted(sums.devices) == ["s/dev-1", "s/dev-2"]
    np.testing.assert_allclose(sums.sums["w"], [2 * 1 + 3 * 2])
    pool.shutdown()
    assert sorted(CLOSED) == ["s/dev-1", "s/dev-2"]


def test_bad_simulation_settings_are_refused() -> None:
    with pytest.raises(SimulatorError, match="distribution"):
        check_speed({"distribution": "pareto"})
    with pytest.raises(SimulatorError, match="low <= high"):
        check_speed({"distribution": "uniform", "low": 2, "high": 1})
    with pytest.raises(SimulatorError, match="num_devices"):
        DevicePool("s", Shift, 0)
    with pytest.raises(SimulatorError, match="no device"):
        DevicePool("s", Shift, 1).start(["t/dev-0"], 0, {})
