"""One Keras large-model FedAvg job in SimEnv; prints a JSON line with time, peak RSS, checks.

    python job.py --mib 256 --clients 2 --rounds 3 [--no-streaming] [--external]

The model (benchmarks/tf_large_model/model.py, a functional keras.Model) is handed to
ember_tf's FedAvgRecipe as an instance (it travels as a .keras file); site-N adds N to every
weight, so after R rounds each weight must equal its initial value plus R * (clients + 1) / 2
exactly. The final global model (``global_model.weights.h5``) is loaded back into the job's
own model and checked one weight at a time against values rebuilt from the seed.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from model import LAYERS, build, model_bytes, values, width_for  # noqa: E402

from ember import SimEnv  # noqa: E402
from ember_tf.recipes import FedAvgRecipe  # noqa: E402

MIB = 1 << 20


def current_rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def check(model, path: Path, seed: int, offset: float) -> tuple[bool, int]:  # type: ignore[no-untyped-def]
    """Whether every weight of the saved global model is its initial value plus ``offset``."""
    model.load_weights(str(path))
    for index, variable in enumerate(model.weights):
        got = variable.numpy()
        if not (got == values(got.shape, seed, index) + offset).all():
            return False, len(model.weights)
        del got
    return True, len(model.weights)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=float, default=256.0)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-streaming", action="store_true")
    parser.add_argument(
        "--external", action="store_true", help="run each site's script in its own process"
    )
    args = parser.parse_args()

    import keras  # noqa: F401  (TensorFlow's own memory is part of the baseline)

    rss_start = current_rss()
    model = build(width_for(args.mib * MIB), LAYERS, fill_seed=args.seed)
    size = model_bytes(model)
    rss_model = current_rss()
    recipe = FedAvgRecipe(
        name="tf-large-model",
        min_clients=args.clients,
        num_rounds=args.rounds,
        model=model,
        train_script=str(HERE / "client.py"),
        key_metric=None,
        launch_external_process=args.external,
    )
    recipe.set_config("streaming.enabled", not args.no_streaming)
    with tempfile.TemporaryDirectory() as root:
        started = time.perf_counter()
        run = recipe.execute(SimEnv(num_clients=args.clients, workspace_root=root, progress=False))
        elapsed = time.perf_counter() - started
        result = Path(run.get_result())
        status = run.get_status()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # before the check
        correct, weights = False, 0
        final = result / "server" / "models" / "global_model.weights.h5"
        if status == "FINISHED:COMPLETED" and final.exists():
            offset = args.rounds * (args.clients + 1) / 2
            correct, weights = check(model, final, args.seed, offset)
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
                "weights_checked": weights,
                "job_s": round(elapsed, 3),
                "peak_rss_bytes": peak,
                "rss_start_bytes": rss_start,
                "rss_model_built_bytes": rss_model,
                "model_bytes": size,
                "round_rss_bytes": [r.get("server_rss_bytes") for r in rounds],
                "client_peak_rss_bytes": client_peaks,
            }
        )
    )
    sys.exit(0 if status == "FINISHED:COMPLETED" and correct else 1)


if __name__ == "__main__":
    main()
