"""Memory the download service gives up: items let go once pulled, arrays moved in process,
models kept on disk while they are sent."""

from __future__ import annotations

import threading
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import safetensors.numpy

from ember import fobs
from ember.common.model import ParamsType
from ember.runtime.aggregation import WeightedAverage
from ember.streaming import Downloader, Fetcher, LazyTensor, StreamingError
from ember.streaming.layout import read_tensor_file
from ember.streaming.lazy import OffloadedTensor, offload_arrays
from support.sim import global_model, numpy_recipe, run_sim
from support.wire import Wire, fetcher_for

N = 4096


def _array(seed: int) -> np.ndarray[Any, Any]:
    return np.random.default_rng(seed).normal(size=N).astype(np.float32)


def test_an_item_is_let_go_once_its_receiver_has_it() -> None:
    owner = Downloader("owner", 60)
    first, second = _array(0), _array(1)
    expected = first.copy()
    gone = weakref.ref(first)
    ref = owner.add_tensors({"a": first, "b": second})
    del first
    fetcher = fetcher_for(Wire(owner))
    _, got = fetcher.fetch_tensor("owner", ref, "0")
    np.testing.assert_array_equal(got, expected)
    assert gone() is None  # the owner no longer holds the pulled array
    assert [e["name"] for e in fetcher.manifest("owner", ref)] == ["a", "b"]
    with pytest.raises(StreamingError, match="'a' was already pulled by every receiver"):
        fetcher.fetch_tensor("owner", ref, "0")
    _, rest = fetcher.fetch_tensor("owner", ref, "1")
    np.testing.assert_array_equal(rest, second)
    assert owner.pending() == 0


def test_an_item_stays_until_every_expected_receiver_has_it() -> None:
    owner = Downloader("owner", 60)
    array = _array(2)
    address = array.ctypes.data
    ref = owner.add_tensors({"a": array}, receivers=2)
    del array
    _, copied, moved = owner.take(ref, "0", "first")
    assert not moved  # the second receiver still needs it
    assert copied.ctypes.data != address
    _, got, moved = owner.take(ref, "0", "second")
    assert moved
    assert got.ctypes.data == address


def test_an_array_someone_watches_is_never_moved() -> None:
    owner = Downloader("owner", 60)
    array = _array(9)
    address = array.ctypes.data
    watcher = weakref.ref(array)  # a weak reference could bring it back
    ref = owner.add_tensors({"a": array})
    del array
    _, got, moved = owner.take(ref, "0", "receiver")
    assert not moved
    assert got.ctypes.data != address
    np.testing.assert_array_equal(got, _array(9))
    assert watcher() is None  # and the owner let go of it


def test_the_last_receiver_in_process_takes_the_array_itself() -> None:
    owner = Downloader("owner", 60)
    array = _array(3)
    address, expected = array.ctypes.data, array.copy()
    ref = owner.add_tensors({"w": array})
    del array
    name, got, moved = owner.take(ref, "0", "receiver")
    assert (name, moved) == ("w", True)
    assert got.ctypes.data == address
    assert got.flags.writeable
    np.testing.assert_array_equal(got, expected)


def test_an_array_its_owner_still_holds_is_copied_or_viewed() -> None:
    owner = Downloader("owner", 60)
    array = _array(4)
    expected = array.copy()
    _, got, moved = owner.take(owner.add_tensors({"w": array}), "0", "receiver")
    assert not moved
    assert not np.shares_memory(got, array)
    got += 1
    np.testing.assert_array_equal(array, expected)  # the owner's array is untouched
    _, view, moved = owner.take(owner.add_tensors({"w": array}), "0", "r", copy=False)
    assert not moved
    assert np.shares_memory(view, array)
    assert not view.flags.writeable


def _offer_twice(owner: Downloader, array: np.ndarray[Any, Any]) -> list[str]:
    """Two messages carrying the same array, as the server's task to two sites."""
    refs = []
    for _ in range(2):
        tx = owner.open(receivers=1)
        tx.add_tensor("w", array.reshape(-1))
        refs.append(owner.publish(tx))
    return refs


