"""Carrier threads: many sites' scripts as greenlets on a few threads (SimEnv at scale)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from ember.common.carriers import Carrier, CooperativeCondition, running_carrier
from support.sim import INITIAL, global_model, numpy_recipe, run_sim

COMPLETED = "FINISHED:COMPLETED"


def test_two_scripts_on_one_carrier_take_turns_through_a_cooperative_condition() -> None:
    lock = threading.Lock()
    turn = CooperativeCondition(lock)
    state: dict[str, object] = {"turn": "ping", "log": []}
    log: list[str] = state["log"]  # type: ignore[assignment]

    def player(me: str, other: str) -> None:
        for _ in range(3):
            with turn:
                while state["turn"] != me:
                    assert turn.wait(5.0), "a parked script was not woken"
                log.append(me)
                state["turn"] = other
                turn.notify_all()

    carrier = Carrier("test-carrier")
    carrier.start()
    done = [threading.Event(), threading.Event()]
    carrier.spawn(lambda: player("ping", "pong"), done[0].set)
    carrier.spawn(lambda: player("pong", "ping"), done[1].set)
    assert all(d.wait(10.0) for d in done)
    carrier.close()
    assert carrier.join(5.0)
    assert log == ["ping", "pong"] * 3


def test_a_parked_script_is_woken_by_a_notify_from_another_thread() -> None:
    cond = CooperativeCondition(threading.Lock())
    seen: list[tuple[bool, bool]] = []
    returned = threading.Event()

    def script() -> None:
        with cond:
            woke = cond.wait(10.0)
            seen.append((woke, running_carrier() is not None))

    carrier = Carrier("test-carrier")
    carrier.start()
    carrier.spawn(script, returned.set)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # until the script has parked in the condition
        with cond:
            if cond._waiters:  # type: ignore[attr-defined]
                cond.notify()
                break
        time.sleep(0.001)
    assert returned.wait(10.0)
    carrier.close()
    assert seen == [(True, True)]


def test_a_wait_that_times_out_returns_false_while_the_carrier_runs_other_scripts() -> None:
    cond = CooperativeCondition(threading.Lock())
    results: dict[str, object] = {}
    done = [threading.Event(), threading.Event()]

    def waiter() -> None:
        started = time.monotonic()
        with cond:
            results["woke"] = cond.wait(0.2)
        results["waited"] = time.monotonic() - started

    def other() -> None:
        results["other ran"] = True

    carrier = Carrier("test-carrier")
    carrier.start()
    carrier.spawn(waiter, done[0].set)
    carrier.spawn(other, done[1].set)
    assert all(d.wait(10.0) for d in done)
    carrier.close()
    assert results["woke"] is False
    assert results["other ran"] is True
    assert 0.2 <= float(results["waited"]) < 5.0  # type: ignore[arg-type]
    with cond:
        assert not cond._waiters  # type: ignore[attr-defined]  # the timed-out waiter left


def test_a_condition_waited_on_outside_a_carrier_is_an_ordinary_condition() -> None:
    cond = CooperativeCondition(threading.Lock())
    assert running_carrier() is None
    with cond:
        assert cond.wait(0.01) is False


def test_a_simulation_with_more_sites_than_script_threads_gives_each_site_its_own_session(
    tmp_path: Path,
) -> None:
    sites = [f"site-{i}" for i in range(1, 7)]
    adds = {site: i for i, site in enumerate(sites, start=1)}
    args = "--add '" + str(adds).replace("'", '"') + "'"
    recipe = numpy_recipe("np_client.py", min_clients=6, num_rounds=2, train_args=args)
    recipe.set_config("sim.script_threads", 2)
    recipe.set_config("sim.carrier_threads", 2)
    run = run_sim(recipe, tmp_path, num_clients=6)
    assert run.get_status() == COMPLETED, run.get_message()
    # each round adds the mean of what the sites add (1..6): each site used its own session
    np.testing.assert_array_equal(global_model(run.get_result()), INITIAL + 2 * 3.5)
    server_log = (Path(run.get_result()) / "server" / "log.txt").read_text()
    assert "6 sites' scripts run on 2 carrier threads" in server_log


def test_scripts_on_carriers_print_into_their_own_site_logs(tmp_path: Path) -> None:
    recipe = numpy_recipe("chatty_client.py", min_clients=4, num_rounds=2)
    recipe.set_config("sim.script_threads", 2)
    recipe.set_config("sim.carrier_threads", 2)
    run = run_sim(recipe, tmp_path, num_clients=4)
    assert run.get_status() == COMPLETED, run.get_message()
    result = Path(run.get_result())
    for i in range(1, 5):
        lines = [
            line
            for line in (result / f"site-{i}" / "log.txt").read_text().splitlines()
            if " line " in line
        ]
        assert lines, f"site-{i} logged none of its script's lines"
        # whole lines of this site only: the pieces of a line were not split by a switch
        assert all(f"site-{i} round " in line and line.endswith(" end") for line in lines)
