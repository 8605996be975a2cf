"""sim_overhead job: FedAvg of a 10-float zero model in SimEnv; every site adds 1 per round.

python job.py --n-clients 2 --num-rounds 5 --workspace-root DIR [--report FILE] [--profile FILE]
              [--num-threads N]

Exits nonzero unless the job ends FINISHED:COMPLETED with every weight == num_rounds.
``--report`` writes JSON: the job's time (recipe + run, imports excluded) and this
process's peak RSS. ``--profile`` writes pstats of the job, every thread merged, timed in
per-thread CPU time (waiting on locks and conditions does not count). ``--num-threads``
caps how many sites train at once (``SimEnv(num_threads=N)``).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ember import SimEnv
from ember.client import NUMPY_KEY
from ember.recipes import NumpyFedAvgRecipe

if TYPE_CHECKING:
    import cProfile

HERE = Path(__file__).parent
JOB_NAME = "sim-overhead"


class ThreadProfiler:
    """cProfile in every thread started while installed, plus the installing thread.

    cProfile and pstats are imported only with ``--profile``: timed runs do not pay for them.
    """

    def __init__(self) -> None:
        import cProfile

        self._profiles: list[cProfile.Profile] = []
        self._lock = threading.Lock()
        self._main = cProfile.Profile(time.thread_time)
        self._orig_run = threading.Thread.run

    def __enter__(self) -> ThreadProfiler:
        import cProfile

        profiler, orig_run = self, self._orig_run

        def run(thread: threading.Thread) -> None:
            prof = cProfile.Profile(time.thread_time)
            prof.enable()
            try:
                orig_run(thread)
            finally:
                prof.disable()
                with profiler._lock:
                    profiler._profiles.append(prof)

        threading.Thread.run = run  # type: ignore[method-assign]
        self._main.enable()
        return self

    def __exit__(self, *exc: object) -> None:
        self._main.disable()
        threading.Thread.run = self._orig_run  # type: ignore[method-assign]

    def dump(self, path: str) -> None:
        """Merge every thread's profile (after the job's threads ended) into ``path``."""
        import pstats

        for thread in threading.enumerate():
            if thread is not threading.current_thread():
                thread.join(5.0)  # the server thread stores its profile just after the job ends
        stats = pstats.Stats(self._main)
        with self._lock:
            for prof in self._profiles:
                stats.add(prof)
        stats.dump_stats(path)


def run_job(
    n_clients: int,
    num_rounds: int,
    workspace_root: str,
    metrics: bool = False,
    num_threads: int | None = None,
) -> tuple[str, str, Path]:
    """Build the recipe and run it to the end: (status, message, result folder)."""
    recipe = NumpyFedAvgRecipe(
        name=JOB_NAME,
        min_clients=n_clients,
        num_rounds=num_rounds,
        model=np.zeros(10, dtype=np.float32),
        train_script=str(HERE / "client.py"),
        train_args="--metrics" if metrics else "",
        key_metric=None,
    )
    env = SimEnv(
        num_clients=n_clients,
        workspace_root=workspace_root,
        progress=False,
        num_threads=num_threads,
    )
    run = recipe.execute(env)
    return run.get_status(), run.get_message(), Path(run.get_result())


def main() -> int:
    """Run the job once; 0 when the result is right."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-clients", type=int, default=2)
    parser.add_argument("--num-rounds", type=int, default=5)
    parser.add_argument("--workspace-root", required=True)
    parser.add_argument("--report", help="write timing and peak RSS (JSON) to this file")
    parser.add_argument("--metrics", action="store_true", help="the sites report a metric")
    parser.add_argument("--profile", help="write a pstats profile of the job to this file")
    parser.add_argument("--num-threads", type=int, help="sites at work at once (num_threads)")
    args = parser.parse_args()

    profiler = ThreadProfiler() if args.profile else None
    started = time.perf_counter()
    if profiler is not None:
        with profiler:
            status, message, result = run_job(
                args.n_clients, args.num_rounds, args.workspace_root, args.metrics, args.num_threads
            )
    else:
        status, message, result = run_job(
            args.n_clients, args.num_rounds, args.workspace_root, args.metrics, args.num_threads
        )
    job_s = time.perf_counter() - started

    ok = status == "FINISHED:COMPLETED"
    if ok:
        with np.load(result / "server" / "models" / "global_model.npz") as model:
            ok = bool(np.all(model[NUMPY_KEY] == np.float32(args.num_rounds)))
    if not ok:
        print(f"wrong result: status {status}; {message}", file=sys.stderr)
    if args.report:
        report = {
            "job_s": job_s,
            "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            "status": status,
            "ok": ok,
        }
        Path(args.report).write_text(json.dumps(report), encoding="utf-8")
    if profiler is not None:
        profiler.dump(args.profile)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