def test_the_first_receiver_copies_and_the_last_takes_the_shared_array() -> None:
    owner = Downloader("owner", 60)
    array = _array(5).reshape(64, 64)
    address, expected = array.ctypes.data, array.copy()
    first, second = _offer_twice(owner, array)
    del array
    _, copied, moved = owner.take(first, "0", "site-1")
    assert not moved
    assert copied.ctypes.data != address
    _, taken, moved = owner.take(second, "0", "site-2")
    assert moved
    assert taken.ctypes.data == address
    np.testing.assert_array_equal(copied, expected.reshape(-1))
    np.testing.assert_array_equal(taken, expected.reshape(-1))


class _SlowCopy(np.ndarray):  # type: ignore[type-arg]
    """An array whose copy waits for the test to let it finish."""

    started = threading.Event()
    finish = threading.Event()

    def copy(self, *args: Any, **kwargs: Any) -> Any:
        _SlowCopy.started.set()
        assert _SlowCopy.finish.wait(30)
        return super().copy(*args, **kwargs)


class _SeenWaiting(threading.Condition):
    waiting = threading.Event()

    def wait(self, timeout: float | None = None) -> bool:
        _SeenWaiting.waiting.set()
        return super().wait(timeout)


def test_a_last_receiver_waits_for_a_copy_in_progress_then_takes_the_array() -> None:
    owner = Downloader("owner", 60)
    owner._cond = _SeenWaiting(owner._lock)
    array = _array(6).view(_SlowCopy)
    address = array.ctypes.data
    first, second = _offer_twice(owner, array)
    del array
    results: dict[str, Any] = {}

    def take(ref: str, who: str) -> None:
        results[who] = owner.take(ref, "0", who)

    copier = threading.Thread(target=take, args=(first, "site-1"))
    copier.start()
    assert _SlowCopy.started.wait(30)  # site-1 is copying
    taker = threading.Thread(target=take, args=(second, "site-2"))
    taker.start()
    assert _SeenWaiting.waiting.wait(30)  # site-2 waits for that copy
    _SlowCopy.finish.set()
    copier.join(30)
    taker.join(30)
    assert not results["site-1"][2]
    _, taken, moved = results["site-2"]
    assert moved
    assert taken.ctypes.data == address
    np.testing.assert_array_equal(taken, results["site-1"][1])


def test_a_result_nobody_else_holds_becomes_the_running_sum() -> None:
    owner = Downloader("site-1", 60)
    mine, kept = _array(7), _array(8)
    address = mine.ctypes.data
    expected = (mine * np.float32(2.0) + kept * np.float32(1.0)) / np.float32(3.0)
    ref_mine = owner.add_tensors({"w": mine})
    ref_kept = owner.add_tensors({"w": kept})  # its owner keeps this one
    del mine
    fetcher = Fetcher("server", lambda *a: None, 1 << 20, 5.0, 1)
    fetcher.local = lambda name: owner if name == "site-1" else None

    def lazy(ref: str) -> LazyTensor:
        return LazyTensor(fetcher, "site-1", ref, "0", np.dtype(np.float32), (N,), "C")

    average = WeightedAverage()
    average.add("site-1", {"w": lazy(ref_mine)}, ParamsType.FULL, 2.0)
    assert average._sums["w"].ctypes.data == address  # no new array for the sum
    average.add("site-2", {"w": lazy(ref_kept)}, ParamsType.FULL, 1.0)
    result = average.params()["w"]
    assert result.ctypes.data == address
    np.testing.assert_array_equal(result, expected)
    assert kept.flags.writeable  # the kept array was only read
    np.testing.assert_array_equal(kept, _array(8))


OFFLOADED = {
    "c": _array(10).reshape(64, 64),
    "f": np.asfortranarray(np.arange(6000, dtype=np.float64).reshape(60, 100)),
    "half": np.arange(5000, dtype=np.float16),
    "ints": np.arange(-3000, 3000, dtype=np.int64),
    "small": np.arange(4.0),  # under min_bytes: stays an array
}


def _offloaded(tmp_path: Path) -> dict[str, Any]:
    return offload_arrays(OFFLOADED, tmp_path / "global", min_bytes=1024)


