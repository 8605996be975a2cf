"""SimEnv overhead: how much Ember itself costs around a trivial federated job.

    python benchmarks/sim_overhead.py [--repeat N] [--sizes 32,1000,10000] [--profile]

Every job is FedAvg of a 10-float float32 zero model whose sites add 1 per round
(``sim_overhead/job.py``; ``sim_overhead/client.py`` is an ordinary script: it makes new
arrays and keeps the received model until its next ``receive()``), SimEnv's default
backend with its defaults (a thread per site up to ``sim.script_threads`` sites, then one
carrier thread per CPU; one shared sites log above ``sim.shared_site_logs`` sites), each run
in a fresh Python process under a temporary workspace.

- baseline: wall time of ``python -c "import numpy"`` (interpreter + numpy start-up).
- W1: 2 clients, 5 rounds: wall time of the whole ``python job.py`` process, timed from
  outside; minus the baseline, Ember's own overhead. Target <= 1.5 s (NVFlare 2.9's SimEnv
  takes about 24 s for the same job).
- W1m: W1 whose sites report a metric (the job writes its round-metrics PNG, rendered off
  the job's path), whole process, against ``python -c "import numpy, ember"`` measured in the
  same run. Targets <= 0.5 s, and <= 0.25 s above that import.
- W2: 32, 1000 and 10,000 clients, 3 rounds (``--sizes``): the job's time inside its
  process (recipe + SimEnv run, imports excluded), as a ratio against the python + numpy
  start-up, and that process's peak RSS. Targets <= 2 s, <= 3 s and <= 30 s (issue 25),
  peak RSS <= 2 GiB.
- W2c (``--capped N``, default 4; 0 leaves it out): the 1000-client W2 job (or the largest
  size below it) with ``SimEnv(num_threads=N)``, as a ratio against the same job uncapped
  in this run. A cap on sites at work must not make a job of many sites slower (before work
  slots woke only the site a freed slot goes to, 1000 sites with 4 slots took 213 s).

Times are the best of ``--repeat`` runs (10,000 clients: ``--repeat-large``), peak RSS the
largest. Every run is checked: status
FINISHED:COMPLETED and every weight of ``server/models/global_model.npz`` equal to
0 + rounds; the exit status is 1 if any run was wrong or failed. The output ends with one
JSON line of named figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import pstats
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
JOB_SCRIPT = HERE / "sim_overhead" / "job.py"
JOB_NAME = "sim-overhead"  # the name job.py gives its recipe
NUMPY_KEY = "numpy_key"
MODEL_SIZE = 10
COMPLETED = "FINISHED:COMPLETED"

W1_CLIENTS, W1_ROUNDS, W1_TARGET_S = 2, 5, 1.5
# W1m: the same job whose sites report a metric (so it has a round-metrics PNG)
W1M_TARGET_S, W1M_ABOVE_IMPORT_TARGET_S = 0.5, 0.25
W2_ROUNDS = 3
W2_TARGETS_S = {32: 2.0, 1000: 3.0, 10000: 30.0}
LARGE = 10000  # sizes from here on run --repeat-large times
W2_RSS_TARGET_MIB = 2048.0
NVFLARE_W1_S = 24.0


class BenchmarkError(RuntimeError):
    """A run failed, timed out or produced a wrong result."""


@dataclass
class JobRun:
    """One ``job.py`` process: wall time from outside, job time and peak RSS from inside."""

    wall_s: float
    job_s: float
    peak_rss_mib: float


def check_result(workspace: Path, num_rounds: int) -> None:
    """Raise unless the job completed and every weight went from 0 to ``num_rounds``."""
    meta_path = workspace / "meta.json"
    if not meta_path.is_file():
        raise BenchmarkError(f"no {meta_path}: the job left no result")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if meta.get("status") != COMPLETED:
        raise BenchmarkError(
            f"status {meta.get('status')!r}, not {COMPLETED}: {meta.get('message')}"
        )
    with np.load(workspace / "server" / "models" / "global_model.npz") as model:
        weights = model[NUMPY_KEY]
    expected = np.full(MODEL_SIZE, num_rounds, dtype=np.float32)
    if weights.dtype != np.float32 or not np.array_equal(weights, expected):
        raise BenchmarkError(
            f"global model is {weights!r} ({weights.dtype}), expected {num_rounds} everywhere"
        )


def run_job(
    n_clients: int,
    num_rounds: int,
    timeout: float,
    profile: Path | None = None,
    metrics: bool = False,
    num_threads: int | None = None,
) -> JobRun:
    """Run ``job.py`` in a fresh process and check its result independently."""
    with tempfile.TemporaryDirectory(prefix="ember-sim-overhead-") as tmp:
        root, report = Path(tmp) / "workspace", Path(tmp) / "report.json"
        cmd = [
            sys.executable,
            str(JOB_SCRIPT),
            f"--n-clients={n_clients}",
            f"--num-rounds={num_rounds}",
            f"--workspace-root={root}",
            f"--report={report}",
        ]
        if profile is not None:
            cmd.append(f"--profile={profile}")
        if metrics:
            cmd.append("--metrics")
        if num_threads is not None:
            cmd.append(f"--num-threads={num_threads}")
        started = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise BenchmarkError(f"{n_clients} clients: no end after {timeout:g}s") from None
        wall_s = time.perf_counter() - started
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip()[-2000:]
            raise BenchmarkError(f"{n_clients} clients: job.py exited {proc.returncode}:\n{tail}")
        check_result(root / JOB_NAME, num_rounds)
        data = json.loads(report.read_text(encoding="utf-8"))
    return JobRun(wall_s, float(data["job_s"]), data["peak_rss_kib"] / 1024)


def python_numpy_startup(repeat: int, timeout: float, code: str = "import numpy") -> float:
    """Best wall time of ``python -c code`` (by default ``import numpy``)."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, timeout=timeout)
        best = min(best, time.perf_counter() - started)
    return best


