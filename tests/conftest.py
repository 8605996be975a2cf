"""Fixtures every test package may use."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ember.envs.poc import start_workspace, stop_workspace
from ember.system.poc import PocWorkspace, prepare


@pytest.fixture(scope="module")
def poc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PocWorkspace]:
    """A PoC workspace with site-1 and site-2, started for the module, stopped after it."""
    ws = prepare(tmp_path_factory.mktemp("poc") / "ws", num_clients=2)
    start_workspace(ws)
    try:
        yield ws
    finally:
        stop_workspace(ws)
