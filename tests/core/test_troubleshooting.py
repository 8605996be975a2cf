"""The timeout troubleshooting guide, the relations between settings, and what timeout errors
say about the setting behind them."""

from __future__ import annotations

import ast
import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from ember import SimEnv
from ember.cli.main import cli
from ember.config import (
    SCENARIOS,
    Config,
    ConfigError,
    ConfigRelationError,
    Setting,
    check_relations,
    declared_relations,
    declared_settings,
    describe_setting,
    describe_timeout,
    setting_timeout,
    use_config,
)
from ember.config.reference import render_troubleshooting
from ember.job.definition import write_job
from ember.runtime.board import TaskBoard
from ember.runtime.errors import InsufficientClients
from ember.system.admin import check_job_settings
from support.sim import numpy_recipe

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted((ROOT / "packages").glob("*/src/**/*.py"))
DESCRIBERS = {"describe_setting", "describe_timeout"}


@pytest.fixture(autouse=True)
def _plugins(fresh_plugins: None) -> None:
    """Every test sees freshly loaded plugins and a re-read environment."""


def test_the_troubleshooting_guide_is_current() -> None:
    expected = render_troubleshooting(list(declared_settings().values()))
    doc = ROOT / "docs" / "troubleshooting.md"
    assert doc.read_text(encoding="utf-8") == expected, (
        "docs/troubleshooting.md is stale: run "
        "`ember config troubleshooting --output docs/troubleshooting.md`"
    )


def test_the_guide_shows_every_symptom_scenario_and_relation() -> None:
    settings = declared_settings()
    text = render_troubleshooting(list(settings.values()))
    for setting in settings.values():
        if setting.symptom:
            assert f"### `{setting.name}`" in text
            assert setting.symptom in text
    for tag in SCENARIOS:
        assert f"### {tag[0].upper()}{tag[1:]}" in text
    relations = declared_relations(settings)
    assert any(
        (r.high, r.low) == ("streaming.transaction_timeout", "runtime.task_timeout")
        for r in relations
    )
    for rel in relations:
        assert f"- `{rel.high}` >= `{rel.low}`" in text


def test_every_timeout_setting_says_what_it_looks_like_when_too_small() -> None:
    missing = [
        s.name
        for s in declared_settings().values()
        if s.name.endswith("_timeout") and not (s.symptom and s.scenarios)
    ]
    assert not missing, f"timeouts without a symptom or scenarios: {missing}"


