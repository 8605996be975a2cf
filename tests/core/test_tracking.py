"""Experiment tracking with each library's own files, read back with its own reader.

A tiny numpy FedAvg job in SimEnv (2 sites, 2 rounds) whose script logs through all three
writers; each test checks what one library holds per site and per round.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ember.client.tracking import MLflowWriter, SummaryWriter, WandBWriter
from ember.recipes import RecipeArgumentError, add_experiment_tracking
from ember.runtime.trackers import GLOBAL_RUN, tracking_specs
from support.sim import numpy_recipe, run_sim

COMPLETED = "FINISHED:COMPLETED"
ROUNDS = 2
SITES = ["site-1", "site-2"]

# logs through every writer: per site, per round; reports accuracy = mean of the weights
SCRIPT = textwrap.dedent(
    """
    import numpy as np

    import ember.client as flare
    from ember.client import NUMPY_KEY, FLModel, ParamsType
    from ember.client.tracking import MLflowWriter, SummaryWriter, WandBWriter

    flare.init()
    site = flare.get_site_name()
    tb, mlf, wb = SummaryWriter(), MLflowWriter(), WandBWriter()
    bonus = 1.0 if site == "site-1" else 3.0
    mlf.log_params({"lr": 0.1, "site_bonus": bonus})
    mlf.set_tag("owner", site)
    while flare.is_running():
        model = flare.receive()
        if model is None:
            break
        rnd = model.current_round
        weights = model.params[NUMPY_KEY] + bonus
        loss = 1.0 / (rnd + bonus)
        tb.add_scalar("tb_loss", loss, rnd)
        mlf.log_metric("mlflow_loss", loss, step=rnd)
        mlf.log_metrics({"mlflow_a": rnd + bonus, "mlflow_b": np.float32(2 * rnd)}, step=rnd)
        wb.log({"wandb_loss": loss}, step=rnd)
        mlf.log_text(f"{site} round {rnd}", f"notes/round-{rnd}.txt")
        flare.send(FLModel(params_type=ParamsType.FULL, params={NUMPY_KEY: weights},
                           metrics={"accuracy": float(np.mean(weights))}, current_round=rnd))
    """
)


def loss(site: str, rnd: int) -> float:
    return 1.0 / (rnd + (1.0 if site == "site-1" else 3.0))


def tracked_job(
    tmp_path: Path, tracking_type: str, **options: Any
) -> tuple[Path, list[dict[str, Any]]]:
    """Run the job with ``add_experiment_tracking(recipe, tracking_type, **options)``; its
    result folder and the round records."""
    script = tmp_path / "track_client.py"
    script.write_text(SCRIPT)
    recipe = numpy_recipe(
        name="tracked", train_script=str(script), num_rounds=ROUNDS, model=np.zeros(3)
    )
    add_experiment_tracking(recipe, tracking_type, **options)
    run = run_sim(recipe, tmp_path)
    assert run.get_status() == COMPLETED, run.get_message()
    result = Path(run.get_result())
    rounds = [json.loads(x) for x in (result / "server" / "round_metrics.jsonl").open()]
    assert len(rounds) == ROUNDS
    return result, rounds


def expected_global(rounds: list[dict[str, Any]]) -> dict[str, list[tuple[int, float]]]:
    """What the global run holds: aggregated accuracy and each site's, per round."""
    out: dict[str, list[tuple[int, float]]] = {"accuracy": []}
    for record in rounds:
        out["accuracy"].append((record["round"], record["metrics"]["accuracy"]))
        for site, metrics in record["site_metrics"].items():
            out.setdefault(f"{site}/accuracy", []).append((record["round"], metrics["accuracy"]))
    return out


def same_points(got: list[tuple[int, float]], expected: list[tuple[int, float]]) -> bool:
    """The same steps, and values equal up to float32 rounding."""
    steps = [s for s, _ in got] == [s for s, _ in expected]
    return steps and [v for _, v in got] == pytest.approx([v for _, v in expected], rel=1e-6)


# -- MLflow -------------------------------------------------------------------------------


def mlflow_runs(store: Path) -> dict[str, Any]:
    """Run name -> (client, run) in the file store's "tracked" experiment."""
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=store.as_uri())
    experiment = client.get_experiment_by_name("tracked")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    return {run.info.run_name: (client, run) for run in runs}


def history(client: Any, run: Any, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))


