"""pt-non-iid: FedAvg, FedProx, SCAFFOLD and FedOpt on a Dirichlet label split of digits.

Runs the four recipes one after another in SimEnv (8 in-process sites) with the same split,
the same initial model and the same per-site shuffles, then writes
``<workspace>/pt-non-iid/results.md`` (and ``results.json``) and ``accuracy.png``.

python job.py                                   # 4 algorithms, 50 rounds, alpha 0.1
python job.py --rounds 10 --algorithms fedavg scaffold
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))  # model.py and data.py

import torch  # noqa: E402
from data import accuracy, label_counts, test_data  # noqa: E402
from model import DigitsMLP  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from ember import SimEnv  # noqa: E402
from ember_pt.recipes import FedAvgRecipe, FedOptRecipe, FedProxRecipe, ScaffoldRecipe  # noqa: E402

ALGORITHMS = ("fedavg", "fedprox", "scaffold", "fedopt")
LABELS = {"fedavg": "FedAvg", "fedprox": "FedProx", "scaffold": "SCAFFOLD", "fedopt": "FedOpt"}
RESULTS = "pt-non-iid"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--alpha", type=float, default=0.1, help="Dirichlet concentration")
    parser.add_argument("--seed", type=int, default=0, help="partition, model and shuffles")
    parser.add_argument(
        "--algorithms",
        nargs="+",
        default=list(ALGORITHMS),
        help=f"a subset of {', '.join(ALGORITHMS)} (space- or comma-separated)",
    )
    parser.add_argument("--workspace", default="/tmp/ember/simulation")
    parser.add_argument("--n-sites", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2, help="sites training at once")
    parser.add_argument("--epochs", type=int, default=2, help="local epochs per round")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=0.05, help="the sites' SGD learning rate")
    parser.add_argument("--mu", type=float, default=0.01, help="FedProx's mu")
    parser.add_argument("--server-lr", type=float, default=1.0, help="FedOpt's SGD lr")
    parser.add_argument("--server-momentum", type=float, default=0.6, help="FedOpt's momentum")
    args = parser.parse_args()
    algorithms = [a for item in args.algorithms for a in item.split(",") if a]
    unknown = sorted(set(algorithms) - set(ALGORITHMS))
    if unknown or not algorithms:
        parser.error(f"--algorithms: unknown {unknown}; choose from {', '.join(ALGORITHMS)}")
    args.algorithms = list(dict.fromkeys(algorithms))
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")
    return args


def make_recipe(algorithm: str, args: argparse.Namespace, model: DigitsMLP) -> Any:
    common: dict[str, Any] = {
        "name": f"{RESULTS}-{algorithm}",
        "min_clients": args.n_sites,
        "num_rounds": args.rounds,
        "model": model,
        "train_script": str(HERE / "client.py"),
        "train_args": (
            f"--n-sites {args.n_sites} --alpha {args.alpha} --seed {args.seed} "
            f"--epochs {args.epochs} --batch-size {args.batch_size} --lr {args.lr}"
        ),
    }
    if algorithm == "fedavg":
        return FedAvgRecipe(**common)
    if algorithm == "fedprox":
        return FedProxRecipe(**common, fedprox_mu=args.mu)
    if algorithm == "scaffold":
        return ScaffoldRecipe(**common)
    return FedOptRecipe(  # NVFlare's defaults: SGD(lr=1, momentum=0.6), cosine to lr 0.9
        **common,
        optimizer_args={
            "path": "torch.optim.SGD",
            "args": {"lr": args.server_lr, "momentum": args.server_momentum},
        },
    )


def read_rounds(job_dir: Path) -> list[dict[str, Any]]:
    path = job_dir / "server" / "round_metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_one(algorithm: str, args: argparse.Namespace, initial: dict[str, torch.Tensor]) -> dict:
    model = DigitsMLP()
    model.load_state_dict(initial)  # the same initial model for every algorithm
    recipe = make_recipe(algorithm, args, model)
    env = SimEnv(
        num_clients=args.n_sites,
        num_threads=args.threads,
        workspace_root=args.workspace,
        progress=False,
    )
    started = time.perf_counter()
    run = recipe.execute(env)
    status = run.get_status()
    wall = time.perf_counter() - started
    if status != "FINISHED:COMPLETED":
        raise SystemExit(f"{algorithm}: {status}\n{run.get_message()}")
    job_dir = Path(run.get_result())
    rounds = read_rounds(job_dir)
    # round r's accuracy is that of the model the sites received in round r (after r rounds
    # of training); the model after the last round is the saved global model
    curve = [float(r["metrics"]["accuracy"]) for r in sorted(rounds, key=lambda r: r["round"])]
    final_model = DigitsMLP()
    final_model.load_state_dict(
        load_file(str(job_dir / "server" / "models" / "global_model.safetensors"))
    )
    final = accuracy(final_model, *test_data())
    curve.append(final)
    print(
        f"{LABELS[algorithm]:>8}: {len(rounds)} rounds in {wall:.1f} s, final accuracy "
        f"{final:.4f}, best {max(curve):.4f}  ({job_dir})",
        flush=True,
    )
    return {
        "algorithm": LABELS[algorithm],
        "key": algorithm,
        "rounds": len(rounds),
        "final_accuracy": final,
        "best_accuracy": max(curve),
        "best_round": curve.index(max(curve)),
        "accuracy": curve,
        "wall_time_s": wall,
        "job_dir": str(job_dir),
    }


def table(results: list[dict]) -> str:
    lines = [
        "| algorithm | final accuracy | best accuracy (after round) | rounds | wall time (s) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        lines.append(
            f"| {r['algorithm']} | {r['final_accuracy']:.4f} | {r['best_accuracy']:.4f} "
            f"({r['best_round']}) | {r['rounds']} | {r['wall_time_s']:.1f} |"
        )
    return "\n".join(lines)


def plot(results: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    styles = {"fedavg": "-", "fedprox": "--", "scaffold": "-", "fedopt": "-"}
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in results:  # FedProx dashed: with a small mu it can lie on FedAvg's line
        ax.plot(
            range(len(r["accuracy"])),
            r["accuracy"],
            styles[r["key"]],
            marker=".",
            label=r["algorithm"],
        )
    ax.set_xlabel("rounds of training")
    ax.set_ylabel("test accuracy of the global model")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    args = parse_args()
    torch.manual_seed(args.seed)
    initial = DigitsMLP().state_dict()
    counts = label_counts(args.n_sites, args.alpha, args.seed)
    print(f"Dirichlet(alpha={args.alpha}) split of the digits over {args.n_sites} sites:")
    print("labels:   " + " ".join(f"{c:>4}" for c in range(10)) + "  total")
    for site, row in enumerate(counts):
        print(f"site-{site + 1:<3} " + " ".join(f"{n:>4}" for n in row) + f"  {row.sum():>5}")

    results = [run_one(a, args, initial) for a in args.algorithms]

    out = Path(args.workspace) / RESULTS
    out.mkdir(parents=True, exist_ok=True)
    settings = (
        f"{args.n_sites} sites, Dirichlet alpha={args.alpha}, seed {args.seed}, "
        f"{args.rounds} rounds, {args.epochs} local epochs of SGD(lr={args.lr}, "
        f"batch {args.batch_size}); FedProx mu={args.mu}; FedOpt server "
        f"SGD(lr={args.server_lr}, momentum={args.server_momentum}) + cosine to lr 0.9"
    )
    text = table(results)
    split = "\n".join(
        [
            "| site | " + " | ".join(str(c) for c in range(10)) + " | total |",
            "| --- |" + " ---: |" * 11,
            *(
                f"| site-{s + 1} | " + " | ".join(str(n) for n in row) + f" | {row.sum()} |"
                for s, row in enumerate(counts)
            ),
        ]
    )
    (out / "results.md").write_text(
        f"# pt-non-iid\n\n{settings}\n\n{text}\n\n"
        "Final accuracy: the global model after the last round; best: the highest over the "
        "initial model and every round's global model.\n\n"
        f"## Training rows per site and label\n\n{split}\n",
        encoding="utf-8",
    )
    (out / "results.json").write_text(
        json.dumps({"settings": vars(args), "results": results}, indent=2), encoding="utf-8"
    )
    plot(
        results,
        out / "accuracy.png",
        f"digits, {args.n_sites} sites, Dirichlet alpha={args.alpha}, seed {args.seed}",
    )
    print()
    print(text)
    print(f"\nwritten: {out / 'results.md'}, {out / 'accuracy.png'}")


if __name__ == "__main__":
    main()
