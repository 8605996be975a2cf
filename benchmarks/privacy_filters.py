"""Ember's built-in privacy filters on an ordinary FL job: accuracy, epsilon and time.

    python benchmarks/privacy_filters.py [--rounds 5] [--repeat 5]

The job is examples/hello-pt as it is (its client.py, model.py and data.py, used by path):
FedAvg of a small torch MLP (64 -> 64 -> 10) on scikit-learn's digits over two sites, in
SimEnv with in-process sites, ``--rounds`` rounds, torch.set_num_threads(1). Each arm attaches
one client output filter from ``ember.filters``
(``recipe.add_client_output_filter(filter)``, every task, every site):

- baseline: no filter;
- ExcludeVars of the output layer's bias (``net.2.bias``), alone and together with the
  recipe's ``exclude_vars`` of the same name; the final global model's ``net.2.bias`` must
  equal the initial model's;
- PercentilePrivacy with NVFlare's defaults (percentile=10, gamma=0.01), a looser and a
  stricter setting;
- SVTPrivacy with NVFlare's defaults (fraction=0.1, epsilon=0.1, noise_var=0.1, gamma=1e-5,
  tau=1e-6) and a weak-privacy setting that checks the filter can let a model learn;
- GaussianPrivacy at noise_multiplier 0.5, 1.0, 2.0 (clip_norm 1.0) and 0.01 (weak privacy).

PercentilePrivacy and SVTPrivacy work on the update per local step: hello-pt reports its
site's sample count (about 674) as ``NUM_STEPS_CURRENT_ROUND``, so their ``gamma`` bounds
each coordinate of a round's update at about 674 * gamma.

Noise filters take ``seed=0``; the initial model comes from ``torch.manual_seed(0)``. One
untimed baseline job warms up first; then every arm runs once per repeat, the arms
alternating. Printed per arm: the final global model's test accuracy (hello-pt's test split;
every repeat must give the same) and the largest difference of its weights to the
baseline's global model, the epsilon each site reported per round (``dp_epsilon``,
``svt_epsilon``, ``svt_epsilon_total`` from ``server/round_metrics.jsonl``), the job's
``privacy_spent`` (``server/metrics_summary.json``), the best wall time of
``recipe.execute`` and the ratios of time and accuracy to the baseline measured in the same
run. Workspaces go under /tmp/ember-bench-privacy (emptied first). The exit status is 1 when
a job fails, an excluded variable changes, or accuracy is not reproducible; the output ends
with one JSON line of named figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "hello-pt"
WORKSPACE = Path("/tmp/ember-bench-privacy")
N_SITES = 2
SEED = 0
EXCLUDED = "net.2.bias"  # the output layer's bias (DigitsMLP: net.0 Linear, net.2 Linear)
COMPLETED = "FINISHED:COMPLETED"
EPSILON_KEYS = ("dp_epsilon", "svt_epsilon", "svt_epsilon_total")
BASELINE_MIN_ACCURACY = 0.9  # examples/hello-pt/README.md: above 0.9 after 5 rounds


@dataclass(frozen=True)
class Arm:
    """One configuration: the client output filter (None: none) and recipe arguments."""

    key: str
    label: str
    make_filter: Callable[[], Any] | None
    recipe_args: dict[str, Any] = field(default_factory=dict)
    excluded: str | None = None  # a variable that must keep its initial value


@dataclass
class Outcome:
    """What one job left: status, accuracy, epsilons, the privacy summary, wall time."""

    status: str
    message: str
    seconds: float
    accuracy: float | None = None
    epsilons: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    privacy_spent: dict[str, Any] | None = None
    rounds_recorded: int = 0
    model_keys: list[str] = field(default_factory=list)
    excluded_unchanged: bool | None = None
    state: dict[str, Any] = field(default_factory=dict)  # the final global model


def arms() -> list[Arm]:
    """Every configuration measured, the baseline first."""
    from ember.filters import ExcludeVars, GaussianPrivacy, PercentilePrivacy, SVTPrivacy

    pattern = "^" + EXCLUDED.replace(".", r"\.") + "$"

    def gaussian(noise: float, clip: float) -> Callable[[], Any]:
        return lambda: GaussianPrivacy(noise_multiplier=noise, clip_norm=clip, seed=SEED)

    return [
        Arm("baseline", "no filter", None),
        Arm(
            "exclude",
            f"ExcludeVars([{EXCLUDED!r}])",
            lambda: ExcludeVars([EXCLUDED]),
            excluded=EXCLUDED,
        ),
        Arm(
            "exclude_recipe",
            f"ExcludeVars([{EXCLUDED!r}]) + recipe exclude_vars={pattern!r}",
            lambda: ExcludeVars([EXCLUDED]),
            {"exclude_vars": pattern},
            excluded=EXCLUDED,
        ),
        Arm("percentile", "PercentilePrivacy() (10, 0.01)", lambda: PercentilePrivacy()),
        Arm(
            "percentile_loose",
            "PercentilePrivacy(percentile=5, gamma=0.1)",
            lambda: PercentilePrivacy(percentile=5, gamma=0.1),
        ),
        Arm(
            "percentile_strict",
            "PercentilePrivacy(percentile=90, gamma=1e-4)",
            lambda: PercentilePrivacy(percentile=90, gamma=1e-4),
        ),
        Arm("svt", "SVTPrivacy() (NVFlare defaults)", lambda: SVTPrivacy(seed=SEED)),
        Arm(
            "svt_weak",
            "SVTPrivacy(fraction=0.5, epsilon=10, noise_var=100, gamma=1e-3)",
            lambda: SVTPrivacy(fraction=0.5, epsilon=10, noise_var=100, gamma=1e-3, seed=SEED),
        ),
        Arm("gauss_0.5", "GaussianPrivacy(noise 0.5, clip 1.0)", gaussian(0.5, 1.0)),
        Arm("gauss_1.0", "GaussianPrivacy(noise 1.0, clip 1.0)", gaussian(1.0, 1.0)),
        Arm("gauss_2.0", "GaussianPrivacy(noise 2.0, clip 1.0)", gaussian(2.0, 1.0)),
        Arm("gauss_0.01", "GaussianPrivacy(noise 0.01, clip 1.0)", gaussian(0.01, 1.0)),
    ]


def hello_pt() -> tuple[Any, Callable[[Any], float]]:
    """hello-pt's model class and its test accuracy of a model (the example, by path)."""
    if str(EXAMPLE) not in sys.path:
        sys.path.insert(0, str(EXAMPLE))  # its model.py and data.py, as its job.py does
    from data import accuracy, test_data
    from model import DigitsMLP

    x_test, y_test = test_data()

    def test_accuracy(model: Any) -> float:
        return float(accuracy(model, x_test, y_test))

    return DigitsMLP, test_accuracy