def best_of(
    n_clients: int,
    num_rounds: int,
    repeat: int,
    timeout: float,
    metrics: bool = False,
    num_threads: int | None = None,
) -> JobRun:
    """Best wall and job times of ``repeat`` runs; the largest peak RSS."""
    runs = [
        run_job(n_clients, num_rounds, timeout, metrics=metrics, num_threads=num_threads)
        for _ in range(repeat)
    ]
    return JobRun(
        min(r.wall_s for r in runs),
        min(r.job_s for r in runs),
        max(r.peak_rss_mib for r in runs),
    )


def row(label: str, value: str, note: str = "") -> None:
    """One aligned line of the human-readable report."""
    print(f"{label:<44}{value:>10}   {note}".rstrip())


def verdict(ok: bool) -> str:
    """How a figure compares with its target."""
    return "met" if ok else "MISSED"


def print_profile(n_clients: int, timeout: float, top: int) -> None:
    """Profile one more W2 run (not timed); print its top functions by cumulative and own time."""
    with tempfile.TemporaryDirectory(prefix="ember-sim-overhead-prof-") as tmp:
        path = Path(tmp) / "job.prof"
        run_job(n_clients, W2_ROUNDS, timeout, profile=path)
        print(
            f"\nprofile of W2 with {n_clients} clients: every thread merged, per-thread CPU "
            f"time (waits excluded), top {top} by cumulative time"
        )
        stats = pstats.Stats(str(path), stream=sys.stdout)
        stats.sort_stats("cumulative").print_stats(top)
        print(f"same profile, top {top} by internal time")
        stats.sort_stats("tottime").print_stats(top)
        sys.stdout.flush()


def package_version(name: str) -> str:
    """The installed version of ``name``, or ``?``."""
    try:
        return version(name)
    except PackageNotFoundError:
        return "?"