def test_mlflow_file_store_holds_each_sites_metrics_and_the_global_run_per_round(
    tmp_path: Path,
) -> None:
    pytest.importorskip("mlflow", reason="the mlflow extra (mlflow-skinny) is not installed")
    result, rounds = tracked_job(tmp_path, "mlflow")
    runs = mlflow_runs(result / "server" / "mlruns")
    assert sorted(runs) == sorted([*SITES, GLOBAL_RUN])
    for site in SITES:
        client, run = runs[site]
        assert run.info.status == "FINISHED"
        assert history(client, run, "mlflow_loss") == [(r, loss(site, r)) for r in range(ROUNDS)]
        assert history(client, run, "tb_loss") == [(r, loss(site, r)) for r in range(ROUNDS)]
        assert history(client, run, "wandb_loss") == [(r, loss(site, r)) for r in range(ROUNDS)]
        assert history(client, run, "mlflow_b") == [(r, 2.0 * r) for r in range(ROUNDS)]
        assert run.data.params["lr"] == "0.1"
        assert run.data.params["train_script"] == "app/track_client.py"
        assert run.data.tags["owner"] == site
        notes = client.list_artifacts(run.info.run_id, "notes")
        assert sorted(a.path for a in notes) == ["notes/round-0.txt", "notes/round-1.txt"]
    client, run = runs[GLOBAL_RUN]
    for key, points in expected_global(rounds).items():
        assert same_points(history(client, run, key), points), key
    assert run.data.params["num_rounds"] == str(ROUNDS)
    assert run.data.params["job_name"] == "tracked"
    model = [a.path for a in client.list_artifacts(run.info.run_id, "model")]
    assert "model/global_model.npz" in model
    # no file of the job is written outside its folder: the store is under server/
    assert not (result / "site-1" / "mlruns").exists()


def test_mlflow_client_side_keeps_each_sites_values_in_its_own_folder(tmp_path: Path) -> None:
    pytest.importorskip("mlflow", reason="the mlflow extra (mlflow-skinny) is not installed")
    result, _ = tracked_job(
        tmp_path,
        "mlflow",
        tracking_config={"kw_args": {"experiment_name": "tracked", "run_tags": {"team": "a"}}},
        client_side=True,
        server_side=False,
    )
    assert not (result / "server" / "mlruns").exists()
    for site in SITES:
        runs = mlflow_runs(result / site / "mlruns")
        assert sorted(runs) == [site]  # only its own values, no other site's
        client, run = runs[site]
        assert history(client, run, "mlflow_loss") == [(r, loss(site, r)) for r in range(ROUNDS)]
        assert run.data.tags["team"] == "a"


# -- Weights & Biases -----------------------------------------------------------------------


