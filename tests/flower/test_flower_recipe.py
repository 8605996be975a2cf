"""FlowerRecipe's arguments, the job it builds, and the guard that ends Flower's processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ember.plugins import get_registry
from ember.recipes import RecipeArgumentError
from ember_flower import FlowerRecipe
from ember_flower.processes import Guarded, flower_env
from ember_flower.site import node_config_arg

APP = Path(__file__).parents[2] / "examples" / "hello-flower"


def test_the_recipe_bundles_the_app_and_the_site_script_and_tunnels_only_fleet(
    tmp_path: Path,
) -> None:
    (APP / "__pycache__").mkdir(exist_ok=True)
    recipe = FlowerRecipe(APP, min_clients=2, run_config={"num-server-rounds": 1})
    job_dir = recipe.export(str(tmp_path))
    app = Path(job_dir) / "flower_app"
    assert (app / "pyproject.toml").read_bytes() == (APP / "pyproject.toml").read_bytes()
    assert (app / "hello_flower" / "server_app.py").is_file()
    assert not list(app.rglob("__pycache__"))
    job = recipe.job
    assert job.client.site_workflow == {"target": "ember.site_workflows:TunnelSiteLink"}
    assert job.all_sites_at_once
    (workflow,) = job.workflows
    assert workflow["args"]["run_config"] == {"num-server-rounds": 1}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"flower_content": "/nonexistent/app"}, "has no pyproject.toml"),
        ({"flower_content": APP, "min_clients": 0}, "min_clients"),
        ({"flower_content": APP, "run_config": {"lr": [1, 2]}}, "run_config['lr']"),
        ({"flower_content": APP, "timeout": -1}, "timeout"),
    ],
)
def test_bad_arguments_are_refused_by_name(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(RecipeArgumentError, match=message.replace("[", r"\[")):
        FlowerRecipe(**kwargs)  # type: ignore[arg-type]


def test_an_app_without_a_clientapp_is_refused(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.flwr.app.components]\nserverapp = "a:app"\n', encoding="utf-8"
    )
    with pytest.raises(RecipeArgumentError, match="clientapp"):
        FlowerRecipe(tmp_path)


def test_the_plugin_registers_the_recipe_and_its_settings() -> None:
    registry = get_registry()
    assert registry.get("recipe", "flower").item.target == "ember_flower.recipe:FlowerRecipe"
    assert registry.get("setting", "flower.start_timeout").item.default == 120.0


def test_node_config_strings_are_quoted_and_numbers_are_not() -> None:
    assert node_config_arg({"partition-id": 1, "num-partitions": 3, "path": "a b"}) == (
        'partition-id=1 num-partitions=3 path="a b"'
    )


def test_flower_processes_run_without_telemetry_with_this_venvs_bin_on_path(
    tmp_path: Path,
) -> None:
    env = flower_env(tmp_path)
    assert env["FLWR_HOME"] == str(tmp_path)
    assert (env["FLWR_TELEMETRY_ENABLED"], env["FLWR_DISABLE_UPDATE_CHECK"]) == ("0", "1")
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"  # a zombie: exited
    except OSError:
        return True


def _first_line(guarded: Guarded) -> str:
    """The guarded command's first output line (bounded by the guard's own exit)."""
    for _ in range(400):  # 400 x 0.05 s at most: the command prints at once
        text = guarded.log_path.read_text()
        if text.endswith("\n"):
            return text.split()[0]
        try:
            guarded.process.wait(0.05)  # returns at once if the guard died
            pytest.fail(f"the guard exited: {guarded.tail()}")
        except subprocess.TimeoutExpired:
            continue
    pytest.fail("the guarded command printed nothing")


def test_the_guard_ends_the_whole_process_group_when_its_holder_closes_it(
    tmp_path: Path,
) -> None:
    # the guarded command starts a grandchild, prints its pid, and waits for a signal
    script = (
        "import subprocess, sys, signal\n"
        "c = subprocess.Popen([sys.executable, '-c', 'import signal; signal.pause()'])\n"
        "print(c.pid, flush=True)\n"
        "signal.pause()\n"
    )
    log = tmp_path / "guarded.log"
    guarded = Guarded([sys.executable, "-c", script], dict(os.environ), log, stop_timeout=5)
    try:
        grandchild = int(_first_line(guarded))
        assert not _gone(grandchild)
    finally:
        code = guarded.stop()
    assert code == 128 + signal.SIGTERM  # the command ended by the guard's SIGTERM
    assert _gone(grandchild)
