"""A large PyTorch model in SimEnv: time and peak memory with the tensor downloader on and off.

    python benchmarks/pt_large_model.py [--gib 2] [--clients 4] [--rounds 3] [--cap-gib 20]
                                        [--launch-external-process]

An ``nn.Module`` of ``--gib`` GiB (8 float32 ``nn.Linear`` layers, built once from a seed) is
averaged by ``ember_pt.recipes.FedAvgRecipe`` over ``--clients`` in-process sites for
``--rounds`` rounds; site-N adds N to every tensor, so the final global model is known exactly
and checked tensor by tensor. Each job runs in its own child process
(benchmarks/pt_large_model/job.py) under an address-space cap, so its peak RSS is its own: once
with the downloader on (default settings: tensors of at least ``streaming.min_tensor_bytes``
are streamed) and once off (``streaming.enabled = false``: the baseline, nothing streamed).
Ends with one JSON line of named figures.
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

JOB = Path(__file__).parent / "pt_large_model" / "job.py"
GIB = 1 << 30
MIB = 1 << 20
TARGET_REDUCTION = 0.40  # NVFlare claims 20-50% less memory with its tensor downloader
TARGET_X_MODEL = 3.0
OUT_OF_MEMORY = (
    "MemoryError",
    "can't allocate memory",
    "Cannot allocate memory",
    "std::bad_alloc",
    "can't start new thread",
    "out of memory",
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
    text = f"{done.stderr}\n{result.get('message', '')}"
    if result["status"] != "FINISHED:COMPLETED":
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        message = " | ".join((result.get("message") or "").strip().splitlines()[:2])
        result["error"] = message or " | ".join(tail)
        if cap_bytes and (done.returncode < 0 or any(s in text for s in OUT_OF_MEMORY)):
            result["status"] = "KILLED_BY_CAP"
            result["error"] = (
                f"ran out of its {cap_bytes / GIB:g} GiB address-space cap "
                f"({result['error'][:200]})"
            )
    return result


def whole_peak(r: dict[str, Any]) -> int:
    """The job's peak RSS: its process, plus its script processes when there are any."""
    return int(r["peak_rss_bytes"]) + sum(r.get("client_peak_rss_bytes") or [])