def site_epsilons(server_dir: Path) -> tuple[int, dict[str, dict[str, list[float]]]]:
    """Rounds recorded, and per epsilon key and site the value reported each round."""
    path = server_dir / "round_metrics.jsonl"
    if not path.is_file():
        return 0, {}
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    found: dict[str, dict[str, list[float]]] = {}
    for record in records:
        for site, metrics in sorted(record["site_metrics"].items()):
            for key in EPSILON_KEYS:
                if key in metrics:
                    found.setdefault(key, {}).setdefault(site, []).append(float(metrics[key]))
    return len(records), found


def run_arm(
    arm: Arm, tag: str, rounds: int, model_cls: Any, test_accuracy: Callable[[Any], float]
) -> Outcome:
    """Build hello-pt's recipe with the arm's filter, run it in SimEnv, read what it left."""
    import torch
    from safetensors.torch import load_file

    from ember import SimEnv
    from ember_pt.recipes import FedAvgRecipe

    torch.manual_seed(SEED)
    initial = model_cls()
    initial_state = {k: v.detach().clone() for k, v in initial.state_dict().items()}
    recipe = FedAvgRecipe(
        name=f"{arm.key}-{tag}",
        min_clients=N_SITES,
        num_rounds=rounds,
        model=initial,
        train_script=str(EXAMPLE / "client.py"),
        train_args=f"--n-sites {N_SITES}",
        **arm.recipe_args,
    )
    if arm.make_filter is not None:
        recipe.add_client_output_filter(arm.make_filter())
    env = SimEnv(num_clients=N_SITES, workspace_root=str(WORKSPACE), progress=False)
    with (
        open(os.devnull, "w", encoding="utf-8") as quiet,
        contextlib.redirect_stdout(quiet),  # the sites' per-round prints
    ):
        started = time.perf_counter()
        run = recipe.execute(env)
        seconds = time.perf_counter() - started
        run.wait_for_plot()  # the PNG renders in a process of its own: not during the next job
    result = Path(run.get_result())
    server = result / "server"
    outcome = Outcome(run.get_status(), run.get_message() or "", seconds)
    outcome.rounds_recorded, outcome.epsilons = site_epsilons(server)
    summary = server / "metrics_summary.json"
    if summary.is_file():
        outcome.privacy_spent = json.loads(summary.read_text(encoding="utf-8")).get("privacy_spent")
    model_path = server / "models" / "global_model.safetensors"
    if model_path.is_file():
        state = load_file(str(model_path))
        outcome.model_keys = sorted(state)
        outcome.state = state
        if arm.excluded is not None and outcome.status == COMPLETED:
            outcome.excluded_unchanged = arm.excluded in state and torch.equal(
                state[arm.excluded], initial_state[arm.excluded]
            )
        if outcome.status == COMPLETED:
            model = model_cls()
            model.load_state_dict(state)
            outcome.accuracy = test_accuracy(model)
    return outcome


def max_difference(state: dict[str, Any], other: dict[str, Any]) -> float:
    """The largest absolute difference between two models' variables (same names)."""
    return max(float((state[k] - other[k]).abs().max()) for k in other if k in state)


def short(values: list[float]) -> str:
    """A list of epsilons, four significant digits each."""
    return "[" + ", ".join(f"{v:.4g}" for v in values) + "]"


