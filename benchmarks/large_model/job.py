"""One large-model FedAvg job in SimEnv; prints a JSON line with time, peak RSS and checks.

    python job.py --arrays 8 --mib 32 --clients 2 --rounds 3 [--no-streaming] [--gc]
                  [--threads N] [--offload] [--ordinary] [--memory-budget X]
"""

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ember import SimEnv
from ember.recipes import NumpyFedAvgRecipe

HERE = Path(__file__).parent
ORDINARY = HERE.parent / "sim_overhead" / "client.py"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--arrays", type=int, default=8)
    parser.add_argument("--mib", type=int, default=32)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-streaming", action="store_true")
    parser.add_argument("--gc", action="store_true", help="release memory every round")
    parser.add_argument("--external", action="store_true",
                        help="run each site's script in its own process")
    parser.add_argument("--threads", type=int, default=None,
                        help="SimEnv(num_threads=...): sites training at once (default: all)")
    parser.add_argument("--offload", action="store_true",
                        help="streaming.offload_dir: the server keeps models on disk")
    parser.add_argument("--checkpoint", action="store_true",
                        help="give the initial model as a file (initial_ckpt), not as arrays")
    parser.add_argument("--ordinary", action="store_true",
                        help="the ordinary script (sim_overhead/client.py): new arrays each "
                        "round, the received model kept until the next receive()")
    parser.add_argument("--memory-budget", type=float, default=None,
                        help="SimEnv(memory_budget=...): a fraction of available memory "
                        "(<= 1) or bytes; 0 turns memory-aware scheduling off")
    parser.add_argument("--resident", action="store_true",
                        help="write the initial model's pages (np.zeros leaves them unmapped "
                        "until touched, which hides a copy kept of it)")
    args = parser.parse_args()

    n = args.mib * (1 << 20) // 4
    model = {f"layer{i}": np.zeros(n, dtype=np.float32) for i in range(args.arrays)}
    if args.resident:
        for array in model.values():
            array.fill(0.0)
    gc_rounds = 1 if args.gc else 0
    source: dict[str, object] = {"model": model}
    scratch = tempfile.TemporaryDirectory()
    if args.checkpoint:
        ckpt = Path(scratch.name) / "initial.npz"
        np.savez(ckpt, **model)
        source = {"initial_ckpt": str(ckpt)}
    del model
    recipe = NumpyFedAvgRecipe(
        name="large-model", min_clients=args.clients, num_rounds=args.rounds,
        train_script=str(ORDINARY if args.ordinary else HERE / "client.py"), key_metric=None,
        server_memory_gc_rounds=gc_rounds, client_memory_gc_rounds=gc_rounds,
        launch_external_process=args.external, **source,
    )
    del source
    recipe.set_config("streaming.enabled", not args.no_streaming)
    if args.offload:
        recipe.set_config("streaming.offload_dir", str(Path(scratch.name) / "offload"))
    with tempfile.TemporaryDirectory() as root:
        started = time.perf_counter()
        budget = {} if args.memory_budget is None else {"memory_budget": args.memory_budget}
        run = recipe.execute(SimEnv(num_clients=args.clients, num_threads=args.threads,
                                    workspace_root=root, progress=False, **budget))
        elapsed = time.perf_counter() - started
        result = Path(run.get_result())
        status = run.get_status()
        correct = False
        if status == "FINISHED:COMPLETED":
            with np.load(result / "server" / "models" / "global_model.npz") as final:
                correct = all(bool((final[k] == args.rounds).all()) for k in final.files)
        metrics = result / "server" / "round_metrics.jsonl"
        lines = metrics.read_text().splitlines() if metrics.exists() else []
        rounds = [json.loads(line) for line in lines]
        client_peaks = [int(p.read_text()) for p in sorted(result.glob("site-*/peak_rss_bytes"))]
        log = result / "server" / "log.txt"
        memory_lines = [line.split(": ", 1)[-1] for line in log.read_text().splitlines()
                        if " memory" in line] if log.exists() else []
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({
        "status": status, "message": run.get_message()[:300], "correct": correct,
        "job_s": round(elapsed, 3), "peak_rss_bytes": peak,
        "model_bytes": args.arrays * n * 4,
        "round_rss_bytes": [r["server_rss_bytes"] for r in rounds],
        "client_peak_rss_bytes": client_peaks,
        "memory_log": memory_lines,
    }))
    scratch.cleanup()
    sys.exit(0 if status == "FINISHED:COMPLETED" and correct else 1)


if __name__ == "__main__":
    main()