def wandb_records(run_dir: Path) -> list[dict[str, Any]]:
    """A run's records from its .wandb file, read with wandb's own reader (`wandb leet
    inspect --json`, which wandb-core answers from the file: no network)."""
    (wandb_file,) = run_dir.glob("*.wandb")
    cli = Path(sys.executable).with_name("wandb")
    out = subprocess.run(
        [str(cli), "leet", "inspect", "--json", str(wandb_file)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    ).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def wandb_runs(folder: Path) -> dict[str, list[dict[str, Any]]]:
    """Display name -> records, for every offline run under ``folder/wandb``."""
    runs = {}
    for run_dir in (folder / "wandb").glob("offline-run-*"):
        records = wandb_records(run_dir)
        (run,) = [r["run"] for r in records if r["type"] == "run"]
        runs[run["display_name"]] = records
    return runs


def wandb_history(records: list[dict[str, Any]], key: str) -> list[tuple[int, float]]:
    return [
        (r["history"]["step"].get("num", 0), r["history"]["item"][key])
        for r in records
        if r["type"] == "history" and key in r["history"]["item"]
    ]


def test_wandb_offline_run_directory_holds_each_sites_metrics_and_the_global_run(
    tmp_path: Path,
) -> None:
    pytest.importorskip("wandb", reason="the wandb extra is not installed")
    result, rounds = tracked_job(tmp_path, "wandb", tracking_config={"project": "ember-test"})
    runs = wandb_runs(result / "server")
    assert sorted(runs) == sorted([*SITES, GLOBAL_RUN])
    for site in SITES:
        records = runs[site]
        assert wandb_history(records, "wandb_loss") == [(r, loss(site, r)) for r in range(ROUNDS)]
        assert wandb_history(records, "tb_loss") == [(r, loss(site, r)) for r in range(ROUNDS)]
        (run,) = [r["run"] for r in records if r["type"] == "run"]
        assert run["project"] == "ember-test"
        assert run["config"]["update"]["site"] == site
        config = {}
        for r in records:
            if r["type"] == "config":
                config.update(r["config"].get("update", {}))
        assert config["lr"] == "0.1"
        assert [r["exit"] for r in records if r["type"] == "exit"] == [{"exit_code": 0}]
    records = runs[GLOBAL_RUN]
    for key, points in expected_global(rounds).items():
        assert same_points(wandb_history(records, key), points), key
    (artifact,) = [r["artifact"] for r in records if r["type"] == "artifact"]
    assert artifact["type"] == "model"
    assert "global_model.npz" in [e["path"] for e in artifact["manifest"]["contents"]]


# -- TensorBoard ----------------------------------------------------------------------------


def tb_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Tag -> [(step, value)] from a run folder's event files (TFRecord framing + Event
    protos, as TensorBoard reads them)."""
    from tensorboardX.proto import event_pb2

    out: dict[str, list[tuple[int, float]]] = {}
    for event_file in sorted(folder.glob("events.*")):
        data, offset = event_file.read_bytes(), 0
        while offset < len(data):
            (length,) = struct.unpack_from("<Q", data, offset)
            event = event_pb2.Event.FromString(data[offset + 12 : offset + 12 + length])
            offset += 12 + length + 4
            for v in event.summary.value:
                if v.HasField("simple_value"):
                    out.setdefault(v.tag, []).append((event.step, v.simple_value))
    return out


def test_tensorboard_events_hold_each_sites_metrics_and_the_global_run(tmp_path: Path) -> None:
    result, rounds = tracked_job(tmp_path, "tensorboard", client_side=True)
    for side in ("server", *SITES):
        events = result / side / "tb_events"
        expected_runs = [*SITES, GLOBAL_RUN] if side == "server" else [side]
        assert sorted(p.name for p in events.iterdir()) == sorted(expected_runs)
    for site in SITES:
        for folder in (result / "server" / "tb_events" / site, result / site / "tb_events" / site):
            scalars = tb_scalars(folder)
            for key in ("tb_loss", "mlflow_loss", "wandb_loss"):
                assert same_points(scalars[key], [(r, loss(site, r)) for r in range(ROUNDS)])
    scalars = tb_scalars(result / "server" / "tb_events" / GLOBAL_RUN)
    for key, points in expected_global(rounds).items():
        assert same_points(scalars[key], points), key


# -- the recipe helper and the writers -------------------------------------------------------


def test_add_experiment_tracking_records_nvflare_style_specs_in_the_job() -> None:
    recipe = numpy_recipe()
    add_experiment_tracking(recipe, "mlflow", {"kw_args": {"experiment_name": "e"}})
    add_experiment_tracking(recipe, "wandb", client_side=True, server_side=False)
    assert recipe.job.tracking == [
        {"type": "mlflow", "config": {"experiment_name": "e"}, "server_side": True,
         "client_side": False},
        {"type": "wandb", "config": {}, "server_side": False, "client_side": True},
    ]
    assert [s.type for s in tracking_specs(json.loads(recipe.job.to_json())["tracking"])] == [
        "mlflow",
        "wandb",
    ]
    assert tracking_specs("tensorboard")[0].server_side  # job.json files of older jobs


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("comet",), r"tracking_type must be one of \['tensorboard', 'mlflow', 'wandb'\]"),
        (("mlflow", {"uri": "x"}), "mlflow tracking_config does not take 'uri'; it takes"),
        (("wandb", {"mode": "cloud"}), "wandb mode must be one of"),
        (("mlflow", None, False, False), "at least one of server_side and client_side"),
        (("tensorboard", {"tb_folder": 3}), r"tracking_config\['tb_folder'\] must be a string"),
    ],
)
def test_add_experiment_tracking_refuses_bad_arguments(args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(RecipeArgumentError, match=message):
        add_experiment_tracking(numpy_recipe(), *args)


def test_adding_one_tracking_type_twice_is_refused() -> None:
    recipe = add_experiment_tracking(numpy_recipe(), "tensorboard")
    with pytest.raises(RecipeArgumentError, match="tensorboard tracking is already added"):
        add_experiment_tracking(recipe, "tensorboard", client_side=True)


def test_writers_refuse_values_no_tracker_can_write_before_sending() -> None:
    # checked in the script, before a session is needed: no job runs here
    with pytest.raises(TypeError, match="loss must be a number, got str"):
        SummaryWriter().add_scalar("loss", "low")
    with pytest.raises(TypeError, match="metrics/acc must be a number"):
        WandBWriter().log({"acc": [1, 2]})
    with pytest.raises(ValueError, match="artifact_file_path must stay in the run"):
        MLflowWriter().log_text("x", "../escape.txt")
    with pytest.raises(TypeError, match="the step must be an int"):
        MLflowWriter().log_metric("loss", 1.0, step=1.5)  # type: ignore[arg-type]


# -- extras: each library only when used, a missing one named --------------------------------


IMPORT_LIGHT = """
import sys
import ember.client, ember.client.tracking, ember.recipes
heavy = sorted({m.split('.')[0] for m in sys.modules} & {'mlflow', 'wandb', 'tensorboardX'})
print(heavy)
"""


def test_the_client_api_and_recipes_import_no_tracking_library() -> None:
    out = subprocess.run(
        [sys.executable, "-c", IMPORT_LIGHT], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize(
    ("tracking_type", "module", "extra"),
    [("mlflow", "mlflow", "mlflow"), ("wandb", "wandb", "wandb"),
     ("tensorboard", "tensorboardX", "tracking")],
)
def test_a_job_tracking_with_a_missing_library_fails_as_it_starts_naming_the_extra(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    tracking_type: str,
    module: str,
    extra: str,
) -> None:
    from ember.errors import MissingDependencyError

    for name in [m for m in sys.modules if m == module or m.startswith(module + ".")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, module, None)  # import raises ImportError
    if module == "mlflow":
        monkeypatch.setitem(sys.modules, "mlflow.tracking", None)
    recipe = add_experiment_tracking(numpy_recipe(), tracking_type)
    with pytest.raises(MissingDependencyError) as caught:
        run_sim(recipe, tmp_path)
    assert f"pip install 'ember-core[{extra}]'" in str(caught.value)
    assert caught.value.name == module