def test_the_cli_writes_the_guide(tmp_path: Path) -> None:
    out = tmp_path / "troubleshooting.md"
    result = CliRunner().invoke(cli, ["config", "troubleshooting", "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text(encoding="utf-8") == render_troubleshooting(
        list(declared_settings().values())
    )


def test_a_setting_refuses_unknown_scenarios_and_relations_to_itself() -> None:
    with pytest.raises(ConfigError, match="scenarios must be a tuple"):
        Setting("x.t", float, 1.0, "seconds", "b", "a", scenarios=("huge",))
    with pytest.raises(ConfigError, match="at_least relates numbers"):
        Setting("x.t", float, 1.0, "seconds", "b", "a", at_least=("x.t",))


def test_describe_setting_names_the_value_and_where_it_came_from() -> None:
    name = "runtime.task_timeout"
    assert describe_setting(name, config=Config(environ={})) == f"{name} = 3600 s (default)"
    env = Config(environ={"EMBER_RUNTIME_TASK_TIMEOUT": "600"})
    assert describe_setting(name, config=env) == (
        f"{name} = 600 s (env EMBER_RUNTIME_TASK_TIMEOUT)"
    )
    job = Config({name: 30.0}, environ={})
    assert describe_setting(name, config=job) == f"{name} = 30 s (job config)"
    assert describe_setting(name, 5.0, config=job) == (
        f"{name} = 5 s (set for this call; the job's value is 30 s, job config)"
    )
    with pytest.raises(ConfigError, match="unknown setting"):
        describe_setting("runtime.task_timeot")


def test_a_timeout_read_from_a_setting_remembers_it() -> None:
    with use_config(Config({"system.admin_timeout": 12.0}, environ={})):
        timeout = setting_timeout("system.admin_timeout")
    assert timeout + 1 == 13.0
    assert describe_timeout(timeout) == "system.admin_timeout = 12 s (job config)"
    assert describe_timeout(2.5) == "2.5 s (the limit the caller passed)"
    assert describe_timeout(None) == "no time limit"


def test_a_round_past_its_timeout_names_the_setting_its_value_and_source() -> None:
    board = TaskBoard(["site-1", "site-2"])
    with use_config(Config({"runtime.task_timeout": 0.05}, environ={})):
        posted = board.post("train", None, ["site-1", "site-2"], 0.05)
        with pytest.raises(InsufficientClients) as info:
            board.collect(posted, 1, lambda site, result: None)
    assert "timed out: site-1, site-2 (runtime.task_timeout = 0.05 s (job config))" in str(
        info.value
    )


def test_a_script_that_never_connects_names_the_connect_timeout(tmp_path: Path) -> None:
    script = tmp_path / "silent.py"
    script.write_text("import time\ntime.sleep(60)\n")  # never calls flare.init()
    recipe = numpy_recipe(train_script=str(script), num_rounds=1, launch_external_process=True)
    recipe.set_config("runtime.subprocess_connect_timeout", 0.5)
    recipe.set_config("runtime.site_stop_timeout", 0.5)
    run = recipe.execute(SimEnv(num_clients=2, workspace_root=str(tmp_path / "ws"), progress=False))
    assert run.get_status() == "FINISHED:EXECUTION_EXCEPTION"
    assert (
        "silent.py did not connect within runtime.subprocess_connect_timeout = 0.5 s "
        "(job config)" in run.get_message()
    )


def test_an_expired_download_names_the_transaction_timeout() -> None:
    import numpy as np

    from ember.streaming import StreamingError, StreamNode

    with use_config(Config({"streaming.transaction_timeout": 5.0}, environ={})):
        node = StreamNode("owner", lambda *args: None)
    try:
        ref = node.downloader.add_tensors({"w": np.zeros(4)})
        assert node.downloader.expire(time.monotonic() + 6) == 1
        with pytest.raises(
            StreamingError,
            match=r"\(streaming\.transaction_timeout = 5 s \(job config\)\)",
        ):
            node.downloader.manifest(ref, "site-1")
    finally:
        node.close()


def test_a_job_whose_results_would_expire_before_the_round_ends_is_refused(
    tmp_path: Path,
) -> None:
    recipe = numpy_recipe(num_rounds=1)
    recipe.set_config("runtime.task_timeout", 7200.0)
    with pytest.raises(ConfigRelationError) as info:
        recipe.export(tmp_path / "job")
    message = str(info.value)
    assert "streaming.transaction_timeout = 3600 s (default)" in message
    assert "runtime.task_timeout = 7200 s (job config)" in message
    assert not (tmp_path / "job").exists()
    with pytest.raises(ConfigRelationError, match=r"runtime\.task_timeout = 7200 s"):
        recipe.execute(SimEnv(num_clients=2, workspace_root=str(tmp_path / "ws"), progress=False))
    recipe.set_config("streaming.transaction_timeout", 7200.0)
    check_relations(recipe.job.config)  # now they agree


def test_an_exported_job_that_breaks_a_relation_is_refused_by_simenv_and_submit(
    tmp_path: Path,
) -> None:
    recipe = numpy_recipe(num_rounds=1)
    recipe.job.config["streaming.transaction_timeout"] = 10.0  # past set_config's back
    job_dir = write_job(recipe.job, recipe.files, tmp_path / "job")
    assert json.loads((job_dir / "job.json").read_text())["config"]
    env = SimEnv(num_clients=2, workspace_root=str(tmp_path / "ws"), progress=False)
    with pytest.raises(ConfigRelationError, match=r"streaming\.transaction_timeout = 10 s"):
        env.run_job_dir(job_dir)
    with pytest.raises(ConfigRelationError, match=r"runtime.task_timeout = 3600 s \(default\)"):
        check_job_settings(job_dir)  # what AdminClient.submit (PocEnv, ProdEnv) runs first


def test_an_environment_that_breaks_a_relation_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBER_STREAMING_TRANSACTION_TIMEOUT", "5")
    with pytest.raises(
        ConfigRelationError,
        match=r"streaming.transaction_timeout = 5 s \(env EMBER_STREAMING_TRANSACTION_TIMEOUT\)",
    ):
        check_relations({})


def _timeout_classes(trees: dict[Path, ast.Module]) -> set[str]:
    """TimeoutError and every class in the sources derived from it (by name)."""
    names = {"TimeoutError", "timeout"}
    changed = True
    while changed:
        changed = False
        for tree in trees.values():
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef) and node.name not in names:
                    bases = {
                        b.id if isinstance(b, ast.Name) else getattr(b, "attr", "")
                        for b in node.bases
                    }
                    if bases & names:
                        names.add(node.name)
                        changed = True
    return names


def _raised_name(exc: ast.expr) -> str:
    target = exc.func if isinstance(exc, ast.Call) else exc
    if isinstance(target, ast.Name):
        return target.id
    if isinstance(target, ast.Attribute):
        return target.attr
    return ""


def _mentions_a_limit(exc: ast.expr) -> bool:
    words = ("within", "timed out", "expired after", "time limit", "tried for")
    for node in ast.walk(exc):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and any(w in node.value.lower() for w in words)
        ):
            return True
    return False


def _uses_a_describer(exc: ast.expr) -> bool:
    return any(
        isinstance(node, ast.Call) and _raised_name(node) in DESCRIBERS for node in ast.walk(exc)
    )


def test_every_raised_timeout_names_its_setting_value_and_source() -> None:
    trees = {path: ast.parse(path.read_text(encoding="utf-8")) for path in SOURCES}
    timeouts = _timeout_classes(trees)
    offenders = []
    for path, tree in trees.items():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Raise) or not isinstance(node.exc, ast.Call):
                continue
            if not (_raised_name(node.exc) in timeouts or _mentions_a_limit(node.exc)):
                continue
            if not node.exc.args:  # re-raising a caught error with its own message
                continue
            if not _uses_a_describer(node.exc):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, (
        "timeout errors that do not name their setting (use ember.config.describe_setting "
        f"or describe_timeout in the message): {offenders}"
    )
