"""The download service: bit-exact pulls, checksums, retries, expiry, push, transparency."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import safetensors.numpy

from ember.config import Config, use_config
from ember.runtime.transport import InProcessTransport, TransportError
from ember.streaming import (
    Downloader,
    FileReceiver,
    LazyTensor,
    StreamingError,
    push_file,
)
from ember.streaming.layout import tensor_header
from support.sim import global_model, numpy_recipe, run_sim
from support.wire import KIB, Wire, fetcher_for

ARRAYS = {
    "f32": np.random.default_rng(0).normal(size=(37, 41)).astype(np.float32),
    "f16": np.arange(1000, dtype=np.float16),
    "i64": np.arange(-500, 500, dtype=np.int64).reshape(10, 100),
    "u8": np.frombuffer(bytes(range(256)) * 40, dtype=np.uint8),
    "bool": np.array([True, False, True]),
    "scalar": np.array(3.5),
    "empty": np.zeros((0, 4), np.float32),
    "strided": np.arange(100.0)[::3],
}


def test_tensors_round_trip_bit_exactly() -> None:
    owner = Downloader("owner", 60)
    ref = owner.add_tensors(ARRAYS)
    got = fetcher_for(Wire(owner)).download_tensors("owner", ref)
    assert list(got) == list(ARRAYS)
    for name, array in ARRAYS.items():
        assert got[name].dtype == array.dtype
        assert got[name].shape == array.shape
        assert got[name].tobytes() == np.ascontiguousarray(array).tobytes()
        assert got[name].flags.writeable
    assert owner.pending() == 0  # pulled completely by its one receiver: cleaned up


def test_tensor_stream_is_a_safetensors_file(tmp_path: Path) -> None:
    array = ARRAYS["f32"]
    owner = Downloader("owner", 60)
    ref = owner.add_tensors({"w": array})
    assert (
        tensor_header("t", array)
        == safetensors.numpy.save({"t": array})[: len(tensor_header("t", array))]
    )
    path = fetcher_for(Wire(owner)).fetch_to_file("owner", ref, "0", tmp_path / "w.safetensors")
    loaded = safetensors.numpy.load_file(str(path))
    np.testing.assert_array_equal(loaded["w"], array)


def test_files_and_objects_round_trip(tmp_path: Path) -> None:
    source = tmp_path / "weights.bin"
    source.write_bytes(np.random.default_rng(1).bytes(4 * KIB * 3 + 123))
    owner = Downloader("owner", 60)
    fetcher = fetcher_for(Wire(owner))
    dest = fetcher.download_file("owner", owner.add_file(source), tmp_path / "out" / "w.bin")
    assert dest.read_bytes() == source.read_bytes()
    assert not list((tmp_path / "out").glob("*.part"))
    obj = {"round": 3, "metrics": {"acc": 0.9}, "w": np.ones(5)}
    back = fetcher.download_object("owner", owner.add_object(obj))
    assert back["metrics"] == {"acc": 0.9}
    np.testing.assert_array_equal(back["w"], np.ones(5))


def test_corrupted_chunk_is_detected_and_fetched_again() -> None:
    owner = Downloader("owner", 60)
    ref = owner.add_tensors({"w": ARRAYS["f32"]})
    wire = Wire(owner)
    wire.corrupt = {2}
    got = fetcher_for(wire).download_tensors("owner", ref)
    np.testing.assert_array_equal(got["w"], ARRAYS["f32"])
    offsets = [p["offset"] for topic, p in wire.calls if topic == "stream.chunk"]
    assert offsets[0:3] == [0, 4 * KIB, 4 * KIB]  # the corrupt chunk was asked for again


def test_pipelined_pulls_keep_several_chunks_in_flight_and_stay_exact() -> None:
    import threading

    class SlowWire(Wire):
        """Holds each later chunk request until another one is waiting too (bounded): a
        fetcher that pulls one chunk at a time never has two."""

        def __init__(self, downloader: Downloader) -> None:
            super().__init__(downloader)
            self.cond = threading.Condition()
            self.active = 0
            self.most = 0

        def __call__(self, target: str, topic: str, payload: Any, timeout: float) -> Any:
            with self.cond:
                self.active += 1
                self.most = max(self.most, self.active)
                self.cond.notify_all()
                if topic == "stream.chunk" and payload.get("offset"):
                    self.cond.wait_for(lambda: self.active >= 2, timeout=0.1)
            try:
                return super().__call__(target, topic, payload, timeout)
            finally:
                with self.cond:
                    self.active -= 1

    owner = Downloader("owner", 60)
    big = np.random.default_rng(5).normal(size=40_000).astype(np.float32)  # ~40 chunks
    ref = owner.add_tensors({"big": big, "u8": ARRAYS["u8"]})
    wire = SlowWire(owner)
    wire.corrupt = {3, 9}
    wire.drop = {5}
    got = fetcher_for(wire, in_flight=4).download_tensors("owner", ref)
    assert got["big"].tobytes() == big.tobytes()
    assert got["u8"].tobytes() == ARRAYS["u8"].tobytes()
    assert wire.most > 1  # chunks of one item were pulled concurrently
    assert owner.pending() == 0


def test_persistent_corruption_fails_clearly() -> None:
    owner = Downloader("owner", 60)
    ref = owner.add_tensors({"w": ARRAYS["f32"]})
    wire = Wire(owner)
    wire.corrupt = set(range(1, 100))
    with pytest.raises(
        StreamingError,
        match=r"gave up on stream.chunk .* after 3 attempts "
        r"\(streaming.max_retries = 2 retries .*\): corrupt",
    ):
        fetcher_for(wire, retries=2).download_tensors("owner", ref)


def test_dropped_connection_resumes_at_the_same_offset() -> None:
    owner = Downloader("owner", 60)
    ref = owner.add_tensors({"w": ARRAYS["u8"]})  # 10 KiB: three chunks
    wire = Wire(owner)
    wire.drop = {3}
    got = fetcher_for(wire).download_tensors("owner", ref)
    np.testing.assert_array_equal(got["w"], ARRAYS["u8"])
    offsets = [p["offset"] for topic, p in wire.calls if topic == "stream.chunk"]
    assert offsets[:4] == [0, 4 * KIB, 8 * KIB, 8 * KIB]


def test_connection_that_stays_down_fails_clearly() -> None:
    owner = Downloader("owner", 60)
    ref = owner.add_tensors({"w": ARRAYS["f32"]})
    wire = Wire(owner)
    wire.drop = set(range(2, 100))
    with pytest.raises(StreamingError, match="ConnectionError: connection reset by peer"):
        fetcher_for(wire).download_tensors("owner", ref)


def test_receiver_that_never_pulls_times_out_and_is_cleaned_up() -> None:
    owner = Downloader("owner", 30)
    ref = owner.add_tensors({"w": ARRAYS["f32"]})
    assert owner.expire(time.monotonic() + 1) == 0
    assert owner.expire(time.monotonic() + 31) == 1
    assert owner.pending() == 0
    with pytest.raises(
        StreamingError,
        match=r"expired after 30 s without a pull "
        r"\(streaming.transaction_timeout = 30 s .*\); 1 receiver",
    ):
        fetcher_for(Wire(owner)).download_tensors("owner", ref)


def test_transaction_lives_until_every_receiver_finished() -> None:
    owner = Downloader("owner", 60)
    ref = owner.add_tensors({"w": ARRAYS["i64"]}, receivers=2)
    fetcher_for(Wire(owner)).download_tensors("owner", ref)
    assert owner.pending() == 1  # one receiver so far
    owner.done(ref, "second")
    assert owner.pending() == 0


def test_unknown_reference_is_a_clear_error() -> None:
    with pytest.raises(StreamingError, match="owner has no download nope: unknown id"):
        fetcher_for(Wire(Downloader("owner", 60))).download_tensors("owner", "nope")


def _transport(**settings: Any) -> InProcessTransport:
    transport = InProcessTransport()
    with use_config(Config(settings)):
        transport.add_endpoint("server", lazy_tensors=True)
        transport.add_endpoint("site-1")
    return transport


def test_large_arrays_in_messages_travel_by_download() -> None:
    transport = _transport(**{"streaming.min_tensor_bytes": 1024})
    received: list[Any] = []
    transport._endpoints["server"].register_handler("echo", lambda s, p: received.append(p) or p)
    big, small = np.arange(4096, dtype=np.float32), np.arange(10.0)
    reply = transport.request("site-1", "server", "echo", {"big": big, "small": small})
    assert isinstance(received[0]["big"], LazyTensor)  # the lazy server holds a reference
    assert isinstance(received[0]["small"], np.ndarray)  # small arrays are inlined
    assert isinstance(reply["big"], np.ndarray)  # the eager site pulled it back
    np.testing.assert_array_equal(reply["big"], big)
    assert reply["big"].flags.writeable
    transport.close()


def test_disabled_streaming_inlines_everything() -> None:
    transport = _transport(**{"streaming.enabled": False, "streaming.min_tensor_bytes": 1})
    received: list[Any] = []
    transport._endpoints["server"].register_handler("echo", lambda s, p: received.append(p))
    transport.request("site-1", "server", "echo", {"big": np.arange(4096, dtype=np.float32)})
    assert isinstance(received[0]["big"], np.ndarray)
    transport.close()


def test_push_file_to_a_receiver(tmp_path: Path) -> None:
    transport = _transport()
    FileReceiver(tmp_path / "uploads").attach(transport._endpoints["server"])
    log = tmp_path / "log.txt"
    log.write_bytes(b"line\n" * 5000)

    def request(target: str, topic: str, payload: Any, timeout: float) -> Any:
        return transport.request("site-1", target, topic, payload, timeout)

    stored = push_file(request, "server", log, name="logs/log.txt", chunk_size=4 * KIB)
    assert Path(stored) == tmp_path / "uploads" / "site-1" / "logs" / "log.txt"
    assert Path(stored).read_bytes() == log.read_bytes()
    with pytest.raises(StreamingError, match=r"refusing to receive a file named '\.\./evil'"):
        push_file(request, "server", log, name="../evil")
    transport.close()


def test_unreachable_receiver_fails_the_push(tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    log.write_text("x")

    def down(target: str, topic: str, payload: Any, timeout: float) -> Any:
        raise TransportError("server is not attached")

    with pytest.raises(StreamingError, match="after 2 attempts: TransportError"):
        push_file(down, "server", log, max_retries=1)


BIG = np.arange(300_000, dtype=np.float32).reshape(600, 500)  # 1.2 MB: streamed by default


@pytest.mark.parametrize(
    "settings",
    [
        {"streaming.enabled": False},
        {"streaming.inprocess_direct": False, "streaming.chunk_size": 64 * KIB},
        {"streaming.offload_dir": "OFFLOAD"},
    ],
)
def test_fedavg_results_do_not_depend_on_streaming(
    tmp_path: Path, settings: dict[str, Any]
) -> None:
    baseline = run_sim(numpy_recipe(model=BIG, train_args="--noise"), tmp_path / "base")
    recipe = numpy_recipe(model=BIG, train_args="--noise")
    for name, value in settings.items():
        recipe.set_config(name, str(tmp_path / value) if value == "OFFLOAD" else value)
    run = run_sim(recipe, tmp_path / "run")
    assert run.get_status() == "FINISHED:COMPLETED", run.get_message()
    assert global_model(run.get_result()).tobytes() == global_model(baseline.get_result()).tobytes()
    if "streaming.offload_dir" in settings:
        assert not any((tmp_path / "OFFLOAD").rglob("*.safetensors"))
    # three rounds of +1 plus zero-mean noise
    assert float(np.mean(global_model(run.get_result()) - BIG)) == pytest.approx(3, abs=0.05)


def test_release_memory_trims_on_glibc() -> None:
    import platform

    from ember.streaming.memory import _malloc_trim, release_memory

    assert (_malloc_trim() is not None) == (platform.libc_ver()[0] == "glibc")
    garbage = [[i] for i in range(1000)]
    garbage.append(garbage)  # a cycle only the collector frees
    del garbage
    done = release_memory()
    assert done["collected"] >= 1
    assert done["cuda_cache_emptied"] is False


def test_progress_callbacks_report_each_chunk(tmp_path: Path) -> None:
    source = tmp_path / "data.bin"
    source.write_bytes(b"x" * (10 * KIB))
    owner = Downloader("owner", 60)
    seen: list[tuple[str, int, int]] = []
    fetcher_for(Wire(owner)).download_file(
        "owner",
        owner.add_file(source),
        tmp_path / "copy.bin",
        progress=lambda name, got, size: seen.append((name, got, size)),
    )
    assert seen == [
        ("data.bin", 4 * KIB, 10 * KIB),
        ("data.bin", 8 * KIB, 10 * KIB),
        ("data.bin", 10 * KIB, 10 * KIB),
    ]


def test_subprocess_sites_stream_through_their_site(tmp_path: Path) -> None:
    """Scripts in their own processes pull and offer tensors through the site's socket."""
    args = {"model": BIG, "train_args": "--noise", "launch_external_process": True}
    streamed = run_sim(numpy_recipe(**args), tmp_path / "on")
    inline = numpy_recipe(**args)
    inline.set_config("streaming.enabled", False)
    baseline = run_sim(inline, tmp_path / "off")
    assert streamed.get_status() == "FINISHED:COMPLETED", streamed.get_message()
    assert baseline.get_status() == "FINISHED:COMPLETED", baseline.get_message()
    assert (
        global_model(streamed.get_result()).tobytes()
        == global_model(baseline.get_result()).tobytes()
    )