def test_offloaded_arrays_are_safetensors_files(tmp_path: Path) -> None:
    params = _offloaded(tmp_path)
    assert isinstance(params["small"], np.ndarray)
    for key in ("c", "f", "half", "ints"):
        offloaded = params[key]
        assert isinstance(offloaded, OffloadedTensor)
        (stored,) = safetensors.numpy.load_file(str(offloaded.path)).values()
        np.testing.assert_array_equal(stored, np.ravel(OFFLOADED[key], order="K"))
        name, flat = read_tensor_file(offloaded.path)
        assert name == key
        np.testing.assert_array_equal(flat, stored)
        assert flat.flags.writeable


def _send(params: dict[str, Any], owner: Downloader) -> tuple[bytes, str]:
    tx = owner.open(receivers=1)
    data = fobs.dumps(params, ctx=fobs.Context({"stream_tx": tx, "stream_min_bytes": 1024}))
    return data, owner.publish(tx)


def test_an_offloaded_tensor_is_served_from_its_file(tmp_path: Path) -> None:
    owner = Downloader("owner", 60)
    data, _ = _send(_offloaded(tmp_path), owner)
    assert len(data) < 2048  # references, not data
    wire = Wire(owner)
    got = fobs.loads(bytearray(data), ctx=fobs.Context({"fetcher": fetcher_for(wire)}))
    for key, expected in OFFLOADED.items():
        assert got[key].dtype == expected.dtype
        np.testing.assert_array_equal(got[key], expected)
        assert got[key].flags.writeable
    assert owner.pending() == 0
    assert sum(1 for topic, _ in wire.calls if topic == "stream.chunk") >= 4


def test_an_offloaded_tensor_in_process_is_read_into_an_array_of_its_own(
    tmp_path: Path,
) -> None:
    owner = Downloader("owner", 60)
    params = _offloaded(tmp_path)
    _, ref = _send(params, owner)
    name, flat, owned = owner.take(ref, "0", "receiver")
    assert (name, owned) == ("c", True)
    np.testing.assert_array_equal(flat, OFFLOADED["c"].reshape(-1))
    assert flat.flags.writeable
    with pytest.raises(StreamingError, match="no tensor '0' left: every receiver pulled it"):
        owner.take(ref, "0", "receiver")
    params["f"].path.unlink()
    with pytest.raises(StreamingError, match=r"cannot read tensor file .*1\.safetensors"):
        owner.take(ref, "1", "receiver")


@pytest.mark.parametrize("external", [False, True])
def test_fedavg_with_the_global_model_on_disk_gives_the_same_model(
    tmp_path: Path, external: bool
) -> None:
    model = np.arange(300_000, dtype=np.float32).reshape(600, 500)
    baseline = run_sim(numpy_recipe(model=model), tmp_path / "base")
    recipe = numpy_recipe(model=model, launch_external_process=external)
    recipe.set_config("streaming.offload_dir", str(tmp_path / "offload"))
    run = run_sim(recipe, tmp_path / "run")
    assert run.get_status() == "FINISHED:COMPLETED", run.get_message()
    assert global_model(run.get_result()).tobytes() == global_model(baseline.get_result()).tobytes()
    assert not any((tmp_path / "offload").rglob("*"))  # the round folders are gone


def test_an_offloaded_result_is_read_once_scaled_in_place_and_its_file_removed(
    tmp_path: Path,
) -> None:
    first, second = _array(11), _array(12)
    params_1 = offload_arrays({"w": first}, tmp_path / "site-1", min_bytes=1024)
    params_2 = offload_arrays({"w": second}, tmp_path / "site-2", min_bytes=1024)
    average = WeightedAverage()
    average.add("site-1", params_1, ParamsType.FULL, 3.0)
    average.add("site-2", params_2, ParamsType.FULL, 1.0)
    expected = (first * np.float32(3.0) + second * np.float32(1.0)) / np.float32(4.0)
    np.testing.assert_array_equal(average.params()["w"], expected)
    assert not params_1["w"].path.exists()
    assert not params_2["w"].path.exists()


def test_an_offload_dir_that_cannot_be_written_fails_the_job_naming_the_setting(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the folder should be")
    recipe = numpy_recipe(model=np.arange(300_000, dtype=np.float32))
    recipe.set_config("streaming.offload_dir", str(blocker))
    run = run_sim(recipe, tmp_path / "run")
    assert run.get_status() == "FINISHED:EXECUTION_EXCEPTION"
    assert "streaming.offload_dir" in run.get_message()
    assert "writable folder" in run.get_message()
