"""FOBS throughput against pickle protocol 5 and a plain copy, plus an optional decode fuzz.

    python benchmarks/fobs_throughput.py [--arrays 8] [--mib 128] [--repeat 3] [--fuzz N] [--quick]

Workload: a dict of ``--arrays`` float32 arrays of ``--mib`` MiB each (1 GiB by default).
Measured in one run, best of ``--repeat``:

* FOBS round trip: ``fobs.dumps`` then ``fobs.loads``;
* pickle protocol 5 with out-of-band buffers, framed the way a transport has to send it
  (a length header, the pickle bytes and the raw buffers joined into one ``bytes``; the
  receiver slices memoryviews from that frame and hands them to ``pickle.loads(buffers=)``);
* ``arr.copy()`` of every array: the memcpy floor.

A separate pass measures the extra peak memory of each round trip with tracemalloc (numpy
registers its allocations there) as a multiple of the payload. ``--fuzz N`` then feeds N
mutated frames (bit flips, truncations, insertions, ... on several seed frames, seeded RNG)
to ``fobs.loads`` and fails on any exception other than ``FOBSError``.

Human-readable lines first; the last line of output is one JSON object of named figures.
Exit status: 0, or 1 if a decoded payload differs or the fuzz saw a non-FOBSError exception.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import decimal
import enum
import gc
import io
import json
import pickle
import random
import struct
import sys
import time
import tracemalloc
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np

from ember import fobs
from ember.config import Config, use_config

GIB = 1 << 30
MIB = 1 << 20
TARGET_VS_PICKLE5 = 0.8  # FOBS round trip at least 0.8x the speed of pickle 5
TARGET_EXTRA_PEAK = 1.0  # extra peak memory at most 1x the payload ...
PEAK_SLACK = MIB  # ... plus this much for frame headers, msgpack bodies and Python objects

Payload = dict[str, np.ndarray[Any, Any]]


# --- workload and round trips -----------------------------------------------------------------


def make_payload(arrays: int, mib: int, seed: int = 0) -> Payload:
    """``arrays`` float32 arrays of ``mib`` MiB of random values each."""
    rng = np.random.default_rng(seed)
    n = mib * MIB // 4
    return {f"layer{i}.weight": rng.random(n, dtype=np.float32) for i in range(arrays)}


def fobs_round_trip(payload: Payload) -> Any:
    """Encode to one frame and decode it (the arrays come back as views over the frame)."""
    return fobs.loads(fobs.dumps(payload))


def pickle5_dumps(obj: Any) -> bytes:
    """Pickle protocol 5 with out-of-band buffers, joined into one length-prefixed frame."""
    buffers: list[pickle.PickleBuffer] = []
    body = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    raws = [b.raw() for b in buffers]
    header = struct.pack(f"<QQ{len(raws)}Q", len(body), len(raws), *(r.nbytes for r in raws))
    return b"".join([header, body, *raws])


def pickle5_loads(frame: bytes) -> Any:
    """Decode :func:`pickle5_dumps`' frame, passing memoryviews over it as the buffers."""
    view = memoryview(frame)
    body_len, nbuf = struct.unpack_from("<QQ", view)
    lengths = struct.unpack_from(f"<{nbuf}Q", view, 16)
    offset = 16 + 8 * nbuf
    body = view[offset : offset + body_len]
    offset += body_len
    buffers = []
    for length in lengths:
        buffers.append(view[offset : offset + length])
        offset += length
    return pickle.loads(body, buffers=buffers)


def pickle5_round_trip(payload: Payload) -> Any:
    """Encode and decode through the pickle-5 frame."""
    return pickle5_loads(pickle5_dumps(payload))


def copy_all(payload: Payload) -> Any:
    """The floor: one memcpy of every array into fresh memory."""
    return {k: v.copy() for k, v in payload.items()}