def main() -> int:
    """Run every arm, print the figures; 1 if a job failed or a check did not hold."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5, help="FedAvg rounds per job")
    parser.add_argument("--repeat", type=int, default=5, help="jobs per arm (best time)")
    args = parser.parse_args()
    if args.rounds < 1 or args.repeat < 1:
        parser.error("--rounds and --repeat must be >= 1")
    rounds = args.rounds

    import numpy as np
    import torch

    torch.set_num_threads(1)
    shutil.rmtree(WORKSPACE, ignore_errors=True)
    model_cls, test_accuracy = hello_pt()
    configs = arms()
    print(
        f"Ember privacy filters on hello-pt: Python {platform.python_version()}, torch "
        f"{torch.__version__}, numpy {np.__version__}, {os.cpu_count()} CPUs, {N_SITES} sites, "
        f"{rounds} rounds, best of {args.repeat}, workspace {WORKSPACE}"
    )
    total_started = time.perf_counter()
    run_arm(configs[0], "warmup", rounds, model_cls, test_accuracy)  # imports, first-job costs
    outcomes: dict[str, list[Outcome]] = {arm.key: [] for arm in configs}
    for i in range(args.repeat):
        for arm in configs:
            outcomes[arm.key].append(run_arm(arm, str(i), rounds, model_cls, test_accuracy))

    problems: list[str] = []
    figures: dict[str, Any] = {
        "benchmark": "privacy_filters",
        "rounds": rounds,
        "sites": N_SITES,
        "repeat": args.repeat,
    }
    base_runs = outcomes["baseline"]
    base_s = min(o.seconds for o in base_runs)
    base_acc = base_runs[0].accuracy
    if base_acc is None or base_acc < BASELINE_MIN_ACCURACY:
        problems.append(f"baseline: accuracy {base_acc} (expected >= {BASELINE_MIN_ACCURACY})")
    for arm in configs:
        runs = outcomes[arm.key]
        first = runs[0]
        best_s = min(o.seconds for o in runs)
        entry: dict[str, Any] = {"status": first.status, "time_s": round(best_s, 3)}
        print(f"\n{arm.key}: {arm.label}")
        statuses = sorted({o.status for o in runs})
        if statuses != [COMPLETED]:
            message = " ".join(line.strip() for line in first.message.strip().splitlines()[:2])
            problems.append(f"{arm.key}: {', '.join(statuses)}: {message}")
            print(f"  status            {', '.join(statuses)}")
            print(f"  message           {message}")
            print(f"  rounds recorded   {first.rounds_recorded} of {rounds}")
            print(f"  global model keys {first.model_keys}")
        accuracies = [o.accuracy for o in runs]
        if first.accuracy is not None:
            acc = first.accuracy
            entry["accuracy"] = round(acc, 4)
            same = len(set(accuracies)) == 1
            if not same:
                problems.append(f"{arm.key}: accuracy differs between repeats {accuracies}")
            note = "same in every repeat" if same else f"REPEATS DIFFER {accuracies}"
            ratio = f"{acc / base_acc:.3f}x baseline" if base_acc else "no baseline"
            print(f"  test accuracy     {acc:.4f}   ({ratio}; {note})")
            if base_acc:
                entry["accuracy_ratio"] = round(acc / base_acc, 4)
        if first.status == COMPLETED and base_runs[0].state and arm.key != "baseline":
            diff = max_difference(first.state, base_runs[0].state)
            entry["max_abs_diff_vs_baseline"] = diff
            print(f"  max |global - baseline's global model| {diff:.3g}")
        print(f"  job wall time     {best_s:.3f} s   ({best_s / base_s:.2f}x baseline)")
        entry["time_ratio"] = round(best_s / base_s, 3)
        if arm.excluded is not None:
            kept = [o.excluded_unchanged for o in runs]
            if all(k is not None for k in kept):
                ok = all(kept)
                entry["excluded_unchanged"] = ok
                if not ok:
                    problems.append(f"{arm.key}: {arm.excluded} is not its initial value {kept}")
                state = "equals the initial model's" if ok else f"CHANGED OR MISSING {kept}"
                print(f"  {arm.excluded} in the final global model {state}")
        for key, by_site in first.epsilons.items():
            print(f"  {key} per round")
            for site, values in by_site.items():
                print(f"    {site:<8} {short(values)}")
            entry[key] = {site: [round(v, 4) for v in vs] for site, vs in by_site.items()}
        if first.privacy_spent:
            for key, spent in first.privacy_spent.items():
                sites = ", ".join(f"{s} {v:.4g}" for s, v in spent["by_site"].items())
                print(f"  privacy_spent     {key}: max {spent['max']:.4g} ({sites})")
            entry["privacy_spent"] = first.privacy_spent
        figures[arm.key] = entry

    total_s = time.perf_counter() - total_started
    print(f"\nall jobs: {total_s:.1f} s")
    figures["total_s"] = round(total_s, 1)
    figures["correct"] = not problems
    if problems:
        print(f"{len(problems)} problem(s):")
        for problem in problems:
            print(f"  - {problem}")
    print(json.dumps(figures))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
