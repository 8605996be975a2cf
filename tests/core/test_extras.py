"""Core's optional features are extras: a missing one names the extra that installs it."""

from __future__ import annotations

import importlib
import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from packaging.requirements import Requirement

from ember.errors import EmberError, MissingDependencyError
from ember.extras import require
from support.sim import numpy_recipe, run_sim

OPTIONAL = {
    "matplotlib": "plots",
    "libcst": "migrate",
    "tensorboardx": "tracking",
    "mlflow-skinny": "mlflow",
    "wandb": "wandb",
    "pandas": "stats",
    "ray": "ray",
}
ROUNDS = [{"round": 0, "metrics": {"accuracy": 0.5}}, {"round": 1, "metrics": {"accuracy": 0.7}}]


def _uninstall(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    """Make ``import module`` raise ImportError, as if it were not installed."""
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)


def _forget(monkeypatch: pytest.MonkeyPatch, package: str) -> None:
    """Drop ``package`` and its modules from sys.modules so the next import runs it again."""
    for name in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
        monkeypatch.delitem(sys.modules, name)


def test_require_returns_the_module_when_it_is_installed() -> None:
    assert require("json", "plots", "a test") is sys.modules["json"]


def test_a_missing_matplotlib_names_the_plots_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from ember.runtime.plots import plot_round_metrics

    _uninstall(monkeypatch, "matplotlib", "matplotlib.figure")
    with pytest.raises(MissingDependencyError) as caught:
        plot_round_metrics(ROUNDS, tmp_path / "round_metrics.png")
    assert isinstance(caught.value, EmberError)
    assert isinstance(caught.value, ImportError)
    assert caught.value.name == "matplotlib"
    assert str(caught.value) == (
        "the round-metrics plot needs matplotlib, which is not installed: "
        "pip install 'ember-core[plots]'"
    )
    assert not (tmp_path / "round_metrics.png").exists()


def test_rounds_without_metrics_need_no_matplotlib(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from ember.runtime.plots import plot_round_metrics

    _uninstall(monkeypatch, "matplotlib", "matplotlib.figure")
    assert plot_round_metrics([{"round": 0, "metrics": {}}], tmp_path / "x.png") is False


def test_a_job_with_metrics_finishes_without_matplotlib_and_warns_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _uninstall(monkeypatch, "matplotlib", "matplotlib.figure")
    run = run_sim(numpy_recipe(train_args='--metrics "[0.5, 0.7, 0.6]"'), tmp_path)
    assert run.get_status() == "FINISHED:COMPLETED", run.get_message()
    server = Path(run.get_result()) / "server"
    assert (server / "metrics_summary.json").is_file()
    assert not (server / "round_metrics.png").exists()
    warnings = [line for line in (server / "log.txt").read_text().splitlines() if "WARNING" in line]
    assert any("pip install 'ember-core[plots]'" in line for line in warnings), warnings


def test_a_missing_tensorboardx_names_the_tracking_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from ember.runtime.records import MetricSink

    _uninstall(monkeypatch, "tensorboardX")
    MetricSink(tmp_path, None).close()  # no tracking: tensorboardX is not needed
    with pytest.raises(MissingDependencyError, match=r"pip install 'ember-core\[tracking\]'"):
        MetricSink(tmp_path, "tensorboard")


def test_a_missing_libcst_names_the_migrate_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    _forget(monkeypatch, "ember.migrate")
    _uninstall(monkeypatch, "libcst")
    with pytest.raises(MissingDependencyError) as caught:
        importlib.import_module("ember.migrate.runner")
    assert str(caught.value) == (
        "ember migrate-nvflare needs libcst, which is not installed: "
        "pip install 'ember-core[migrate]'"
    )


def test_ember_migrate_nvflare_without_libcst_is_one_error_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from ember.cli.main import cli

    _forget(monkeypatch, "ember.migrate")
    _uninstall(monkeypatch, "libcst")
    (tmp_path / "job.py").write_text("import nvflare\n")
    result = CliRunner().invoke(cli, ["migrate-nvflare", str(tmp_path)])
    assert result.exit_code == 1, result.output
    assert result.output.splitlines() == [
        "Error: ember migrate-nvflare needs libcst, which is not installed: "
        "pip install 'ember-core[migrate]'"
    ]
    assert (tmp_path / "job.py").read_text() == "import nvflare\n"


def test_a_module_that_is_installed_but_fails_to_import_is_named_as_such(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "half_installed.py").write_text("import no_such_module_for_ember_tests\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(MissingDependencyError) as caught:
        require("half_installed", "plots", "the round-metrics plot")
    message = str(caught.value)
    assert message.startswith("the round-metrics plot needs half_installed, which failed to ")
    assert "no_such_module_for_ember_tests" in message
    assert message.endswith("pip install 'ember-core[plots]'")


def test_importing_ember_and_its_cli_imports_no_optional_dependency() -> None:
    code = (
        "import sys, ember, ember.cli.main, ember.envs.sim, ember.recipes, ember.client, "
        "ember.runtime.plots, ember.runtime.records\n"
        "print(sorted(m for m in ('matplotlib', 'libcst', 'tensorboardX') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_core_lists_its_optional_dependencies_only_under_extras() -> None:
    requirements = [Requirement(r) for r in importlib.metadata.requires("ember-core") or []]
    by_extra: dict[str, set[str]] = {}
    for req in requirements:
        extras = [
            e
            for e in (
                "plots", "migrate", "tracking", "mlflow", "wandb", "stats", "ray", "all", "pt",
                "sklearn", "tf",
            )
            if req.marker is not None and req.marker.evaluate({"extra": e})
        ]
        if req.marker is None:
            by_extra.setdefault("", set()).add(req.name.lower())
        for extra in extras:
            by_extra.setdefault(extra, set()).add(req.name.lower())
    hint = "reinstall core: pip install --no-deps -e 'packages/core[all]'"
    assert not by_extra[""] & set(OPTIONAL), hint
    assert {"click", "numpy", "msgpack"} <= by_extra[""]
    for module, extra in OPTIONAL.items():
        assert by_extra.get(extra) == {module}, hint
    assert by_extra["all"] == set(OPTIONAL)
    assert by_extra["pt"] == {"ember-pt"}
    assert by_extra["sklearn"] == {"ember-sklearn"}
    assert by_extra["tf"] == {"ember-tf"}
