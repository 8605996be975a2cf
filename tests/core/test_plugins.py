"""The plugin system: core's built-ins, entry points, env switches, conflicts, errors."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from ember.plugins import (
    PluginConflictError,
    PluginError,
    RecipeEntry,
    UnknownNameError,
    get_registry,
    hookimpl,
)
from ember.plugins.manager import EmberPluginManager
from ember.plugins.registry import Registry
from support.plugin_build import build_plugin, renamed_copy, run_ember


def _plugin_module(name: str, **hooks: object) -> types.ModuleType:
    module = types.ModuleType(name)
    for hook_name, fn in hooks.items():
        setattr(module, hook_name, hookimpl(fn))  # type: ignore[arg-type]
    return module


def _manager(*modules: types.ModuleType) -> EmberPluginManager:
    pm = EmberPluginManager()
    for m in modules:
        pm.register_module(m, m.__name__, source="test")
    return pm


def _recipes(*names: str):  # type: ignore[no-untyped-def]
    return lambda: [RecipeEntry(n, "mod:Cls", framework="x", algorithm="y") for n in names]


@pytest.mark.usefixtures("fresh_plugins")
def test_core_registers_its_builtins_through_the_hooks() -> None:
    registry = get_registry()
    assert registry.items("decomposer")["numpy.ndarray"].plugin == "core"
    assert {"plugins", "recipe", "config"} <= set(registry.items("command"))
    assert "fobs.max_depth" in registry.items("setting")
    core = registry.manager.info("core")
    assert core.distribution == "ember-core"
    assert core.version


def test_two_plugins_claiming_one_name_is_an_error_naming_both() -> None:
    pm = _manager(
        _plugin_module("alpha_plugin", ember_recipes=_recipes("x-fedavg")),
        _plugin_module("beta_plugin", ember_recipes=_recipes("x-fedavg", "x-other")),
    )
    with pytest.raises(PluginConflictError) as err:
        Registry(pm)
    assert "'alpha_plugin'" in str(err.value)
    assert "'beta_plugin'" in str(err.value)
    assert "x-fedavg" in str(err.value)


def test_two_plugins_with_one_plugin_name_is_an_error() -> None:
    pm = _manager(_plugin_module("same"))
    with pytest.raises(PluginConflictError, match="two plugins are named 'same'"):
        pm.register_module(_plugin_module("same"), "same", source="test")


def test_unknown_recipe_lists_installed_and_names_the_package() -> None:
    registry = Registry(_manager(_plugin_module("p", ember_recipes=_recipes("numpy-fedavg"))))
    with pytest.raises(UnknownNameError) as err:
        registry.get("recipe", "pytorch-fedprox")
    message = str(err.value)
    assert "no recipe named 'pytorch-fedprox'" in message
    assert "Installed recipes: numpy-fedavg" in message
    assert "pip install ember-pt" in message


def test_unknown_name_suggests_close_matches() -> None:
    registry = Registry(_manager(_plugin_module("p", ember_recipes=_recipes("numpy-fedavg"))))
    with pytest.raises(UnknownNameError, match="Did you mean 'numpy-fedavg'"):
        registry.get("recipe", "numpy-fedavgg")


@pytest.mark.usefixtures("fresh_plugins")
def test_unknown_decomposer_type_names_its_package() -> None:
    with pytest.raises(UnknownNameError, match="pip install ember-tf"):
        get_registry().get("decomposer", "tensorflow.Tensor")


def test_misspelled_hook_is_rejected_with_the_valid_names() -> None:
    pm = EmberPluginManager()
    pm.register_module(_plugin_module("typo", ember_recipe=_recipes("a-b")), "typo", source="t")
    with pytest.raises(PluginError, match="ember_recipes"):
        pm.check_pending()


def test_hook_returning_wrong_items_is_rejected() -> None:
    pm = _manager(_plugin_module("bad", ember_recipes=lambda: ["not-an-entry"]))
    with pytest.raises(
        PluginError, match="plugin 'bad': hook ember_recipes returned 'not-an-entry'"
    ):
        Registry(pm)


def test_malformed_target_is_rejected() -> None:
    entry = RecipeEntry("a-b", "no_colon_here")
    with pytest.raises(PluginError, match=r"package\.module:attribute"):
        entry.load()


def test_entry_point_plugin_is_discovered(median_plugin_path: Path) -> None:
    result = run_ember("plugins", "--format", "json", pythonpath=[median_plugin_path])
    assert result.returncode == 0, result.stderr
    plugins = {p["name"]: p for p in json.loads(result.stdout)["plugins"]}
    median = plugins["median"]
    assert median["distribution"] == "ember-recipe-median"
    assert median["version"] == "0.1.0"
    assert median["registers"] == {"recipe": ["numpy-median"]}
    assert "core" in plugins


def test_disable_autoload_skips_entry_points(median_plugin_path: Path) -> None:
    result = run_ember(
        "plugins",
        "--format",
        "json",
        pythonpath=[median_plugin_path],
        env={"EMBER_DISABLE_PLUGIN_AUTOLOAD": "1"},
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["autoload"] is False
    assert [p["name"] for p in data["plugins"]] == ["core"]


def test_explicit_plugins_load_even_without_autoload(median_plugin_path: Path) -> None:
    result = run_ember(
        "recipe",
        "list",
        "--format",
        "json",
        pythonpath=[median_plugin_path],
        env={"EMBER_DISABLE_PLUGIN_AUTOLOAD": "1", "EMBER_PLUGINS": "ember_recipe_median.plugin"},
    )
    assert result.returncode == 0, result.stderr
    assert [r["name"] for r in json.loads(result.stdout)] == [
        "dh-psi",
        "numpy-cross-site-eval",
        "numpy-cyclic",
        "numpy-fedavg",
        "numpy-fedavg-lr",
        "numpy-fedstats",
        "numpy-fedtask",
        "numpy-median",
    ]


@pytest.mark.parametrize("disabled", ["median", "ember-recipe-median"])
def test_disabled_plugins_are_skipped(median_plugin_path: Path, disabled: str) -> None:
    result = run_ember(
        "plugins",
        "--format",
        "json",
        pythonpath=[median_plugin_path],
        env={"EMBER_DISABLED_PLUGINS": f"other, {disabled}"},
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["disabled"] == ["median"]
    assert "median" not in [p["name"] for p in data["plugins"]]


def test_bad_autoload_value_is_a_clear_error() -> None:
    result = run_ember("plugins", env={"EMBER_DISABLE_PLUGIN_AUTOLOAD": "maybe"})
    assert result.returncode == 1
    assert "EMBER_DISABLE_PLUGIN_AUTOLOAD='maybe' is not a boolean" in result.stderr


def test_core_cannot_be_disabled() -> None:
    result = run_ember("plugins", env={"EMBER_DISABLED_PLUGINS": "core"})
    assert result.returncode == 1
    assert "cannot be disabled" in result.stderr


def test_conflicting_entry_point_plugins_name_both(
    median_plugin_path: Path, tmp_path: Path
) -> None:
    twin = build_plugin(
        renamed_copy(tmp_path, "ember-recipe-twin", "ember_recipe_twin", "twin"), tmp_path / "site"
    )
    result = run_ember("recipe", "list", pythonpath=[median_plugin_path, twin])
    assert result.returncode == 1
    assert "recipe 'numpy-median' is registered by two plugins" in result.stderr
    assert "'median' (ember-recipe-median)" in result.stderr
    assert "'twin' (ember-recipe-twin)" in result.stderr


def test_plugin_that_fails_to_import_names_itself(tmp_path: Path) -> None:
    broken = renamed_copy(tmp_path, "ember-broken", "ember_broken", "broken")
    (broken / "src" / "ember_broken" / "plugin.py").write_text("raise RuntimeError('boom')\n")
    site = build_plugin(broken, tmp_path / "site")
    result = run_ember("plugins", pythonpath=[site])
    assert result.returncode == 1
    assert "plugin 'broken' from ember-broken failed to load" in result.stderr
    assert "EMBER_DISABLED_PLUGINS=broken" in result.stderr
    ok = run_ember("plugins", pythonpath=[site], env={"EMBER_DISABLED_PLUGINS": "broken"})
    assert ok.returncode == 0, ok.stderr


def test_loading_every_plugin_imports_no_framework(median_plugin_path: Path) -> None:
    code = (
        "import sys, json\n"
        "from ember.plugins import get_registry\n"
        "from ember.cli.main import cli\n"
        "import click\n"
        "reg = get_registry()\n"
        "for kind in ('recipe', 'decomposer', 'tensor_adapter', 'params_converter', 'framework'):\n"
        "    reg.items(kind)\n"
        "cli.list_commands(click.Context(cli))\n"
        "print(json.dumps(sorted(reg.manager.report.plugins[i].name"
        " for i in range(len(reg.manager.report.plugins)))))\n"
        "print(json.dumps([m for m in ('torch', 'tensorflow', 'xgboost', 'flwr', 'sklearn',"
        " 'keras', 'jax') if m in sys.modules]))\n"
    )
    import os
    import subprocess

    env = {**os.environ, "PYTHONPATH": str(median_plugin_path)}
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    )
    loaded, frameworks = (json.loads(line) for line in result.stdout.splitlines())
    assert {"median", "core"} <= set(loaded)
    assert frameworks == []
