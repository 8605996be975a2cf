"""Recycled receive buffers (ember.streaming.buffers)."""

from __future__ import annotations

import gc
import sys

import numpy as np
import pytest

from ember.config import Config, use_config
from ember.streaming import Downloader, buffers
from ember.streaming.buffers import BufferPool
from support.wire import Wire, fetcher_for

MIB = 1 << 20
SHAPE = (512, 1024)  # float32: 2 MiB


def address(array: np.ndarray) -> int:
    return int(array.__array_interface__["data"][0])


@pytest.fixture
def pool() -> BufferPool:
    return BufferPool()


def test_memory_comes_back_only_when_every_view_is_gone(pool: BufferPool) -> None:
    first = pool.empty(SHAPE, np.float32)
    assert first.flags.writeable
    assert first.flags.c_contiguous
    assert first.shape == SHAPE
    assert first.dtype == np.float32
    where = address(first)
    views = [first[::2], first.reshape(-1), np.asarray(first), memoryview(first)]
    del first
    gc.collect()
    busy = pool.empty(SHAPE, np.float32)  # the views still hold the first buffer
    assert address(busy) != where
    assert pool.reused == 0
    del views
    gc.collect()
    again = pool.empty(SHAPE, np.float32)
    assert address(again) == where
    assert pool.reused == 1


def test_only_the_same_size_is_reused(pool: BufferPool) -> None:
    gone = pool.empty(SHAPE, np.float32)
    where = address(gone)
    del gone
    gc.collect()
    other = pool.empty((SHAPE[0] * 2, SHAPE[1]), np.float32)
    assert address(other) != where
    assert pool.reused == 0
    same_bytes = pool.empty((SHAPE[0] * 2, SHAPE[1]), np.float16)  # 2 MiB too
    assert address(same_bytes) == where
    assert same_bytes.dtype == np.float16


def test_small_arrays_and_recycling_off_are_plain_numpy(pool: BufferPool) -> None:
    small = pool.empty((16, 16), np.float64)
    assert small.flags.owndata
    with use_config(Config({"streaming.recycle_mib": 0})):
        off = pool.empty(SHAPE, np.float32)
        assert off.flags.owndata
        del off
        gc.collect()
        assert pool.idle_bytes == 0


def test_idle_memory_is_capped_oldest_first(pool: BufferPool) -> None:
    with use_config(Config({"streaming.recycle_mib": 4})):
        a, b, c = (pool.empty(SHAPE, np.float32) for _ in range(3))
        first_back = address(a)
        last_back = {address(b), address(c)}
        del a
        gc.collect()
        del b, c
        gc.collect()
        assert pool.idle_bytes == 4 * MIB  # of three 2 MiB buffers, the first back was dropped
        reused = {address(pool.empty(SHAPE, np.float32)) for _ in range(2)}
        assert reused == last_back
        assert first_back not in reused
        assert pool.reused == 2


def test_clear_gives_idle_memory_back(pool: BufferPool) -> None:
    gone = pool.empty(SHAPE, np.float32)
    del gone
    gc.collect()
    assert pool.idle_bytes == 2 * MIB
    assert pool.clear() == 2 * MIB
    assert pool.idle_bytes == 0


linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="warming needs SCHED_IDLE and /dev/zero"
)


@linux_only
def test_a_model_still_held_gets_its_successor_warmed(pool: BufferPool) -> None:
    held = [pool.empty(SHAPE, np.float32), pool.empty((3 * MIB,), np.uint8)]
    pool.prepare_next()  # the script waits for the next model, still holding this one
    assert pool.wait_warm(30)
    assert pool.warmed == 2
    assert pool.idle_bytes == 5 * MIB
    warm = [pool.empty(SHAPE, np.float32), pool.empty((3 * MIB,), np.uint8)]
    assert pool.reused == 2
    assert {address(a) for a in warm}.isdisjoint(address(a) for a in held)
    del held  # the script lets go of the old model once it has the new one
    gc.collect()
    # it trains now: the old model's memory goes back to the kernel, not idle beside what
    # the script makes of the new one
    assert pool.idle_bytes == 0
    pool.prepare_next()  # the next wait warms it again
    assert pool.wait_warm(30)
    assert pool.warmed == 4
    assert pool.idle_bytes == 5 * MIB


@linux_only
def test_a_model_let_go_while_the_script_trains_is_recycled(pool: BufferPool) -> None:
    _old = [pool.empty(SHAPE, np.float32)]
    pool.prepare_next()
    assert pool.wait_warm(30)
    new = [pool.empty(SHAPE, np.float32)]  # the script has its model
    del new  # and lets go of it before its next receive
    gc.collect()
    assert pool.idle_bytes == 2 * MIB
    pool.prepare_next()
    assert pool.wait_warm(30)
    assert pool.warmed == 1  # the first warm-up only: the let-go model covers the next


