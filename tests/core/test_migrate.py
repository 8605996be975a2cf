"""``ember migrate-nvflare``: NVFlare 2.7 hello-numpy/hello-pt style jobs rewritten, then run."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from click.testing import CliRunner

from ember.cli.main import cli
from ember.client import NUMPY_KEY

JOBS = Path(__file__).parent / "fixtures" / "nvflare_jobs"
EMBER = Path(sys.executable).parent / "ember"
INITIAL = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]], dtype=np.float32)


def copy_job(name: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(JOBS / name, tmp_path / name))


def migrate(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["migrate-nvflare", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output


def run_job(job: Path, tmp_path: Path, *args: str) -> Path:
    """``python job.py`` in the job folder; returns the result folder it prints."""
    env = {**os.environ, "NVF_TRACE": str(tmp_path / "trace.jsonl")}
    proc = subprocess.run(
        [sys.executable, "job.py", "--workspace_root", str(tmp_path / "ws"), *args],
        cwd=job,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Job Status is: FINISHED:COMPLETED" in proc.stdout, proc.stdout
    line = next(x for x in proc.stdout.splitlines() if x.startswith("Result can be found in :"))
    return Path(line.split(":", 1)[1].strip())


def global_model(result: Path) -> np.ndarray:
    with np.load(result / "server" / "models" / "global_model.npz") as data:
        return data[NUMPY_KEY]


def assert_no_nvflare(job: Path) -> None:
    for path in job.glob("*.py"):
        source = path.read_text()
        assert not re.search(r"^\s*(import|from) nvflare", source, re.MULTILINE), path
        assert "NPConstants" not in source


def test_full_transfer_job_migrates_and_runs(tmp_path: Path) -> None:
    job = copy_job("numpy_full", tmp_path)
    code, out = migrate(str(job))
    assert code == 0, out
    expected = [
        "client.py:8 import nvflare.client as flare -> import ember.client as flare",
        "client.py:9 from nvflare.app_common.np.constants import NPConstants"
        " -> from ember.client import NUMPY_KEY",
        "client.py:10 from nvflare.client.tracking import SummaryWriter"
        " -> from ember.client.tracking import SummaryWriter",
        "NPConstants.NUMPY_KEY -> NUMPY_KEY",
        "job.py:6 from nvflare.app_common.np.recipes import NumpyFedAvgRecipe"
        " -> from ember.recipes import NumpyFedAvgRecipe",
        "from nvflare.recipe import SimEnv, add_experiment_tracking -> from ember import SimEnv;"
        " from ember.recipes import add_experiment_tracking",
        "initial_model= -> model=",
    ]
    for text in expected:
        assert text in out, out
    assert "0 problem(s)" in out
    assert_no_nvflare(job)
    client = (job / "client.py").read_text()
    assert "# metrics go to the server's TensorBoard" in client
    assert "    # Initialize FLARE\n    flare.init()" in client
    assert "model=np.array" in (job / "job.py").read_text()
    assert "# The model starts at" in (job / "job.py").read_text()

    result = run_job(job, tmp_path, "--num_rounds", "3")
    np.testing.assert_allclose(global_model(result), INITIAL + 3)
    records = [json.loads(x) for x in (tmp_path / "trace.jsonl").read_text().splitlines()]
    assert {tuple(r["system_info"]) for r in records} == {("job_id", "site_name")}
    assert sorted({r["round"] for r in records}) == [0, 1, 2]
    assert (result / "server" / "tb_events").is_dir()


def test_diff_transfer_job_through_installed_script(tmp_path: Path) -> None:
    job = copy_job("numpy_diff", tmp_path)
    proc = subprocess.run(
        [str(EMBER), "migrate-nvflare", str(job)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (
        "job.py:7 from nvflare.client.config import TransferType"
        " -> from ember.client import TransferType" in proc.stdout
    )
    assert "from nvflare.app_common.np.recipes.fedavg import NumpyFedAvgRecipe" in proc.stdout
    assert_no_nvflare(job)
    assert (
        "params_transfer_type=TransferType.DIFF,  # send model differences"
        in (job / "job.py").read_text()
    )
    result = run_job(job, tmp_path, "--num_rounds", "2")
    np.testing.assert_allclose(global_model(result), INITIAL + 2)


def test_cross_site_eval_job(tmp_path: Path) -> None:
    job = copy_job("numpy_cse", tmp_path)
    code, out = migrate(str(job), "--format", "json")
    assert code == 0, out
    report = json.loads(out)
    assert report["ok"] is True
    changes = {
        (Path(f["path"]).name, c["old"], c["new"]) for f in report["files"] for c in f["changes"]
    }
    assert ("client.py", "from nvflare.apis.fl_constant import FLMetaKey",
            "from ember.client import MetaKey") in changes  # fmt: skip
    assert ("client.py", "FLMetaKey.NUM_STEPS_CURRENT_ROUND",
            "MetaKey.NUM_STEPS_CURRENT_ROUND") in changes  # fmt: skip
    assert_no_nvflare(job)
    result = run_job(job, tmp_path)
    np.testing.assert_allclose(global_model(result), INITIAL + 2)
    assert (result / "server" / "cross_site_eval" / "cross_val_results.json").is_file()


FEDJOB = "nvflare.job_config.api"  # a module whose FedJob Ember has no equivalent of


def test_unmappable_name_is_reported_and_fails(tmp_path: Path) -> None:
    script = tmp_path / "job.py"
    source = f"from {FEDJOB} import FedJob\nfrom nvflare.recipe import SimEnv\n\njob = FedJob()\n"
    script.write_text(source)
    code, out = migrate(str(script))
    assert code == 1
    assert f"job.py:1 unmapped: {FEDJOB}.FedJob: Ember has no FedJob API" in out
    rewritten = script.read_text()
    assert "from ember import SimEnv" in rewritten
    assert f"from {FEDJOB} import FedJob" in rewritten  # left for the user to port


def test_the_he_recipe_and_the_privacy_filters_map_to_ember_pt_and_ember_filters(
    tmp_path: Path,
) -> None:
    script = tmp_path / "job.py"
    script.write_text(
        "from nvflare.app_opt.pt.recipes.fedavg_he import FedAvgRecipeWithHE\n"
        "from nvflare.app_common.filters import ExcludeVars, SVTPrivacy\n"
        "from nvflare.app_common.filters.percentile_privacy import PercentilePrivacy\n\n"
        "recipe = FedAvgRecipeWithHE(name='he', min_clients=2, num_rounds=1, train_script='c.py')\n"
        "recipe.add_client_output_filter(ExcludeVars(['fc.bias']), tasks=['train'])\n"
        "recipe.add_client_output_filter(PercentilePrivacy(percentile=10, gamma=0.01))\n"
        "recipe.add_client_output_filter(SVTPrivacy(fraction=0.1))\n"
    )
    code, out = migrate(str(script))
    assert code == 0, out
    rewritten = script.read_text()
    assert "from ember_pt.recipes import FedAvgRecipeWithHE" in rewritten
    assert "from ember.filters import ExcludeVars, SVTPrivacy" in rewritten
    assert "from ember.filters import PercentilePrivacy" in rewritten
    assert "nvflare" not in rewritten
    assert "recipe.add_client_output_filter(ExcludeVars(['fc.bias']), tasks=['train'])" in rewritten


@pytest.mark.parametrize(
    ("source", "name", "reason"),
    [
        ("import nvflare.client as flare\nflare.bogus()\n", "flare.bogus", "has no bogus"),
        (
            "from nvflare.app_common.np.recipes import NumpyFedAvgRecipe\n"
            "NumpyFedAvgRecipe(min_clients=2, train_script='c.py', analytics_receiver=None)\n",
            "NumpyFedAvgRecipe(analytics_receiver=...)",
            "has no parameter 'analytics_receiver'",
        ),
    ],
)
def test_other_unmapped(tmp_path: Path, source: str, name: str, reason: str) -> None:
    script = tmp_path / "s.py"
    script.write_text(source)
    code, out = migrate(str(script))
    assert code == 1
    line = next(x for x in out.splitlines() if "unmapped:" in x)
    assert name in line
    assert reason in line


def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    job = copy_job("numpy_full", tmp_path)
    before = {p.name: p.read_text() for p in job.glob("*.py")}
    code, out = migrate(str(job), "--dry-run")
    assert code == 0
    assert "initial_model= -> model=" in out
    assert "would change 2 of 2 file(s)" in out
    assert {p.name: p.read_text() for p in job.glob("*.py")} == before


def test_syntax_error_is_reported(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import nvflare.client as flare\ndef broken(:\n")
    code, out = migrate(str(tmp_path))
    assert code == 1
    assert "bad.py: error: syntax error at line 2" in out
    assert "Traceback" not in out
    assert bad.read_text().startswith("import nvflare.client")


def test_plain_import_and_aliases(tmp_path: Path) -> None:
    script = tmp_path / "s.py"
    script.write_text(
        "import nvflare.client\n"
        "from nvflare.client import FLModel as M  # the model\n"
        "nvflare.client.init()\n"
        "m = M(params_type=nvflare.client.ParamsType.FULL)\n"
    )
    code, out = migrate(str(script))
    assert code == 0, out
    assert script.read_text() == (
        "import ember.client\n"
        "from ember.client import FLModel as M  # the model\n"
        "ember.client.init()\n"
        "m = M(params_type=ember.client.ParamsType.FULL)\n"
    )


def test_comments_inside_parenthesized_imports_survive(tmp_path: Path) -> None:
    script = tmp_path / "client.py"
    script.write_text(
        "from nvflare.client import (\n"
        "    FLModel,  # the model\n"
        "    # a comment line\n"
        "    send,\n"
        ")\n"
        "\n"
        "\n"
        "def main():\n"
        "    from nvflare.recipe import (  # the recipe API\n"
        "        # where it runs\n"
        "        SimEnv,  # in one process\n"
        "        # tracking\n"
        "        add_experiment_tracking  # TensorBoard\n"
        "        # nothing else\n"
        "    )  # end\n"
        "    from nvflare import (\n"
        "        # the Client API\n"
        "        client as flare,  # as usual\n"
        "    )\n"
        "    send(FLModel())\n"
        "    return SimEnv, add_experiment_tracking, flare\n"
    )
    code, out = migrate(str(script))
    assert code == 0, out
    assert "client.py:1 from nvflare.client import FLModel, send" in out
    assert (
        "client.py:9 from nvflare.recipe import SimEnv, add_experiment_tracking -> "
        "from ember import SimEnv; from ember.recipes import add_experiment_tracking" in out
    )
    assert "client.py:16 from nvflare import client as flare -> import ember.client as flare" in out
    assert script.read_text() == (
        "from ember.client import (\n"
        "    FLModel,  # the model\n"
        "    # a comment line\n"
        "    send,\n"
        ")\n"
        "\n"
        "\n"
        "def main():\n"
        "    from ember import (  # the recipe API\n"
        "        # where it runs\n"
        "        SimEnv,  # in one process\n"
        "    )  # end\n"
        "    from ember.recipes import (\n"
        "        # tracking\n"
        "        add_experiment_tracking,  # TensorBoard\n"
        "        # nothing else\n"
        "    )\n"
        "    # the Client API\n"
        "    import ember.client as flare  # as usual\n"
        "    send(FLModel())\n"
        "    return SimEnv, add_experiment_tracking, flare\n"
    )


def test_kept_names_keep_their_comments(tmp_path: Path) -> None:
    script = tmp_path / "job.py"
    script.write_text(
        "from nvflare.client import (\n    IPCAgent,  # port later\n    FLModel,\n)\n"
    )
    code, out = migrate(str(script))
    assert code == 1
    assert (
        "job.py:1 unmapped: nvflare.client.IPCAgent: "
        "Ember's external processes need no IPC agent" in out
    )
    assert script.read_text() == (
        "from ember.client import (\n"
        "    FLModel,\n"
        ")\n"
        "from nvflare.client import (\n"
        "    IPCAgent,  # port later\n"
        ")\n"
    )


def load_module(path: Path) -> ModuleType:
    """Import a fixture's helper file (model.py, data.py) under a name no other test uses."""
    spec = importlib.util.spec_from_file_location(f"_nvflare_fixture_{path.stem}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_scalars(event_file: Path) -> list[tuple[str, float, int]]:
    """Parse a TensorBoard event file (TFRecord framing + Event protos)."""
    from tensorboardX.proto import event_pb2

    data = event_file.read_bytes()
    out, offset = [], 0
    while offset < len(data):
        (length,) = struct.unpack_from("<Q", data, offset)
        event = event_pb2.Event.FromString(data[offset + 12 : offset + 12 + length])
        offset += 12 + length + 4
        out += [(v.tag, v.simple_value, event.step) for v in event.summary.value]
    return out


def sgd_round(
    w: np.ndarray, b: np.ndarray, x: np.ndarray, y: np.ndarray, lr: float, batch: int
) -> tuple[np.ndarray, np.ndarray, float, float]:
    """One epoch of the pt_fedavg client by hand (float64): plain SGD on MSE, batches in order.

    Returns the new weight and bias, the MSE of the received model and the mean batch loss.
    """
    loss_before = float(np.mean((x @ w.T + b - y) ** 2))
    losses = []
    for start in range(0, len(x), batch):
        xb, yb = x[start : start + batch], y[start : start + batch]
        r = xb @ w.T + b - yb  # (n, 1)
        losses.append(float(np.mean(r**2)))
        w = w - lr * 2 / len(xb) * (r.T @ xb)
        b = b - lr * 2 / len(xb) * r.sum(axis=0)
    return w, b, loss_before, float(np.mean(losses))


@pytest.mark.parametrize("external", [False, True], ids=["in-process", "external-process"])
def test_pytorch_hello_pt_job(tmp_path: Path, external: bool) -> None:
    """NVFlare hello-pt style: FedAvgRecipe(model=nn.Module), load_state_dict, SummaryWriter."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("ember_pt")
    from safetensors.numpy import load_file

    job = copy_job("pt_fedavg", tmp_path)
    code, out = migrate(str(job))
    assert code == 0, out
    for text in [
        "client.py:7 import nvflare.client as flare -> import ember.client as flare",
        "client.py:11 from nvflare.client.tracking import SummaryWriter"
        " -> from ember.client.tracking import SummaryWriter",
        "job.py:7 from nvflare.app_opt.pt.recipes.fedavg import FedAvgRecipe"
        " -> from ember_pt.recipes import FedAvgRecipe",
        "job.py:8 from nvflare.recipe import SimEnv, add_experiment_tracking"
        " -> from ember import SimEnv; from ember.recipes import add_experiment_tracking",
        "changed 2 of 4 file(s); 0 problem(s)",
    ]:
        assert text in out, out
    assert_no_nvflare(job)
    client = (job / "client.py").read_text()
    # NVFlare's PT client receives torch tensors; so does Ember's: the script is not touched
    assert "    model.load_state_dict(input_model.params)\n" in client
    assert "params=model.cpu().state_dict()," in client
    assert "import torch\nfrom data import site_data\n" in client

    args = ["--launch_external_process"] if external else []
    result = run_job(job, tmp_path, *args)

    # The hand computation: 2 rounds of FedAvg over site-1 (16 samples: 1 step) and site-2
    # (32 samples: 2 steps), averaged with weights 1 and 2 (NUM_STEPS_CURRENT_ROUND).
    torch.manual_seed(0)  # as job.py does before building the model
    initial = load_module(job / "model.py").LinearRegression().state_dict()
    w = initial["linear.weight"].double().numpy()
    b = initial["linear.bias"].double().numpy()
    data = load_module(job / "data.py")
    sites = {s: [t.double().numpy() for t in data.site_data(s)] for s in ("site-1", "site-2")}
    steps = {"site-1": 1, "site-2": 2}
    train_loss: dict[str, list[float]] = {s: [] for s in sites}
    loss_before: dict[str, list[float]] = {s: [] for s in sites}
    for _ in range(2):
        new = {s: sgd_round(w, b, x, y, lr=0.1, batch=16) for s, (x, y) in sites.items()}
        for s, (_, _, before, mean_loss) in new.items():
            loss_before[s].append(before)
            train_loss[s].append(mean_loss)
        w = sum(steps[s] * new[s][0] for s in sites) / 3
        b = sum(steps[s] * new[s][1] for s in sites) / 3

    final = load_file(str(result / "server" / "models" / "global_model.safetensors"))
    assert set(final) == {"linear.weight", "linear.bias"}
    np.testing.assert_allclose(final["linear.weight"], w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(final["linear.bias"], b, rtol=1e-5, atol=1e-6)
    assert not np.allclose(w, initial["linear.weight"].numpy(), atol=1e-2)  # it did train

    # the SummaryWriter's scalars reached the server's TensorBoard events, one per round
    for site in sites:
        files = list((result / "server" / "tb_events" / site).glob("events.*"))
        assert len(files) == 1, files
        scalars = read_scalars(files[0])
        assert [(tag, step) for tag, _, step in scalars] == [("train_loss", 0), ("train_loss", 1)]
        np.testing.assert_allclose([v for _, v, _ in scalars], train_loss[site], rtol=1e-5)
    # the metrics each site sent (MSE of the model it received), per round
    rounds = [
        json.loads(x) for x in (result / "server" / "round_metrics.jsonl").read_text().splitlines()
    ]
    assert [r["round"] for r in rounds] == [0, 1]
    for rnd, record in enumerate(rounds):
        for site in sites:
            got = record["site_metrics"][site]["loss"]
            assert got == pytest.approx(loss_before[site][rnd], rel=1e-5)

    # what the script saw: NVFlare's system_info keys, rounds numbered from 0, torch tensors
    records = [json.loads(x) for x in (tmp_path / "trace.jsonl").read_text().splitlines()]
    assert len(records) == 4
    assert {tuple(r["system_info"]) for r in records} == {("job_id", "site_name")}
    assert sorted(r["round"] for r in records) == [0, 0, 1, 1]
    tensor = f"{torch.Tensor.__module__}.{torch.Tensor.__name__}"
    assert {tuple(map(tuple, r["params"])) for r in records} == {
        (("linear.bias", tensor), ("linear.weight", tensor))
    }


def test_every_mapped_target_exists() -> None:
    """Each Ember name the migrator writes can be imported (ember-pt is installed here)."""
    from ember.migrate.mapping import NAMES, Unmapped, module_of

    for nvflare_name, target in NAMES.items():
        if isinstance(target, Unmapped):
            continue
        module_name, path = module_of(target)
        value: object = importlib.import_module(module_name)
        for attr in path.split(".") if path else []:
            assert hasattr(value, attr), f"{nvflare_name} -> {target}: no {attr}"
            value = getattr(value, attr)


def test_poc_job_migrates_and_runs(tmp_path: Path) -> None:
    """A hello-numpy job on NVFlare's PocEnv: migrated, it runs on Ember's PoC system."""
    from ember.envs.poc import stop_workspace
    from ember.system.poc import PocError, PocWorkspace

    job = copy_job("numpy_poc", tmp_path)
    code, out = migrate(str(job))
    assert code == 0, out
    for text in [
        "job.py:7 from nvflare.recipe import PocEnv -> from ember import PocEnv",
        "job.py:20 initial_model= -> model=",
        "changed 2 of 2 file(s); 0 problem(s)",
    ]:
        assert text in out, out
    assert_no_nvflare(job)
    assert "env = PocEnv(num_clients=args.n_clients)" in (job / "job.py").read_text()

    # NVFlare's PocEnv takes no workspace (nor does the job): point Ember's default at tmp_path
    ws = tmp_path / "poc"
    code = (
        "import runpy, sys; from pathlib import Path; import ember.envs.poc as poc; "
        "poc.DEFAULT_WORKSPACE = Path(sys.argv.pop(1)); "
        "runpy.run_path('job.py', run_name='__main__')"
    )
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code, str(ws)],
            cwd=job,
            capture_output=True,
            text=True,
            timeout=240,
        )
    finally:
        with contextlib.suppress(PocError):  # none if the job failed before preparing it
            stop_workspace(PocWorkspace.load(ws))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Job Status is: FINISHED:COMPLETED" in proc.stdout, proc.stdout
    line = next(x for x in proc.stdout.splitlines() if x.startswith("Result can be found in :"))
    result = Path(line.split(":", 1)[1].strip())
    assert result.is_relative_to(ws.resolve())
    np.testing.assert_allclose(global_model(result), INITIAL + 2)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            "from nvflare.recipe import ProdEnv\n"
            "env = ProdEnv(startup_kit_dir='/kits/admin@nvidia.com', login_timeout=5.0)\n",
            "from ember import ProdEnv\n"
            "env = ProdEnv(startup_kit_location='/kits/admin@nvidia.com', login_timeout=5.0)\n",
        ),
        (
            "from nvflare.recipe.prod_env import ProdEnv\n"
            "env = ProdEnv(startup_kit_location='/k', username='admin@nvidia.com')\n",
            "from ember import ProdEnv\n"
            "env = ProdEnv(startup_kit_location='/k', username='admin@nvidia.com')\n",
        ),
        (
            "from nvflare.recipe.poc_env import PocEnv\nenv = PocEnv(num_clients=3)\n",
            "from ember import PocEnv\nenv = PocEnv(num_clients=3)\n",
        ),
        (
            "from nvflare.app_opt.pt.recipes.fedeval import FedEvalRecipe\n"
            "r = FedEvalRecipe(initial_model=m, eval_ckpt='m.pt', min_clients=2,"
            " eval_script='e.py')\n",
            "from ember_pt.recipes import FedEvalRecipe\n"
            "r = FedEvalRecipe(model=m, initial_ckpt='m.pt', min_clients=2, eval_script='e.py')\n",
        ),
        (
            "from nvflare.recipe.cyclic import CyclicRecipe\n"
            "r = CyclicRecipe(initial_model=m, min_clients=2, train_script='c.py')\n",
            "from ember.recipes import CyclicRecipe\n"
            "r = CyclicRecipe(model=m, min_clients=2, train_script='c.py')\n",
        ),
        (
            "from nvflare.recipe.fedavg import FedAvgRecipe\n"
            "r = FedAvgRecipe(initial_model=m, min_clients=2, train_script='c.py')\n",
            "from ember.recipes import FedAvgRecipe\n"
            "r = FedAvgRecipe(model=m, min_clients=2, train_script='c.py')\n",
        ),
        (
            "from nvflare.app_opt.pt.recipes import FedProxRecipe, ScaffoldRecipe\n"
            "a = FedProxRecipe(initial_model=m, min_clients=2, train_script='c.py')\n"
            "b = ScaffoldRecipe(initial_model=m, min_clients=2, train_script='c.py')\n",
            "from ember_pt.recipes import FedProxRecipe, ScaffoldRecipe\n"
            "a = FedProxRecipe(model=m, min_clients=2, train_script='c.py')\n"
            "b = ScaffoldRecipe(model=m, min_clients=2, train_script='c.py')\n",
        ),
        (
            "from nvflare.app_opt.sklearn.recipes import SklearnFedAvgRecipe, SVMFedAvgRecipe\n"
            "from nvflare.app_opt.sklearn.recipes.kmeans import KMeansFedAvgRecipe\n"
            "from nvflare.app_opt.sklearn import KMeansFedAvgRecipe as K\n",
            "from ember_sklearn.recipes import SklearnFedAvgRecipe, SVMFedAvgRecipe\n"
            "from ember_sklearn.recipes import KMeansFedAvgRecipe\n"
            "from ember_sklearn.recipes import KMeansFedAvgRecipe as K\n",
        ),
        (
            "from nvflare.recipe.fedstats import FedStatsRecipe\n"
            "from nvflare.app_common.abstract.statistics_spec import Statistics, Feature\n",
            "from ember.recipes import FedStatsRecipe\n"
            "from ember.statistics import Statistics, Feature\n",
        ),
    ],
    ids=["prod-kit-dir", "prod", "poc", "fedeval", "cyclic", "fedavg", "pt", "sklearn", "stats"],
)
def test_current_mappings(source: str, expected: str) -> None:
    from ember.migrate import migrate_source

    result = migrate_source(source)
    assert result.problems == []
    assert result.code == expected


def test_nvflare_only_env_arguments_are_reported() -> None:
    from ember.migrate import migrate_source

    result = migrate_source(
        "from nvflare.recipe import PocEnv\nenv = PocEnv(num_clients=2, gpu_ids=[0], use_he=True)\n"
    )
    assert [(p.name, p.reason) for p in result.problems] == [
        ("PocEnv(gpu_ids=...)", "ember.PocEnv has no parameter 'gpu_ids'"),
        ("PocEnv(use_he=...)", "ember.PocEnv has no parameter 'use_he'"),
    ]


def test_every_keyword_rename_lands_on_a_parameter() -> None:
    """Each KEYWORDS target takes the new names (ember-pt, -tf, -sklearn installed here)."""
    import inspect

    from ember.migrate.mapping import KEYWORDS, NAMES, Unmapped

    targets = {t.replace(":", ".") for t in NAMES.values() if not isinstance(t, Unmapped)}
    for target, renames in KEYWORDS.items():
        assert target in targets, f"{target} is no target of NAMES"
        module, _, name = target.rpartition(".")
        try:
            obj = getattr(importlib.import_module(module), name)
        except ImportError:
            continue
        params = inspect.signature(obj).parameters
        for old, new in renames.items():
            # (the old name may live on as a deprecated alias: the rename still applies)
            assert new in params, f"{target}: {old}= -> {new}=, which it does not take"


def test_config_job_components_are_reported(tmp_path: Path) -> None:
    job = Path(shutil.copytree(JOBS / "config_job", tmp_path / "config_job"))
    before = {p: p.read_text() for p in job.rglob("*") if p.is_file()}
    code, out = migrate(str(job))
    assert code == 1, out
    server = "app/config/config_fed_server.json"
    for text in [
        f"{server}:8 unmapped: nvflare.app_common.np.np_model_persistor.NPModelPersistor: "
        "config-based job: the recipe's model= and initial_ckpt=",
        f"{server}:13 unmapped: nvflare.app_common.shareablegenerators."
        "full_model_shareable_generator.FullModelShareableGenerator: config-based job: "
        "built into the recipe",
        f"{server}:23 unmapped: TBAnalyticsReceiver: config-based job: "
        "ember.recipes.add_experiment_tracking(recipe, 'tensorboard') does this",
        f"{server}:28 unmapped: custom_audit.AuditWidget: "
        "config-based job: no Ember recipe or component corresponds",
        f"{server}:35 unmapped: nvflare.app_common.workflows.scatter_and_gather.ScatterAndGather: "
        "config-based job: ember.recipes.FedAvgRecipe",
        "app/config/config_fed_client.json:7 unmapped: nvflare.app_common.np.np_trainer.NPTrainer:"
        " config-based job: write a Client API script",
        "port the job to a recipe script",
    ]:
        assert text in out, out
    assert "meta.json" not in out
    assert "changed 0 of 2 file(s); 7 problem(s)" in out
    assert {p: p.read_text() for p in job.rglob("*") if p.is_file()} == before

    code, out = migrate(str(job / "app" / "config" / "config_fed_client.json"), "--format", "json")
    assert code == 1
    [report] = json.loads(out)["files"]
    assert [p["name"] for p in report["problems"]] == ["nvflare.app_common.np.np_trainer.NPTrainer"]


@pytest.mark.parametrize(
    ("name", "text"),
    [
        (
            "config_fed_server.yaml",
            "workflows:\n  - id: cyclic\n"
            "    path: nvflare.app_common.workflows.cyclic_ctl.CyclicController\n"
            "    args: {num_rounds: 2}\n",
        ),
        (
            "config_fed_server.conf",
            "# the HOCON form\nworkflows = [\n  {\n    id = cyclic\n"
            '    path = "nvflare.app_common.workflows.cyclic_ctl.CyclicController"\n  }\n]\n',
        ),
    ],
)
def test_config_formats(tmp_path: Path, name: str, text: str) -> None:
    (tmp_path / "app" / "config").mkdir(parents=True)
    (tmp_path / "app" / "config" / name).write_text(text)
    code, out = migrate(str(tmp_path))
    assert code == 1
    assert (
        "unmapped: nvflare.app_common.workflows.cyclic_ctl.CyclicController: config-based job: "
        "ember.recipes.CyclicRecipe" in out
    ), out
    assert "1 problem(s)" in out


def test_fedjob_script_is_reported(tmp_path: Path) -> None:
    job = copy_job("fedjob_script", tmp_path)
    source = (job / "fedjob.py").read_text()
    code, out = migrate(str(job))
    assert code == 1, out
    for text in [
        "fedjob.py:3 unmapped: nvflare.FedJob: Ember has no FedJob API: build the job with a "
        "recipe (`ember recipe list`",
        "fedjob.py:4 unmapped: nvflare.app_common.workflows.fedavg.FedAvg: Ember has no FedAvg "
        "component; ember.recipes.FedAvgRecipe",
        "fedjob.py:5 unmapped: nvflare.job_config.script_runner.ScriptRunner: Ember recipes run "
        "the client script themselves: pass train_script=",
        "3 problem(s)",
    ]:
        assert text in out, out
    assert (job / "fedjob.py").read_text() == source  # nothing it could rewrite


def test_nvflare_hello_numpy_cross_val_migrates_and_runs(tmp_path: Path) -> None:
    job = copy_job("numpy_cse_recipe", tmp_path)
    code, out = migrate(str(job))
    assert code == 0, out
    assert (
        "job.py:8 from nvflare.app_common.np.recipes import NumpyCrossSiteEvalRecipe"
        " -> from ember.recipes import NumpyCrossSiteEvalRecipe"
    ) in out
    assert_no_nvflare(job)
    result = run_job(job, tmp_path)
    matrix = json.loads(
        (result / "server" / "cross_site_eval" / "cross_val_matrix.json").read_text()
    )
    assert matrix["sites"] == ["site-1", "site-2"]
    assert {"SRV_server_model_1", "SRV_server_model_2"} <= set(matrix["models"])
