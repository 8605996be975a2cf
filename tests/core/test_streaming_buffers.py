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


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="warming needs SCHED_IDLE")
def test_refill_warms_the_sizes_taken_fresh(pool: BufferPool) -> None:
    held = [pool.empty(SHAPE, np.float32), pool.empty((3 * MIB,), np.uint8)]
    assert pool.idle_bytes == 0
    pool.refill()
    assert pool.wait_warm(30)
    assert pool.warmed == 2
    assert pool.idle_bytes == 5 * MIB
    warm = [pool.empty(SHAPE, np.float32), pool.empty((3 * MIB,), np.uint8)]
    assert pool.reused == 2
    assert {address(a) for a in warm}.isdisjoint(address(a) for a in held)
    pool.refill()  # nothing was taken fresh since: nothing to warm
    assert pool.wait_warm(30)
    assert pool.warmed == 2


def test_refill_respects_the_cap(pool: BufferPool) -> None:
    with use_config(Config({"streaming.recycle_mib": 2})):
        _held = [pool.empty(SHAPE, np.float32), pool.empty(SHAPE, np.float32)]
        pool.refill()
        assert pool.wait_warm(30)
        assert pool.idle_bytes <= 2 * MIB


def test_a_stopped_warmer_keeps_what_it_did_not_warm(pool: BufferPool) -> None:
    pool._stop_warming.set()  # a receive began before the warmer got going
    pool._warm([2 * MIB, 3 * MIB])
    assert pool.warmed == 0
    assert pool.idle_bytes == 0
    assert pool._missed == [2 * MIB, 3 * MIB]  # the next refill warms them


def test_module_functions_use_the_process_pool() -> None:
    array = buffers.empty(SHAPE, np.float32)
    assert isinstance(array.base, np.ndarray)
    assert isinstance(array.base.base, memoryview)


def test_pulled_tensors_land_in_recycled_memory() -> None:
    owner = Downloader("owner", 60)
    fetcher = fetcher_for(Wire(owner), chunk=MIB)
    sent = np.arange(MIB, dtype=np.float32)  # 4 MiB
    got = fetcher.download_tensors("owner", owner.add_tensors({"w": sent}))["w"]
    np.testing.assert_array_equal(got, sent)
    where = address(got)
    del got
    gc.collect()
    before = buffers.POOL.reused
    again = fetcher.download_tensors("owner", owner.add_tensors({"w": sent * 2}))["w"]
    assert address(again) == where
    assert buffers.POOL.reused == before + 1
    np.testing.assert_array_equal(again, sent * 2)
