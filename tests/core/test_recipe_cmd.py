"""``ember recipe list --framework/--filter`` and ``ember recipe show`` with NVFlare-style names."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from ember.cli.main import cli
from ember.cli.recipe_cmd import framework_name, recipe_name
from ember.plugins.registry import get_registry

INSTALLED = ["numpy-fedavg", "numpy-fedstats", "pytorch-fedavg", "tensorflow-fedavg", "sklearn-svm"]


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["recipe", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output


def listed(*args: str) -> list[dict[str, str]]:
    code, out = invoke("list", *args, "--format", "json")
    assert code == 0, out
    rows: list[dict[str, str]] = json.loads(out)
    return rows


def installed() -> set[str]:
    return set(get_registry().items("recipe"))


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("pytorch-fedavg", "pytorch-fedavg"),
        ("fedavg-pt", "pytorch-fedavg"),
        ("fedavg-torch", "pytorch-fedavg"),
        ("fedavg-pytorch", "pytorch-fedavg"),
        ("pt-fedavg", "pytorch-fedavg"),
        ("FedAvg-PT", "pytorch-fedavg"),
        ("fedavg-tf", "tensorflow-fedavg"),
        ("fedavg-tensorflow", "tensorflow-fedavg"),
        ("fedavg-keras", "tensorflow-fedavg"),
        ("fedavg-numpy", "numpy-fedavg"),
        ("fedavg-np", "numpy-fedavg"),
        ("fedstats-numpy", "numpy-fedstats"),
        ("svm-sklearn", "sklearn-svm"),
        ("svm-scikit-learn", "svm-scikit-learn"),  # no such alias: left for the error
        ("fedavg-jax", "fedavg-jax"),
        ("fedavg", "fedavg"),
    ],
)
def test_recipe_name_aliases(name: str, expected: str) -> None:
    assert recipe_name(name, INSTALLED) == expected


def test_framework_name_uses_the_catalog_aliases() -> None:
    assert [framework_name(n) for n in ("pt", "Torch", "tf", "keras", "np", "sklearn")] == [
        "pytorch",
        "pytorch",
        "tensorflow",
        "tensorflow",
        "numpy",
        "sklearn",
    ]


def test_list_by_framework() -> None:
    rows = listed("--framework", "numpy")
    assert {r["name"] for r in rows} >= {"numpy-fedavg", "numpy-fedstats"}
    assert {r["framework"] for r in rows} == {"numpy"}
    assert listed("--framework", "np") == rows
    assert listed("--framework", "NumPy") == rows
    assert listed("--framework", "no-such-framework") == []


def test_list_filter_matches_name_algorithm_or_description() -> None:
    by_name = listed("--filter", "fedstats")
    assert [r["name"] for r in by_name] == ["numpy-fedstats"]
    by_algorithm = listed("--filter", "FEDSTATS", "--framework", "numpy")
    assert by_algorithm == by_name
    by_description = listed("--filter", "privacy rules")
    assert [r["name"] for r in by_description] == ["numpy-fedstats"]
    averaging = {r["name"] for r in listed("--filter", "averag")}
    assert "numpy-fedavg" in averaging
    assert "numpy-fedstats" not in averaging


def test_list_text_output_and_no_match_message() -> None:
    code, out = invoke("list", "--framework", "numpy")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "FRAMEWORK", "ALGORITHM", "DESCRIPTION"]
    assert all(line.split()[1] == "numpy" for line in lines[1:]), out
    code, out = invoke("list", "--framework", "numpy", "--filter", "zzz-nothing")
    assert code == 0
    assert "No installed recipe matches framework 'numpy' and text 'zzz-nothing'" in out
    assert "numpy" in out.split("(frameworks:", 1)[1]


def test_docs_pytorch_list_command() -> None:
    """docs/pytorch.md: ``ember recipe list --framework pytorch`` lists ember-pt's recipes."""
    pytest.importorskip("ember_pt")
    rows = listed("--framework", "pytorch")
    assert {"pytorch-fedavg", "pytorch-fedeval", "pytorch-swarm"} <= {r["name"] for r in rows}
    assert {r["framework"] for r in rows} == {"pytorch"}
    assert listed("--framework", "pt") == rows


@pytest.mark.parametrize(
    ("alias", "name"),
    [
        ("fedavg-numpy", "numpy-fedavg"),
        ("fedavg-pt", "pytorch-fedavg"),
        ("fedavg-tf", "tensorflow-fedavg"),
        ("fedavg-tensorflow", "tensorflow-fedavg"),
    ],
)
def test_show_accepts_nvflare_style_names(alias: str, name: str) -> None:
    if name not in installed():
        pytest.skip(f"{name} is not installed")
    code, out = invoke("show", alias, "--format", "json")
    assert code == 0, out
    data = json.loads(out)
    assert data["name"] == name
    assert any(p["name"] == "train_script" for p in data["parameters"])
    code, text = invoke("show", alias)
    assert code == 0
    assert text.startswith(f"{name}: ")


def test_show_unknown_alias_still_fails_with_the_registry_hint() -> None:
    result = CliRunner().invoke(cli, ["recipe", "show", "fedavg-jax"])
    assert result.exit_code != 0
    assert "no recipe named 'fedavg-jax'" in (result.output + str(result.exception))
