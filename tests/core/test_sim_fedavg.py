"""FedAvg in SimEnv: FULL and DIFF, weights, early stopping, best model, cross-site eval."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ember.recipes import add_cross_site_evaluation, add_experiment_tracking
from support.sim import INITIAL, SCRIPTS, global_model, numpy_recipe, round_records, run_sim

COMPLETED = "FINISHED:COMPLETED"


def test_full_params_average_and_result_workspace(tmp_path: Path) -> None:
    run = run_sim(numpy_recipe(train_args='--metrics "[0.5, 0.7, 0.6]"'), tmp_path)
    assert run.get_status() == COMPLETED, run.get_message()
    result = Path(run.get_result())
    assert result == tmp_path / "ws" / "test-job"
    np.testing.assert_array_equal(global_model(result), INITIAL + 3)
    assert global_model(result).dtype == np.float32
    records = round_records(result)
    assert [r["round"] for r in records] == [0, 1, 2]
    assert [r["sites"] for r in records] == [["site-1", "site-2"]] * 3
    assert [r["metrics"]["accuracy"] for r in records] == pytest.approx([0.5, 0.7, 0.6])
    summary = json.loads((result / "server" / "metrics_summary.json").read_text())
    assert summary["rounds_completed"] == 3
    assert summary["best"] == {"round": 1, "value": pytest.approx(0.7)}
    # accuracy 0.7 was measured on the model the sites received in round 1
    np.testing.assert_array_equal(global_model(result, "best_model"), INITIAL + 1)
    for node in ("server", "site-1", "site-2"):
        assert (result / node / "log.txt").stat().st_size > 0
        first = (result / node / "log.jsonl").read_text().splitlines()[0]
        assert json.loads(first)["level"] == "INFO"
    # rendered in the background after the job: the run says when it is there
    assert run.wait_for_plot(60) == result / "server" / "round_metrics.png"
    assert (result / "server" / "round_metrics.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("script_args", ["", "--send-diff"])
def test_diff_transfer(tmp_path: Path, script_args: str) -> None:
    recipe = numpy_recipe(params_transfer_type="DIFF", train_args=script_args)
    run = run_sim(recipe, tmp_path)
    assert run.get_status() == COMPLETED, run.get_message()
    np.testing.assert_array_equal(global_model(run.get_result()), INITIAL + 3)


def test_site_weights_and_num_steps_weight_the_average(tmp_path: Path) -> None:
    args = """--add '{"site-1": 1, "site-2": 5}' --steps '{"site-1": 2, "site-2": 1}'"""
    recipe = numpy_recipe(
        num_rounds=2, train_args=args, aggregation_weights={"site-1": 1.5, "site-2": 1.0}
    )
    run = run_sim(recipe, tmp_path)
    assert run.get_status() == COMPLETED, run.get_message()
    # weights 1.5 * 2 = 3 and 1.0 * 1 = 1: each round adds (3 * 1 + 1 * 5) / 4 = 2
    np.testing.assert_array_equal(global_model(run.get_result()), INITIAL + 4)


def test_early_stopping_on_stop_cond(tmp_path: Path) -> None:
    recipe = numpy_recipe(
        num_rounds=5,
        stop_cond="accuracy >= 0.8",
        train_args='--metrics "[0.1, 0.85, 0.9, 0.95, 0.99]"',
    )
    run = run_sim(recipe, tmp_path)
    assert run.get_status() == COMPLETED, run.get_message()
    assert [r["round"] for r in round_records(run.get_result())] == [0, 1]
    summary = json.loads((Path(run.get_result()) / "server" / "metrics_summary.json").read_text())
    assert summary["stopped_early"] == "stop_cond 'accuracy >= 0.8' met in round 1"
    np.testing.assert_array_equal(global_model(run.get_result()), INITIAL + 2)


def test_patience_stops_when_key_metric_stalls(tmp_path: Path) -> None:
    recipe = numpy_recipe(
        num_rounds=6,
        patience=2,
        key_metric="accuracy",
        train_args='--metrics "[0.5, 0.9, 0.8, 0.7, 0.95, 0.99]"',
    )
    run = run_sim(recipe, tmp_path)
    assert run.get_status() == COMPLETED, run.get_message()
    assert [r["round"] for r in round_records(run.get_result())] == [0, 1, 2, 3]
    np.testing.assert_array_equal(global_model(run.get_result(), "best_model"), INITIAL + 1)


def test_min_key_metric_mode(tmp_path: Path) -> None:
    recipe = numpy_recipe(
        key_metric="loss", key_metric_mode="min", train_args='--metrics "[0.5, 0.2, 0.3]"'
    )
    run = run_sim(recipe, tmp_path)
    assert run.get_status() == COMPLETED
    # the script reports "accuracy", not "loss": no best model is chosen
    assert not (Path(run.get_result()) / "server" / "models" / "best_model.npz").exists()


def test_exclude_vars_keep_the_global_value(tmp_path: Path) -> None:
    model = {"weights": np.zeros(3, np.float32), "frozen_bn": np.ones(2, np.float32)}
    recipe = numpy_recipe("inplace_client.py", model=model, exclude_vars="frozen.*")
    run = run_sim(recipe, tmp_path)
    assert run.get_status() == COMPLETED, run.get_message()
    with np.load(Path(run.get_result()) / "server" / "models" / "global_model.npz") as data:
        np.testing.assert_array_equal(data["weights"], np.full(3, 3, np.float32))
        np.testing.assert_array_equal(data["frozen_bn"], np.ones(2, np.float32))


def test_scripts_may_update_received_arrays_in_place(tmp_path: Path) -> None:
    run = run_sim(numpy_recipe("inplace_client.py"), tmp_path)
    assert run.get_status() == COMPLETED, run.get_message()
    np.testing.assert_array_equal(global_model(run.get_result()), INITIAL + 3)


def test_cross_site_evaluation(tmp_path: Path) -> None:
    recipe = add_cross_site_evaluation(numpy_recipe(num_rounds=1))
    run = run_sim(recipe, tmp_path, num_clients=3)
    assert run.get_status() == COMPLETED, run.get_message()
    path = Path(run.get_result()) / "server" / "cross_site_eval" / "cross_val_results.json"
    results = json.loads(path.read_text())
    owners = {"SRV_global_model", "site-1", "site-2", "site-3"}
    assert set(results) == {"site-1", "site-2", "site-3"}
    for validator in results.values():
        assert set(validator) == owners
        # each local model is INITIAL + 1; the mean of INITIAL is 2.5
        assert validator["site-2"]["accuracy"] == pytest.approx(3.5)
        assert validator["SRV_global_model"]["accuracy"] == pytest.approx(3.5)


def _read_scalars(event_file: Path) -> list[tuple[str, float, int]]:
    """Parse a TensorBoard event file (TFRecord framing + Event protos)."""
    import struct

    from tensorboardX.proto import event_pb2

    data = event_file.read_bytes()
    out, offset = [], 0
    while offset < len(data):
        (length,) = struct.unpack_from("<Q", data, offset)
        event = event_pb2.Event.FromString(data[offset + 12 : offset + 12 + length])
        offset += 12 + length + 4
        out += [(v.tag, v.simple_value, event.step) for v in event.summary.value]
    return out


def test_experiment_tracking_writes_tensorboard_events(tmp_path: Path) -> None:

    recipe = numpy_recipe(
        train_script=str(
            SCRIPTS.parent.parent.parent.parent / "examples" / "hello-numpy" / "client.py"
        )
    )
    add_experiment_tracking(recipe)
    run = run_sim(recipe, tmp_path)
    assert run.get_status() == COMPLETED, run.get_message()
    files = list((Path(run.get_result()) / "server" / "tb_events" / "site-2").glob("events.*"))
    assert len(files) == 1
    scalars = _read_scalars(files[0])
    # the example logs the mean of the received weights: 2.5, 3.5, 4.5 in rounds 0-2
    assert scalars == [("weight_mean", 2.5, 0), ("weight_mean", 3.5, 1), ("weight_mean", 4.5, 2)]


def test_subprocess_clients_match_in_process(tmp_path: Path) -> None:
    args = "--noise"
    inproc = run_sim(numpy_recipe(train_args=args), tmp_path / "a")
    subproc = run_sim(numpy_recipe(train_args=args, launch_external_process=True), tmp_path / "b")
    assert subproc.get_status() == COMPLETED, subproc.get_message()
    assert (
        global_model(inproc.get_result()).tobytes() == global_model(subproc.get_result()).tobytes()
    )
    log = (Path(subproc.get_result()) / "site-1" / "log.txt").read_text()
    assert "exited with code 0" in log


def test_runs_are_bit_identical(tmp_path: Path) -> None:
    results = []
    for i in range(3):
        run = run_sim(
            numpy_recipe(train_args="--noise", num_rounds=4), tmp_path / str(i), num_clients=8
        )
        assert run.get_status() == COMPLETED, run.get_message()
        results.append(global_model(run.get_result()).tobytes())
    assert results[0] == results[1] == results[2]


def test_num_threads_limits_concurrency_and_completes(tmp_path: Path) -> None:
    run = run_sim(numpy_recipe(), tmp_path, num_clients=5, num_threads=2)
    assert run.get_status() == COMPLETED, run.get_message()
    np.testing.assert_array_equal(global_model(run.get_result()), INITIAL + 3)


def test_sites_waiting_for_a_slot_pull_their_model_once_they_have_it(tmp_path: Path) -> None:
    # every array streamed: a waiting site holds references, pulled once it may work
    recipe = numpy_recipe(train_args="--noise")
    recipe.set_config("streaming.min_tensor_bytes", 1)
    capped = run_sim(recipe, tmp_path / "capped", num_clients=4, num_threads=1)
    assert capped.get_status() == COMPLETED, capped.get_message()
    free = run_sim(numpy_recipe(train_args="--noise"), tmp_path / "free", num_clients=4)
    assert global_model(capped.get_result()).tobytes() == global_model(free.get_result()).tobytes()


def test_export_then_ember_simulate(tmp_path: Path) -> None:
    job_dir = numpy_recipe().export(tmp_path / "exported")
    assert json.loads((job_dir / "job.json").read_text())["name"] == "test-job"
    assert (job_dir / "app" / "np_client.py").is_file()
    assert (job_dir / "app" / "initial_model.npz").is_file()
    ember = Path(sys.executable).with_name("ember")
    done = subprocess.run(
        [
            str(ember),
            "simulate",
            str(job_dir),
            "-n",
            "2",
            "-w",
            str(tmp_path / "ws"),
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout)
    assert outcome["status"] == COMPLETED
    np.testing.assert_array_equal(global_model(outcome["result"]), INITIAL + 3)


def test_job_py_export_flag(tmp_path: Path) -> None:
    job_py = Path(__file__).parents[2] / "examples" / "hello-numpy" / "job.py"
    done = subprocess.run(
        [sys.executable, str(job_py), "--export", "--export-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "status: EXPORTED" in done.stdout
    assert (tmp_path / "hello-numpy" / "job.json").is_file()


def test_hello_numpy_example_runs(tmp_path: Path) -> None:
    job_py = Path(__file__).parents[2] / "examples" / "hello-numpy" / "job.py"
    done = subprocess.run(
        [sys.executable, str(job_py), "--workspace-root", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "status: FINISHED:COMPLETED" in done.stdout
    final = np.arange(1, 10, dtype=np.float32).reshape(3, 3) + 3
    np.testing.assert_array_equal(global_model(tmp_path / "hello-numpy"), final)


def test_a_workspace_inside_the_script_folder_is_not_bundled(tmp_path: Path) -> None:
    # python job.py --workspace_root ./ws, next to the training script
    app = tmp_path / "app"
    app.mkdir()
    (app / "np_client.py").write_text((SCRIPTS / "np_client.py").read_text())
    (app / "ws" / "old-job").mkdir(parents=True)
    (app / "ws" / "old-job" / "big.bin").write_bytes(b"x" * 1000)
    recipe = numpy_recipe(train_script=str(app / "np_client.py"), num_rounds=1)
    run = run_sim(recipe, app)  # workspace = app/ws
    assert run.get_status() == "FINISHED:COMPLETED", run.get_message()
    bundled = Path(run.get_result()) / "job" / "app"
    assert (bundled / "np_client.py").is_file()
    assert not (bundled / "ws").exists()
