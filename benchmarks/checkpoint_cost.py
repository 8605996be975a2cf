"""What a round checkpoint costs for a 256 MiB model (issue 23, docs/reliability.md).

Writes the same 256 MiB float32 model (8 arrays) in three ways, in turn, seven times, in this
run and on this disk, and prints the median seconds and the ratio to the baseline:

- baseline: a plain sequential write of the arrays' bytes into one file, then fsync (what
  the issue bounds a checkpoint by: "at most one sequential write per round");
- plain write without fsync (what the page cache alone costs);
- the checkpoint: ember's save_checkpoint (safetensors model + FOBS state, each to a
  temporary file, fsynced, renamed, the folder fsynced).

    python benchmarks/checkpoint_cost.py [--mib 256] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from ember.runtime.checkpoint import save_checkpoint


def plain(path: Path, arrays: dict[str, np.ndarray], fsync: bool) -> None:
    with open(path, "wb") as f:
        for array in arrays.values():
            f.write(array.data)
        f.flush()
        if fsync:
            os.fsync(f.fileno())


def interleaved(fns: list[object], reps: int) -> list[float]:
    """Median seconds of each function, run in turn ``reps`` times (this machine is shared
    and noisy: interleaving gives every way the same conditions)."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(reps):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()  # type: ignore[operator]
            times[i].append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--dir", default=tempfile.gettempdir())
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args()
    n = args.mib * 2**20 // 4 // 8
    rng = np.random.default_rng(0)
    arrays = {f"layer{i}": rng.standard_normal(n, dtype=np.float32) for i in range(8)}
    state = {"next_round": 3, "best_value": 0.5, "best_round": 2, "stopped": None}
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        base, nosync, ckpt = interleaved(
            [
                lambda: plain(root / "plain.bin", arrays, fsync=True),
                lambda: plain(root / "nosync.bin", arrays, fsync=False),
                lambda: save_checkpoint(root / "ckpt", 3, arrays, state),
            ],
            args.reps,
        )
    mb = args.mib * 2**20 / 1e6
    print(f"model: {args.mib} MiB in 8 float32 arrays; median of {args.reps}; dir {args.dir}")
    print(f"baseline: sequential write + fsync  {base:7.3f} s  {mb / base:7.0f} MB/s  1.00x")
    print(
        f"sequential write, no fsync          {nosync:7.3f} s  {mb / nosync:7.0f} MB/s  "
        f"{nosync / base:.2f}x"
    )
    print(
        f"ember checkpoint (atomic, fsynced)  {ckpt:7.3f} s  {mb / ckpt:7.0f} MB/s  "
        f"{ckpt / base:.2f}x"
    )


if __name__ == "__main__":
    main()
