"""The config registry: resolution order, validation, errors and the generated reference."""

from __future__ import annotations

from pathlib import Path

import pytest

from ember.config import Config, ConfigError, Setting, declared_settings, get_setting, use_config
from ember.config.reference import render_markdown

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _plugins(fresh_plugins: None) -> None:
    """Every test sees freshly loaded plugins and a re-read environment."""


def test_default_env_and_job_precedence() -> None:
    setting = declared_settings()["fobs.max_depth"]
    assert Config(environ={}).get("fobs.max_depth") == setting.default
    env = {"EMBER_FOBS_MAX_DEPTH": "64"}
    assert Config(environ=env).get("fobs.max_depth") == 64
    assert Config(environ=env).source("fobs.max_depth") == "env"
    job = Config({"fobs.max_depth": 32}, environ=env)
    assert job.get("fobs.max_depth") == 32
    assert job.source("fobs.max_depth") == "job"


def test_process_config_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBER_FOBS_MAX_DEPTH", "1_000")
    from ember.config import reset_process_config

    reset_process_config()
    assert get_setting("fobs.max_depth") == 1000
    with use_config(Config({"fobs.max_depth": 7})):
        assert get_setting("fobs.max_depth") == 7
    assert get_setting("fobs.max_depth") == 1000


def test_bad_environment_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"EMBER_FOBS_MAX_DEPTH='deep' is not a valid int"):
        Config(environ={"EMBER_FOBS_MAX_DEPTH": "deep"})


def test_value_below_minimum_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"fobs.max_depth from the job config must be >= 1"):
        Config({"fobs.max_depth": 0})


def test_wrong_type_in_job_config_is_refused() -> None:
    with pytest.raises(ConfigError, match="must be int, got str"):
        Config({"fobs.max_depth": "10"})
    with pytest.raises(ConfigError, match="must be int, got bool"):
        Config({"fobs.max_depth": True})


def test_unknown_setting_suggests_the_close_name() -> None:
    with pytest.raises(
        ConfigError, match=r"unknown setting 'fobs.max_dept'\. Did you mean fobs.max_depth"
    ):
        Config({"fobs.max_dept": 3})


def test_setting_parsing_by_type() -> None:
    flag = Setting("x.flag", bool, False, "flag", "b", "a")
    assert flag.parse("Yes", "X") is True
    assert flag.parse("off", "X") is False
    with pytest.raises(ConfigError, match="use one of"):
        flag.parse("perhaps", "X")
    timeout = Setting("x.timeout", float, 5.0, "s", "b", "a", minimum=0)
    assert timeout.parse("2.5", "X") == 2.5
    assert timeout.validate(3, "job") == 3.0
    assert timeout.env_var == "EMBER_X_TIMEOUT"
    with pytest.raises(ConfigError, match="declared default"):
        Setting("x.bad", int, -1, "s", "b", "a", minimum=0)


def test_config_reference_is_current() -> None:
    expected = render_markdown(list(declared_settings().values()))
    doc = ROOT / "docs" / "reference" / "config.md"
    assert doc.read_text(encoding="utf-8") == expected, (
        "docs/reference/config.md is stale: run "
        "`ember config docs --output docs/reference/config.md`"
    )
    for name in declared_settings():
        assert f"### `{name}`" in expected