def main() -> int:
    """Run every workload, print the figures; 1 if any run was wrong or failed."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (best of)")
    parser.add_argument(
        "--sizes",
        default=",".join(str(n) for n in W2_TARGETS_S),
        help="W2's numbers of clients, comma-separated (empty: no W2)",
    )
    parser.add_argument(
        "--repeat-large", type=int, default=1, help=f"runs per W2 figure from {LARGE} clients"
    )
    parser.add_argument("--skip-1000", action="store_true", help="leave out W2 from 1000 clients")
    parser.add_argument("--skip-w1", action="store_true", help="leave out W1 and W1m")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per job process")
    parser.add_argument("--capped", type=int, default=4, help="W2c's num_threads (0: no W2c)")
    parser.add_argument(
        "--profile", action="store_true", help="also profile the largest W2 run and print it"
    )
    parser.add_argument("--profile-top", type=int, default=15, help="functions to print")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")

    print(
        f"Ember SimEnv overhead: Python {platform.python_version()}, numpy {np.__version__}, "
        f"ember-core {package_version('ember-core')}, {os.cpu_count()} CPUs, "
        f"best of {args.repeat}"
    )
    overrides = sorted(k for k in os.environ if k.startswith("EMBER_"))
    if overrides:
        print(f"note: Ember settings from the environment apply: {', '.join(overrides)}")

    sizes = [int(n) for n in args.sizes.split(",") if n.strip()]
    if args.skip_1000:
        sizes = [n for n in sizes if n < 1000]
    # site log files go through one writer with a bounded pool of open files
    # (ember.runtime.logs.MAX_OPEN_LOG_FILES): no open-file limit to check against the sites

    figures: dict[str, Any] = {"benchmark": "sim_overhead", "repeat": args.repeat}
    targets: dict[str, bool] = {}
    errors: list[str] = []

    startup = python_numpy_startup(args.repeat, args.timeout)
    figures["python_numpy_startup_s"] = round(startup, 4)
    row("baseline  python -c 'import numpy'", f"{startup:.3f} s")

    if not args.skip_w1:
        try:
            w1 = best_of(W1_CLIENTS, W1_ROUNDS, args.repeat, args.timeout)
        except BenchmarkError as exc:
            errors.append(f"W1: {exc}")
            print(f"W1        FAILED: {exc}")
        else:
            overhead = w1.wall_s - startup
            targets["w1_wall"] = w1.wall_s <= W1_TARGET_S
            figures.update(
                w1_wall_s=round(w1.wall_s, 4),
                w1_overhead_s=round(overhead, 4),
                w1_vs_startup=round(w1.wall_s / startup, 2),
                w1_job_s=round(w1.job_s, 4),
                w1_peak_rss_mib=round(w1.peak_rss_mib, 1),
            )
            row(
                f"W1        {W1_CLIENTS} clients x {W1_ROUNDS} rounds, whole process",
                f"{w1.wall_s:.3f} s",
                f"target <= {W1_TARGET_S} s: {verdict(targets['w1_wall'])}; "
                f"{w1.wall_s / startup:.1f}x python+numpy start-up; "
                f"NVFlare 2.9 ~{NVFLARE_W1_S:g} s",
            )
            row(
                "W1        Ember overhead (W1 - baseline)",
                f"{overhead:.3f} s",
                f"(the job itself {w1.job_s:.3f} s, peak RSS {w1.peak_rss_mib:.0f} MiB)",
            )

        ember_startup = python_numpy_startup(args.repeat, args.timeout, "import numpy, ember")
        figures["python_numpy_ember_import_s"] = round(ember_startup, 4)
        row("baseline  python -c 'import numpy, ember'", f"{ember_startup:.3f} s")
        try:
            w1m = best_of(W1_CLIENTS, W1_ROUNDS, args.repeat, args.timeout, metrics=True)
        except BenchmarkError as exc:
            errors.append(f"W1m: {exc}")
            print(f"W1m       FAILED: {exc}")
        else:
            above = w1m.wall_s - ember_startup
            targets["w1m_wall"] = w1m.wall_s <= W1M_TARGET_S
            targets["w1m_above_import"] = above <= W1M_ABOVE_IMPORT_TARGET_S
            figures.update(
                w1m_wall_s=round(w1m.wall_s, 4),
                w1m_above_import_s=round(above, 4),
                w1m_vs_import=round(w1m.wall_s / ember_startup, 2),
            )
            row(
                "W1m       W1 with a metric (PNG), whole process",
                f"{w1m.wall_s:.3f} s",
                f"target <= {W1M_TARGET_S} s: {verdict(targets['w1m_wall'])}; "
                f"{w1m.wall_s / ember_startup:.2f}x python+numpy+ember import",
            )
            row(
                "W1m       above python+numpy+ember import",
                f"{above:.3f} s",
                f"target <= {W1M_ABOVE_IMPORT_TARGET_S} s: {verdict(targets['w1m_above_import'])}",
            )

    for n in sizes:
        key = f"w2_{n}"
        try:
            w2 = best_of(
                n, W2_ROUNDS, args.repeat if n < LARGE else args.repeat_large, args.timeout
            )
        except BenchmarkError as exc:
            errors.append(f"W2 {n} clients: {exc}")
            print(f"W2        {n} clients FAILED: {exc}")
            continue
        target_s = W2_TARGETS_S.get(n, W2_TARGETS_S[LARGE] * n / LARGE)
        targets[f"{key}_time"] = w2.job_s <= target_s
        targets[f"{key}_rss"] = w2.peak_rss_mib <= W2_RSS_TARGET_MIB
        per_site_round_ms = 1000 * w2.job_s / (n * W2_ROUNDS)
        figures.update(
            {
                f"{key}_s": round(w2.job_s, 4),
                f"{key}_process_s": round(w2.wall_s, 4),
                f"{key}_peak_rss_mib": round(w2.peak_rss_mib, 1),
                f"{key}_vs_startup": round(w2.job_s / startup, 2),
                f"{key}_ms_per_site_round": round(per_site_round_ms, 3),
            }
        )
        row(
            f"W2        {n} clients x {W2_ROUNDS} rounds, job",
            f"{w2.job_s:.3f} s",
            f"target <= {target_s:g} s: {verdict(targets[key + '_time'])}; "
            f"{w2.job_s / startup:.1f}x python+numpy start-up; "
            f"{per_site_round_ms:.3f} ms per site-round; whole process {w2.wall_s:.3f} s",
        )
        row(
            f"W2        {n} clients, peak RSS",
            f"{w2.peak_rss_mib:.0f} MiB",
            f"target <= {W2_RSS_TARGET_MIB:g} MiB: {verdict(targets[key + '_rss'])}",
        )

    capped_sizes = [n for n in sizes if n <= 1000 and f"w2_{n}_s" in figures]
    if args.capped > 0 and capped_sizes:
        n = max(capped_sizes)
        try:
            w2c = best_of(n, W2_ROUNDS, args.repeat, args.timeout, num_threads=args.capped)
        except BenchmarkError as exc:
            errors.append(f"W2c {n} clients: {exc}")
            print(f"W2c       {n} clients FAILED: {exc}")
        else:
            ratio = w2c.job_s / figures[f"w2_{n}_s"]
            figures.update(
                w2c_clients=n,
                w2c_num_threads=args.capped,
                w2c_s=round(w2c.job_s, 4),
                w2c_vs_uncapped=round(ratio, 2),
            )
            row(
                f"W2c       {n} clients, num_threads={args.capped}, job",
                f"{w2c.job_s:.3f} s",
                f"{ratio:.2f}x the same job uncapped (W2 above)",
            )

    if args.profile and sizes:
        try:
            print_profile(sizes[-1], args.timeout, args.profile_top)
        except BenchmarkError as exc:
            errors.append(f"profile: {exc}")
            print(f"profile FAILED: {exc}")

    figures["targets_met"] = targets
    figures["all_targets_met"] = bool(targets) and all(targets.values()) and not errors
    figures["correct"] = not errors
    if errors:
        print(f"{len(errors)} run(s) wrong or failed")
    print(json.dumps(figures))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