def _timed(fn: Callable[[Any], Any], arg: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn(arg)
    return time.perf_counter() - start, result


def best_times(payload: Payload, repeat: int) -> dict[str, float]:
    """Best wall times over ``repeat`` rounds; each round runs every method once, interleaved,
    so that a noisy moment on the machine does not favour one of them. Results are freed
    before the next measurement."""
    best = dict.fromkeys(("fobs_dumps", "fobs_loads", "fobs", "pickle5", "copy"), float("inf"))
    for _ in range(repeat):
        gc.collect()
        dumps_s, frame = _timed(fobs.dumps, payload)
        loads_s, decoded = _timed(fobs.loads, frame)
        del decoded, frame
        best["fobs_dumps"] = min(best["fobs_dumps"], dumps_s)
        best["fobs_loads"] = min(best["fobs_loads"], loads_s)
        best["fobs"] = min(best["fobs"], dumps_s + loads_s)
        for name, fn in (("pickle5", pickle5_round_trip), ("copy", copy_all)):
            gc.collect()
            elapsed, result = _timed(fn, payload)
            del result
            best[name] = min(best[name], elapsed)
    return best


def extra_peak(fn: Callable[[Payload], Any], payload: Payload) -> int:
    """Peak bytes allocated while ``fn(payload)`` runs and its result is alive."""
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        result = fn(payload)
        peak = tracemalloc.get_traced_memory()[1]
        del result
    finally:
        tracemalloc.stop()
    return peak - base


def same_payload(a: Payload, b: Any) -> bool:
    """Decoded payload equals the original: keys, dtypes, shapes and values."""
    return (
        isinstance(b, dict)
        and list(a) == list(b)
        and all(
            isinstance(b[k], np.ndarray)
            and a[k].dtype == b[k].dtype
            and a[k].shape == b[k].shape
            and np.array_equal(a[k], b[k])
            for k in a
        )
    )


# --- fuzz -------------------------------------------------------------------------------------


@fobs.register
class _Phase(enum.Enum):
    TRAIN = "train"
    EVAL = 2


@fobs.register
@dataclasses.dataclass(frozen=True)
class _Meta:
    round: int
    phase: _Phase
    extra: Any


def fuzz_seed_frames() -> list[bytes]:
    """Small valid frames covering every extension: arrays, objects, tuples, big ints, ..."""
    structured = np.zeros(2, dtype=[("a", ">i4", (2,)), ("b", [("c", "<f8"), ("d", "S2")])])
    values: list[Any] = [
        {f"layer{i}.weight": np.arange(32, dtype=np.float32) * i for i in range(8)},
        {
            "s": structured,
            "f": np.asfortranarray(np.eye(3, dtype="c8")),
            "b": np.ones(3, ">i2"),
            "t": np.arange(3).astype("M8[s]"),
            "u": np.array(["ab", "c"]),
            "e": np.zeros((0, 3)),
        },
        (1, (2, (3, ())), frozenset({4, (5,)}), {6, 7}, [2**64, -(2**100), 2**63 - 1]),
        [None, True, 1.5, -0.0, "text\ud800", b"bytes", {"k": [1, 2, {"n": None}]}],
        OrderedDict(
            d=dt.datetime(2020, 1, 2, 3, tzinfo=dt.UTC),
            day=dt.date(2020, 1, 1),
            td=dt.timedelta(seconds=-1),
            u=uuid.UUID(int=7),
            n=decimal.Decimal("-0.5"),
            tm=dt.time(1, 2, 3),
        ),
        [_Meta(3, _Phase.TRAIN, (1, "x")), {_Meta(1, _Phase.EVAL, None): _Phase.EVAL}],
        [
            np.float32(1.5),
            np.datetime64("2020-01-01", "ms"),
            np.str_("u"),
            np.bytes_(b"v"),
            np.array(["x", "yz"], dtype=np.dtypes.StringDType()),
        ],
    ]
    return [fobs.dumps(v) for v in values]


_INTERESTING_BYTES = bytes([0x00, 0x01, 0x7F, 0x80, 0xFF, 0xC1, 0xC7, 0xD4, 0xD9, 0xDC, 0xDF, 0x91])
_INTERESTING_U64 = [
    struct.pack("<Q", v) for v in (0, 1, 8, 64, 2**31, 2**32, 2**63 - 1, 2**63, 2**64 - 1)
]


def mutate(rng: random.Random, frame: bytes) -> bytearray:
    """A copy of ``frame`` with one to three cheap mutations."""
    buf = bytearray(frame)
    for _ in range(1 + rng.getrandbits(2) % 3):
        n = len(buf)
        if not n:
            buf += rng.randbytes(1 + rng.getrandbits(4))
            continue
        op = rng.getrandbits(3)
        pos = rng.randrange(n)
        if op <= 2:  # bit flip (the most common mutation)
            buf[pos] ^= 1 << rng.getrandbits(3)
        elif op == 3:  # truncation
            del buf[pos:]
        elif op == 4:  # insertion
            buf[pos:pos] = rng.randbytes(1 + rng.getrandbits(3))
        elif op == 5:  # deletion
            del buf[pos : pos + 1 + rng.getrandbits(4)]
        elif op == 6:  # byte replaced by an interesting value (msgpack markers, 0, 0xff)
            buf[pos] = _INTERESTING_BYTES[rng.getrandbits(4) % len(_INTERESTING_BYTES)]
        else:  # a length field (header u64s) overwritten with an extreme value
            j = 8 * rng.randrange(1, max(2, min(n // 8, 6)))
            buf[j : j + 8] = _INTERESTING_U64[rng.randrange(len(_INTERESTING_U64))]
    return buf


def run_fuzz(cases: int, seed: int) -> dict[str, Any]:
    """Feed ``cases`` mutants to ``loads`` (every 16th also to ``load``); count the outcomes."""
    frames = fuzz_seed_frames()
    rng = random.Random(seed)
    ok = fobs_errors = load_cases = 0
    other: list[str] = []
    loads, load, error = fobs.loads, fobs.load, fobs.FOBSError
    start = time.perf_counter()
    with use_config(Config(overrides={"fobs.max_message_bytes": 1 << 20})):
        for i in range(cases):
            data = mutate(rng, frames[i % len(frames)])
            try:
                loads(data)
                ok += 1
            except error:
                fobs_errors += 1
            except Exception as exc:  # the failure this mode exists to find
                other.append(f"loads case {i}: {type(exc).__name__}: {exc} :: {bytes(data)!r}")
            if i % 16 == 0:
                load_cases += 1
                try:
                    load(io.BytesIO(data))
                except error:
                    pass
                except Exception as exc:
                    other.append(f"load case {i}: {type(exc).__name__}: {exc} :: {bytes(data)!r}")
    elapsed = time.perf_counter() - start
    return {
        "cases": cases,
        "ok": ok,
        "fobs_errors": fobs_errors,
        "other": other,
        "load_cases": load_cases,
        "seconds": elapsed,
    }


# --- main -------------------------------------------------------------------------------------


def _mark(ok: bool) -> str:
    return "meets target" if ok else "MISSES target"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arrays", type=int, default=8, help="number of float32 arrays")
    parser.add_argument("--mib", type=int, default=None, help="MiB per array (default 128)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs; the best counts")
    parser.add_argument("--fuzz", type=int, default=0, help="mutated frames to decode (0: none)")
    parser.add_argument("--fuzz-seed", type=int, default=1, help="seed of the fuzz RNG")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small arrays (1 MiB each unless --mib), for a fast run or the fuzz",
    )
    args = parser.parse_args(argv)
    mib = args.mib if args.mib is not None else (1 if args.quick else 128)
    if args.arrays < 1 or mib < 1 or args.repeat < 1 or args.fuzz < 0:
        parser.error("--arrays, --mib and --repeat must be positive, --fuzz non-negative")

    payload = make_payload(args.arrays, mib)
    nbytes = sum(a.nbytes for a in payload.values())
    gib = nbytes / GIB
    print(
        f"payload: {args.arrays} float32 arrays x {mib} MiB = {gib:.3f} GiB; "
        f"best of {args.repeat}; numpy {np.__version__}, Python {sys.version.split()[0]}"
    )

    correct = same_payload(payload, fobs_round_trip(payload))
    correct_pickle = same_payload(payload, pickle5_round_trip(payload))
    correct_stream = same_payload(payload, fobs.load(io.BytesIO(fobs.dumps(payload))))
    gc.collect()
    print(
        f"correctness: fobs loads {'ok' if correct else 'WRONG'}, fobs load(stream) "
        f"{'ok' if correct_stream else 'WRONG'}, pickle5 {'ok' if correct_pickle else 'WRONG'}"
    )

    times = best_times(payload, args.repeat)
    fobs_s, pickle_s, copy_s = times["fobs"], times["pickle5"], times["copy"]
    dumps_s, loads_s = times["fobs_dumps"], times["fobs_loads"]
    vs_pickle = pickle_s / fobs_s
    vs_copy = copy_s / fobs_s
    print(
        f"fobs round trip:    {fobs_s:8.4f} s  {gib / fobs_s:7.2f} GiB/s  "
        f"(dumps {dumps_s:.4f} s, loads {loads_s:.6f} s)"
    )
    print(
        f"pickle5 round trip: {pickle_s:8.4f} s  {gib / pickle_s:7.2f} GiB/s  "
        "(out-of-band buffers, one framed bytes)"
    )
    print(f"numpy copy:         {copy_s:8.4f} s  {gib / copy_s:7.2f} GiB/s  (memcpy floor)")
    print(
        f"fobs vs pickle5 speed: {vs_pickle:.3f}x  "
        f"(target >= {TARGET_VS_PICKLE5}x: {_mark(vs_pickle >= TARGET_VS_PICKLE5)})"
    )
    print(f"fobs vs copy speed:    {vs_copy:.3f}x  (1.0 = as fast as one memcpy)")

    fobs_extra = extra_peak(fobs_round_trip, payload)
    pickle_extra = extra_peak(pickle5_round_trip, payload)
    fobs_peak, pickle_peak = fobs_extra / nbytes, pickle_extra / nbytes
    peak_ok = fobs_extra <= TARGET_EXTRA_PEAK * nbytes + PEAK_SLACK
    print(
        f"fobs extra peak memory:    {fobs_peak:.5f}x payload = {fobs_extra / MIB:.2f} MiB "
        f"(target <= {TARGET_EXTRA_PEAK}x + {PEAK_SLACK // MIB} MiB of headers and "
        f"bookkeeping: {_mark(peak_ok)})"
    )
    print(f"pickle5 extra peak memory: {pickle_peak:.5f}x payload = {pickle_extra / MIB:.2f} MiB")

    fuzz: dict[str, Any] = {
        "cases": 0,
        "ok": 0,
        "fobs_errors": 0,
        "other": [],
        "load_cases": 0,
        "seconds": 0.0,
    }
    if args.fuzz:
        del payload
        gc.collect()
        fuzz = run_fuzz(args.fuzz, args.fuzz_seed)
        rate = fuzz["cases"] / fuzz["seconds"]
        print(
            f"fuzz: {fuzz['cases']} mutated frames through loads (+{fuzz['load_cases']} "
            f"through load) in {fuzz['seconds']:.1f} s = {rate:,.0f} cases/s: "
            f"ok {fuzz['ok']} ({fuzz['ok'] / fuzz['cases']:.1%}), FOBSError "
            f"{fuzz['fobs_errors']} ({fuzz['fobs_errors'] / fuzz['cases']:.1%}), "
            f"other exceptions {len(fuzz['other'])}"
        )
        for line in fuzz["other"][:10]:
            print(f"  FUZZ FAILURE {line[:400]}")

    failed = not (correct and correct_pickle and correct_stream) or bool(fuzz["other"])
    figures = {
        "benchmark": "fobs_throughput",
        "arrays": args.arrays,
        "mib_per_array": mib,
        "repeat": args.repeat,
        "payload_gib": round(gib, 6),
        "fobs_roundtrip_s": round(fobs_s, 6),
        "fobs_dumps_s": round(dumps_s, 6),
        "fobs_loads_s": round(loads_s, 6),
        "pickle5_roundtrip_s": round(pickle_s, 6),
        "copy_s": round(copy_s, 6),
        "fobs_gib_s": round(gib / fobs_s, 3),
        "pickle5_gib_s": round(gib / pickle_s, 3),
        "copy_gib_s": round(gib / copy_s, 3),
        "fobs_vs_pickle5": round(vs_pickle, 4),
        "fobs_vs_copy": round(vs_copy, 4),
        "fobs_extra_peak_x_payload": round(fobs_peak, 5),
        "pickle5_extra_peak_x_payload": round(pickle_peak, 5),
        "correct": correct and correct_pickle and correct_stream,
        "fuzz_cases": fuzz["cases"],
        "fuzz_load_cases": fuzz["load_cases"],
        "fuzz_ok": fuzz["ok"],
        "fuzz_fobs_errors": fuzz["fobs_errors"],
        "fuzz_other_errors": len(fuzz["other"]),
        "fuzz_s": round(fuzz["seconds"], 3),
    }
    print(json.dumps(figures))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
