"""EmberError is the root of every exception Ember defines; the CLI prints one as one line."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import pytest
from click.testing import CliRunner

import ember
from ember.cli.main import cli
from ember.errors import EmberError, MissingDependencyError

# importing it runs the `ember` command
_NOT_IMPORTED = {"ember.__main__"}


def _ember_modules() -> list[str]:
    return sorted(
        info.name
        for info in pkgutil.walk_packages(ember.__path__, prefix="ember.")
        if info.name not in _NOT_IMPORTED
    )


def test_every_exception_class_ember_defines_derives_from_ember_error() -> None:
    not_ember: list[str] = []
    checked = 0
    for name in _ember_modules():
        try:
            module = importlib.import_module(name)
        except MissingDependencyError:  # needs an extra this environment lacks
            continue
        for obj in vars(module).values():
            if (
                isinstance(obj, type)
                and issubclass(obj, BaseException)
                and obj.__module__ == module.__name__
            ):
                checked += 1
                if not issubclass(obj, EmberError):
                    not_ember.append(f"{name}.{obj.__qualname__}")
    assert not not_ember, f"exception classes that do not derive from EmberError: {not_ember}"
    assert checked > 10  # the walk found Ember's modules


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["recipe", "show", "no-such-recipe"], "no recipe named 'no-such-recipe'"),
        (["poc", "status", "-w", "{tmp}/no-poc"], "is not a prepared PoC workspace"),
        (["daemon", "status", "-k", "{tmp}"], "holds no startup kit"),
    ],
)
def test_an_ember_error_in_a_command_is_one_error_line_with_exit_code_1(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = CliRunner().invoke(cli, [a.format(tmp=tmp_path) for a in args])
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)  # click's exit, not the EmberError
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: ")
    assert message in lines[0]
    assert "Traceback" not in result.output
