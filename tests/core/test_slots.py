"""SimEnv's work slots: a freed slot goes to the first waiting site in the job's order."""

from __future__ import annotations

import threading

import pytest

from ember.client.slots import WorkSlots


def test_a_freed_slot_goes_to_the_first_waiting_site_in_order() -> None:
    slots = WorkSlots(1, ["site-1", "site-2", "site-3"])
    slots.acquire("site-1")
    got: list[str] = []

    def work(site: str) -> None:
        slots.acquire(site)
        got.append(site)
        slots.release()

    threads = [threading.Thread(target=work, args=(s,)) for s in ("site-3", "site-2")]
    for thread in threads:
        thread.start()
    with slots._cond:
        assert slots._cond.wait_for(lambda: len(slots._waiting) == 2, timeout=30)
    slots.release()
    for thread in threads:
        thread.join(30)
    assert got == ["site-2", "site-3"]


def test_slots_cap_how_many_sites_work_at_once() -> None:
    slots = WorkSlots(2, ["a", "b", "c"])
    slots.acquire("c")
    slots.acquire("b")  # two slots, neither waits
    taken = threading.Event()
    thread = threading.Thread(target=lambda: (slots.acquire("a"), taken.set()))
    thread.start()
    with slots._cond:
        assert slots._cond.wait_for(lambda: "a" in slots._waiting, timeout=30)
    assert not taken.is_set()  # a third site waits
    slots.release()
    assert taken.wait(30)
    thread.join(30)


def test_a_slot_count_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1, got 0"):
        WorkSlots(0, ["a"])
