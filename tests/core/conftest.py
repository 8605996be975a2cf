"""Shared fixtures: fresh plugin state, a built third-party plugin, a count of served chunks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ember.plugins import reset_plugin_manager
from ember.streaming.downloader import Downloader
from support.plugin_build import EXAMPLE_PLUGIN, PLUGIN_ENV_VARS, build_plugin


@pytest.fixture
def fresh_plugins(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Reload plugins before and after the test, with no plugin environment variables."""
    for var in PLUGIN_ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    reset_plugin_manager()
    yield
    reset_plugin_manager()


@pytest.fixture(scope="session")
def median_plugin_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the installed example plugin (examples/recipe-plugin: distribution
    ember-recipe-median, entry point ``median``, recipe ``numpy-median``), for PYTHONPATH."""
    return build_plugin(EXAMPLE_PLUGIN, tmp_path_factory.mktemp("median_site"))


@pytest.fixture
def chunk_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Owners that served a chunk of the request path (in this process)."""
    served: list[str] = []
    original = Downloader.chunk

    def counting(self: Downloader, *args: Any, **kwargs: Any) -> Any:
        served.append(self.owner)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Downloader, "chunk", counting)
    return served