def describe(label: str, r: dict[str, Any]) -> list[str]:
    if r.get("status") != "FINISHED:COMPLETED":
        lines = [f"{label:<28} {r['status']}: {r.get('error')}"]
        if r.get("peak_rss_bytes") and r.get("model_bytes"):
            peak = whole_peak(r)
            lines.append(
                f"{'':<28} peak RSS when it stopped, after {r['process_s']:.2f} s: "
                f"{peak / MIB:.0f} MiB = {peak / r['model_bytes']:.2f}x model (it needed more)"
            )
        return lines
    model, peak = r["model_bytes"], whole_peak(r)
    net = peak - r["rss_start_bytes"] * (1 + len(r.get("client_peak_rss_bytes") or []))
    lines = [
        f"{label:<28} {r['job_s']:7.2f} s job, {r['process_s']:7.2f} s process   peak "
        f"RSS {peak / MIB:7.0f} MiB = {peak / model:4.2f}x model (net of the "
        f"interpreter: {net / model:4.2f}x)   correct={r['correct']}"
    ]
    if r.get("client_peak_rss_bytes"):
        clients = ", ".join(f"{b / MIB:.0f}" for b in r["client_peak_rss_bytes"])
        lines.append(
            f"{'':<28} server process {r['peak_rss_bytes'] / MIB:.0f} MiB "
            f"= {r['peak_rss_bytes'] / model:.2f}x model; script processes "
            f"{clients} MiB (summed above)"
        )
    return lines


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gib", type=float, default=2.0, help="model size in GiB")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--cap-gib",
        type=float,
        default=20.0,
        help="RLIMIT_AS of each job's process (protects the machine)",
    )
    parser.add_argument(
        "--launch-external-process",
        action="store_true",
        help="run each site's script in its own process",
    )
    parser.add_argument(
        "--with-checkpoint",
        action="store_true",
        help="also run with the downloader on and the model given as initial_ckpt (a "
        ".safetensors file) instead of an nn.Module: the job then holds no module copy",
    )
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per job")
    args = parser.parse_args()

    job = ["--gib", str(args.gib), "--clients", str(args.clients), "--rounds", str(args.rounds)]
    if args.launch_external_process:
        job.append("--external")
    cap = int(args.cap_gib * GIB) if args.cap_gib > 0 else None
    on = run_job(*job, cap_bytes=cap, timeout=args.timeout)
    off = run_job(*job, "--no-streaming", cap_bytes=cap, timeout=args.timeout)
    ckpt = None
    if args.with_checkpoint:
        ckpt = run_job(*job, "--checkpoint", cap_bytes=cap, timeout=args.timeout)

    mode = (
        "each script in its own process"
        if args.launch_external_process
        else "SimEnv in-process sites"
    )
    size = on.get("model_bytes") or off.get("model_bytes") or args.gib * GIB
    print(
        f"PyTorch FedAvg, {size / GIB:.3g} GiB model ({size / MIB:.0f} MiB: 8 float32 "
        f"Linear layers), {args.clients} clients, {args.rounds} rounds, {mode}; "
        f"address space capped at {args.cap_gib:g} GiB per process"
    )
    for line in describe("  downloader on", on) + describe("  downloader off (baseline)", off):
        print(line)
    if ckpt is not None:
        for line in describe("  on, model as initial_ckpt", ckpt):
            print(line)

    out: dict[str, Any] = {
        "benchmark": "pt_large_model",
        "gib": args.gib,
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
        if r.get("status") == "FINISHED:COMPLETED":
            out.update(
                {
                    f"{name}_job_s": r["job_s"],
                    f"{name}_process_s": r["process_s"],
                    f"{name}_peak_mib": round(whole_peak(r) / MIB),
                    f"{name}_peak_x_model": round(whole_peak(r) / r["model_bytes"], 2),
                }
            )
            if r.get("client_peak_rss_bytes"):
                out[f"{name}_server_peak_mib"] = round(r["peak_rss_bytes"] / MIB)
    ok = bool(on.get("correct")) and (bool(off.get("correct")) or off["status"] == "KILLED_BY_CAP")

    if on.get("correct"):
        x_model = whole_peak(on) / on["model_bytes"]
        size_ok = x_model <= TARGET_X_MODEL
        print(
            f"  peak RSS on = {x_model:.2f}x model; target <= {TARGET_X_MODEL:g}x: "
            f"{verdict(size_ok)}"
        )
        out["target_x_model_met"] = size_ok
        if off.get("correct"):
            ratio = whole_peak(on) / whole_peak(off)
            less = 1 - ratio
            out.update(
                peak_ratio_on_off=round(ratio, 3),
                peak_reduction=round(less, 3),
                speedup_on_vs_off=round(off["job_s"] / on["job_s"], 2),
                target_reduction_met=less >= TARGET_REDUCTION,
            )
            print(
                f"  peak RSS on / off = {ratio:.3f}: {less:.1%} less memory than off; "
                f"target >= {TARGET_REDUCTION:.0%} less (NVFlare claims 20-50%): "
                f"{verdict(less >= TARGET_REDUCTION)}"
            )
            print(
                f"  job time on / off = {on['job_s'] / off['job_s']:.2f} "
                f"({out['speedup_on_vs_off']}x faster with the downloader)"
            )
        elif off["status"] == "KILLED_BY_CAP" and off.get("peak_rss_bytes"):
            # the cap limits address space, not RSS: what off reached before it ran out is
            # a measured lower bound of its peak, so this is a lower bound of the reduction
            reached = whole_peak(off)
            less = 1 - whole_peak(on) / reached
            met = less >= TARGET_REDUCTION
            out.update(
                off_peak_mib_at_cap=round(reached / MIB),
                off_peak_x_model_at_cap=round(reached / off["model_bytes"], 2),
                peak_ratio_on_off_at_most=round(1 - less, 3),
                peak_reduction_at_least=round(less, 3),
                target_reduction_met=True if met else None,
            )
            print(
                f"  off ran out of its {args.cap_gib:g} GiB address-space cap after reaching "
                f"{reached / MIB:.0f} MiB RSS: peak RSS on / off <= {1 - less:.3f}, at least "
                f"{less:.1%} less memory than off; target >= {TARGET_REDUCTION:.0%} less: "
                + ("PASS" if met else "NOT SHOWN (the lower bound is below the target)")
            )
        else:
            out["target_reduction_met"] = None
            print("  no on/off comparison: the baseline did not finish correctly")
    else:
        print("  no figures against the targets: the run with the downloader on failed")
    if ckpt is not None:
        ok = ok and bool(ckpt.get("correct"))
        out["ckpt_status"] = ckpt["status"]
        if ckpt.get("correct"):
            x_ckpt = whole_peak(ckpt) / ckpt["model_bytes"]
            out.update(
                ckpt_job_s=ckpt["job_s"],
                ckpt_peak_mib=round(whole_peak(ckpt) / MIB),
                ckpt_peak_x_model=round(x_ckpt, 2),
            )
            print(
                f"  on with initial_ckpt: peak RSS {x_ckpt:.2f}x model; target <= "
                f"{TARGET_X_MODEL:g}x: {verdict(x_ckpt <= TARGET_X_MODEL)}"
            )
            if off.get("correct"):
                less = 1 - whole_peak(ckpt) / whole_peak(off)
                out["ckpt_peak_reduction"] = round(less, 3)
                print(f"  on with initial_ckpt vs off: {less:.1%} less memory")
    out["correct"] = ok
    print(json.dumps(out))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
