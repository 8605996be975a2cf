"""A large Keras model in SimEnv: time and peak memory with streaming on and off.

    python benchmarks/tf_large_model.py [--mib 256] [--clients 2] [--rounds 3] [--cap-gib 16]
                                        [--launch-external-process]

A functional ``keras.Model`` of ``--mib`` MiB (4 float32 ``Dense`` layers in a chain, filled
from a seed) is averaged by ``ember_tf.recipes.FedAvgRecipe`` over ``--clients`` in-process
sites for ``--rounds`` rounds. Each site runs an ordinary Keras script
(benchmarks/tf_large_model/client.py): it loads the received weights into its own Keras model
with ``set_weights``, adds N to every weight (new arrays) and sends ``get_weights()`` (new
arrays), keeping the received model until the next round. The final global model is known
exactly and checked weight by weight. Each job runs in its own child process
(benchmarks/tf_large_model/job.py) under an address-space cap, so its peak RSS is its own:
once with streaming on (the default: arrays of at least ``streaming.min_tensor_bytes`` are
offered for download and pulled one at a time) and once off (``streaming.enabled = false``:
every message carries its arrays inline). Ends with one JSON line of named figures.

TensorFlow alone takes several hundred MiB of RSS once imported (the job's ``rss_start``);
the figures are given whole and net of that.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

JOB = Path(__file__).parent / "tf_large_model" / "job.py"
GIB = 1 << 30
MIB = 1 << 20
OUT_OF_MEMORY = (
    "MemoryError",
    "can't allocate memory",
    "Cannot allocate memory",
    "std::bad_alloc",
    "can't start new thread",
    "out of memory",
    "OOM",
)


def run_job(*args: str, cap_bytes: int | None, timeout: float) -> dict[str, Any]:
    """Run one job in a child process under an address-space cap."""

    def limit() -> None:
        if cap_bytes:
            resource.setrlimit(resource.RLIMIT_AS, (cap_bytes, cap_bytes))

    started = time.perf_counter()
    try:
        done = subprocess.run(
            [sys.executable, str(JOB), *args],
            capture_output=True,
            text=True,
            preexec_fn=limit,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"status": "TIMEOUT", "error": f"no result within {timeout:g} s", "correct": False}
    wall = time.perf_counter() - started
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    result: dict[str, Any] = {"status": "CRASHED", "correct": False}
    if lines:
        result = json.loads(lines[-1])
    result["process_s"] = round(wall, 3)
    if result["status"] != "FINISHED:COMPLETED" or not result.get("correct"):
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        message = " | ".join((result.get("message") or "").strip().splitlines()[:2])
        result["error"] = message or " | ".join(tail) or "the final model is not the expected one"
        text = f"{done.stderr}\n{result.get('message', '')}"
        if cap_bytes and (done.returncode < 0 or any(s in text for s in OUT_OF_MEMORY)):
            result["status"] = "KILLED_BY_CAP"
            result["error"] = f"ran out of its {cap_bytes / GIB:g} GiB address-space cap"
    return result


def whole_peak(r: dict[str, Any]) -> int:
    """The job's peak RSS: its process, plus its script processes when there are any."""
    return int(r["peak_rss_bytes"]) + sum(r.get("client_peak_rss_bytes") or [])


def net_peak(r: dict[str, Any]) -> int:
    """The peak net of the interpreter and TensorFlow (each process's RSS before the model)."""
    processes = 1 + len(r.get("client_peak_rss_bytes") or [])
    return whole_peak(r) - int(r["rss_start_bytes"]) * processes


