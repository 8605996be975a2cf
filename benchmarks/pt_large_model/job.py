"""One PyTorch large-model FedAvg job in SimEnv; prints a JSON line with time, peak RSS, checks.

    python job.py --gib 2 --clients 4 --rounds 3 [--no-streaming] [--external]

The model (benchmarks/pt_large_model/model.py) is handed to ember_pt's FedAvgRecipe as an
``nn.Module``; site-N adds N to every tensor, so after R rounds each parameter must equal its
initial value plus R * (clients + 1) / 2 exactly. The final global model is checked one
tensor at a time (rebuilt from the seed), so the check adds no model-sized memory.
"""

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

from model import BigModel, expected_tensor, rows_for
from safetensors import safe_open
from safetensors.torch import save_file

from ember import SimEnv
from ember_pt.recipes import FedAvgRecipe

HERE = Path(__file__).parent
GIB = 1 << 30


def current_rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def check(path: Path, seed: int, offset: float) -> tuple[bool, int]:
    """Whether every tensor of the saved global model equals its expected value; the count."""
    with safe_open(str(path), framework="pt") as final:
        keys = list(final.keys())
        order = {name: i for i, name in enumerate(expected_names(keys))}
        for key in keys:
            got = final.get_tensor(key)
            want = expected_tensor(got.shape, seed, order[key], offset)
            if not bool((got == want).all()):
                return False, len(keys)
            del got, want
    return True, len(keys)


def expected_names(keys: list[str]) -> list[str]:
    """Parameter names in ``BigModel.parameters()`` order (layer i: weight, then bias)."""
    layers = sorted({int(k.split(".")[1]) for k in keys})
    return [f"layers.{i}.{p}" for i in layers for p in ("weight", "bias")]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gib", type=float, default=2.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-streaming", action="store_true")
    parser.add_argument(
        "--external", action="store_true", help="run each site's script in its own process"
    )
    parser.add_argument(
        "--checkpoint",
        action="store_true",
        help="give the initial model as a .safetensors file (initial_ckpt), not as a module",
    )
    parser.add_argument("--num-threads", type=int, default=None, help="SimEnv(num_threads=)")
    parser.add_argument("--trace", action="store_true", help="RSS timeline on stderr")
    args = parser.parse_args()

    rss_start = current_rss()
    model = BigModel(rows_for(args.gib * GIB), seed=args.seed)
    model_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    rss_model = current_rss()
    scratch = tempfile.TemporaryDirectory()
    source: dict[str, object] = {"model": model}
    if args.checkpoint:
        ckpt = Path(scratch.name) / "initial.safetensors"
        save_file(model.state_dict(), str(ckpt))
        source = {"initial_ckpt": str(ckpt)}
    tracer = None
    if args.trace:
        from rss_trace import install

        tracer = install(model_bytes, rss_start)
    recipe = FedAvgRecipe(
        name="pt-large-model",
        min_clients=args.clients,
        num_rounds=args.rounds,
        train_script=str(HERE / "client.py"),
        key_metric=None,
        launch_external_process=args.external,
        **source,
    )
    del model, source  # the recipe holds the module (written into the job at export)
    recipe.set_config("streaming.enabled", not args.no_streaming)
    with tempfile.TemporaryDirectory() as root:
        started = time.perf_counter()
        env = SimEnv(
            num_clients=args.clients,
            workspace_root=root,
            progress=False,
            num_threads=args.num_threads,
        )
        run = recipe.execute(env)
        elapsed = time.perf_counter() - started
        result = Path(run.get_result())
        status = run.get_status()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # before the check
        if tracer is not None:
            tracer.finish()
        correct, tensors = False, 0
        final = result / "server" / "models" / "global_model.safetensors"
        if status == "FINISHED:COMPLETED" and final.exists():
            offset = args.rounds * (args.clients + 1) / 2
            correct, tensors = check(final, args.seed, offset)
        metrics = result / "server" / "round_metrics.jsonl"
        lines = metrics.read_text().splitlines() if metrics.exists() else []
        rounds = [json.loads(line) for line in lines]
        client_peaks = [int(p.read_text()) for p in sorted(result.glob("site-*/peak_rss_bytes"))]
    print(
        json.dumps(
            {
                "status": status,
                "message": run.get_message()[:300],
                "correct": correct,
                "tensors_checked": tensors,
                "job_s": round(elapsed, 3),
                "peak_rss_bytes": peak,
                "rss_start_bytes": rss_start,
                "rss_model_built_bytes": rss_model,
                "model_bytes": model_bytes,
                "round_rss_bytes": [r.get("server_rss_bytes") for r in rounds],
                "client_peak_rss_bytes": client_peaks,
            }
        )
    )
    scratch.cleanup()
    sys.exit(0 if status == "FINISHED:COMPLETED" and correct else 1)


if __name__ == "__main__":
    main()