@linux_only
def test_a_model_let_go_before_the_next_is_recycled_not_warmed(pool: BufferPool) -> None:
    dropped = [pool.empty(SHAPE, np.float32), pool.empty(SHAPE, np.float32)]
    del dropped
    gc.collect()
    pool.prepare_next()
    assert pool.wait_warm(30)
    assert pool.warmed == 0  # no memory beyond what the process had
    assert pool.idle_bytes == 4 * MIB


@linux_only
def test_nothing_received_nothing_warmed(pool: BufferPool) -> None:
    pool.prepare_next()
    assert pool.wait_warm(30)
    assert pool.warmed == 0


@linux_only
def test_warming_stays_under_the_cap(pool: BufferPool) -> None:
    with use_config(Config({"streaming.recycle_mib": 2})):
        _held = [pool.empty(SHAPE, np.float32), pool.empty(SHAPE, np.float32)]
        pool.prepare_next()
        assert pool.wait_warm(30)
        assert pool.warmed == 1
        assert pool.idle_bytes == 2 * MIB


def test_a_receive_stops_the_warmer(pool: BufferPool) -> None:
    pool._stop_warming.set()  # what a receive does when it takes a buffer
    pool._warm([2 * MIB, 3 * MIB], 1024 * MIB, 60)
    assert pool.warmed == 0
    assert pool.idle_bytes == 0


def test_module_functions_use_the_process_pool() -> None:
    array = buffers.empty(SHAPE, np.float32)
    assert isinstance(array.base, np.ndarray)
    assert isinstance(array.base.base, memoryview)


def test_pulled_tensors_land_in_recycled_memory(process_pool: BufferPool) -> None:
    owner = Downloader("owner", 60)
    fetcher = fetcher_for(Wire(owner), chunk=MIB)
    sent = np.arange(MIB, dtype=np.float32)  # 4 MiB
    got = fetcher.download_tensors("owner", owner.add_tensors({"w": sent}))["w"]
    np.testing.assert_array_equal(got, sent)
    where = address(got)
    del got
    gc.collect()
    before = process_pool.reused
    again = fetcher.download_tensors("owner", owner.add_tensors({"w": sent * 2}))["w"]
    assert address(again) == where
    assert process_pool.reused == before + 1
    np.testing.assert_array_equal(again, sent * 2)


@pytest.fixture
def process_pool(monkeypatch: pytest.MonkeyPatch) -> BufferPool:
    """A fresh pool as the process's (what the downloader and the fetcher use)."""
    fresh = BufferPool()
    monkeypatch.setattr(buffers, "POOL", fresh)
    return fresh


def received_and_sent_back(keep: bool) -> tuple[Downloader, str, list[np.ndarray]]:
    """A site's round: a model pulled into pooled memory, then offered back as its result;
    the site keeps its arrays (``keep``) or leaves them to the upload."""
    server = Downloader("server", 60)
    sent = {"a": np.ones(SHAPE, np.float32), "b": np.zeros(SHAPE, np.float32)}
    model = fetcher_for(Wire(server), chunk=MIB).download_tensors(
        "server", server.add_tensors(sent)
    )
    site = Downloader("site", 60)
    ref = site.add_tensors(model)
    held = list(model.values()) if keep else []
    return site, ref, held


def pulled_elsewhere(site: Downloader, ref: str) -> int:
    """The server pulls the result (in its own process: into memory that is not ours)."""
    fetcher = fetcher_for(Wire(site), chunk=MIB)
    return sum(
        fetcher.read_item("site", ref, entry["item"], lambda offset, data: None)
        for entry in fetcher.manifest("site", ref)
    )


@linux_only
def test_warming_waits_for_the_result_upload_then_covers_a_held_model(
    process_pool: BufferPool,
) -> None:
    site, ref, held = received_and_sent_back(keep=True)
    process_pool.prepare_next()
    assert not process_pool.wait_warm(0.2)  # the result is still waiting to be pulled
    assert process_pool.warmed == 0
    assert pulled_elsewhere(site, ref) > 4 * MIB
    assert process_pool.wait_warm(30)
    assert process_pool.warmed == 2  # the site still holds its model: the next needs new memory
    assert process_pool.idle_bytes == 4 * MIB
    assert len(held) == 2


@linux_only
def test_a_result_left_to_its_upload_is_recycled_not_warmed(process_pool: BufferPool) -> None:
    site, ref, _ = received_and_sent_back(keep=False)
    process_pool.prepare_next()
    assert not process_pool.wait_warm(0.2)
    assert pulled_elsewhere(site, ref) > 4 * MIB
    assert process_pool.wait_warm(30)
    assert process_pool.warmed == 0  # the upload gave the memory back: nothing new is made
    assert process_pool.idle_bytes == 4 * MIB