def describe(label: str, r: dict[str, Any]) -> list[str]:
    if r.get("status") != "FINISHED:COMPLETED" or not r.get("correct"):
        return [f"{label:<22} {r['status']}: {r.get('error')}"]
    model = r["model_bytes"]
    lines = [
        f"{label:<22} {r['job_s']:6.2f} s job, {r['process_s']:6.2f} s process   peak RSS "
        f"{whole_peak(r) / MIB:6.0f} MiB = {whole_peak(r) / model:4.2f}x model; net of "
        f"Python + TensorFlow ({r['rss_start_bytes'] / MIB:.0f} MiB) {net_peak(r) / MIB:5.0f} MiB "
        f"= {net_peak(r) / model:4.2f}x   correct={r['correct']}"
    ]
    if r.get("client_peak_rss_bytes"):
        clients = ", ".join(f"{b / MIB:.0f}" for b in r["client_peak_rss_bytes"])
        lines.append(
            f"{'':<22} job process {r['peak_rss_bytes'] / MIB:.0f} MiB; script processes "
            f"{clients} MiB (summed above)"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mib", type=float, default=256.0, help="model size in MiB")
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--cap-gib",
        type=float,
        default=16.0,
        help="RLIMIT_AS of each job's process (protects the machine; 0: none)",
    )
    parser.add_argument(
        "--launch-external-process",
        action="store_true",
        help="run each site's script in its own process",
    )
    parser.add_argument("--timeout", type=float, default=1200.0, help="seconds per job")
    args = parser.parse_args()

    job = ["--mib", str(args.mib), "--clients", str(args.clients), "--rounds", str(args.rounds)]
    if args.launch_external_process:
        job.append("--external")
    cap = int(args.cap_gib * GIB) if args.cap_gib > 0 else None
    on = run_job(*job, cap_bytes=cap, timeout=args.timeout)
    off = run_job(*job, "--no-streaming", cap_bytes=cap, timeout=args.timeout)

    mode = "each script in its own process" if args.launch_external_process else "in-process sites"
    size = on.get("model_bytes") or off.get("model_bytes") or args.mib * MIB
    print(
        f"TensorFlow FedAvg, {size / MIB:.0f} MiB Keras model (4 float32 Dense layers), "
        f"{args.clients} clients, {args.rounds} rounds, SimEnv {mode}; address space capped "
        f"at {args.cap_gib:g} GiB per process"
    )
    for line in describe("  streaming on", on) + describe("  streaming off", off):
        print(line)

    out: dict[str, Any] = {
        "benchmark": "tf_large_model",
        "mib": args.mib,
        "clients": args.clients,
        "rounds": args.rounds,
        "external": args.launch_external_process,
        "model_mib": round(size / MIB, 1),
        "cap_gib": args.cap_gib,
        "on_status": on["status"],
        "off_status": off["status"],
        "on_correct": bool(on.get("correct")),
        "off_correct": bool(off.get("correct")),
    }
    for name, r in (("on", on), ("off", off)):
        if r.get("correct"):
            out.update(
                {
                    f"{name}_job_s": r["job_s"],
                    f"{name}_process_s": r["process_s"],
                    f"{name}_peak_mib": round(whole_peak(r) / MIB),
                    f"{name}_peak_x_model": round(whole_peak(r) / r["model_bytes"], 2),
                    f"{name}_net_peak_mib": round(net_peak(r) / MIB),
                    f"{name}_net_peak_x_model": round(net_peak(r) / r["model_bytes"], 2),
                    f"{name}_rss_start_mib": round(r["rss_start_bytes"] / MIB),
                }
            )
    ok = bool(on.get("correct")) and bool(off.get("correct"))
    if ok:
        ratio = whole_peak(on) / whole_peak(off)
        net_ratio = net_peak(on) / net_peak(off)
        time_ratio = on["job_s"] / off["job_s"]
        out.update(
            peak_ratio_on_off=round(ratio, 3),
            net_peak_ratio_on_off=round(net_ratio, 3),
            job_time_ratio_on_off=round(time_ratio, 3),
        )
        print(
            f"  peak RSS on / off = {ratio:.3f} ({1 - ratio:.1%} less with streaming); net of "
            f"Python + TensorFlow {net_ratio:.3f} ({1 - net_ratio:.1%} less)"
        )
        print(f"  job time on / off = {time_ratio:.2f}")
    else:
        print("  no on/off comparison: a run did not finish with the expected model")
    out["correct"] = ok
    print(json.dumps(out))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
