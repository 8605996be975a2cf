"""Live log streaming: a site's log lines (its records and its script's output) arrive at the
server in the order the site wrote them, while the job runs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from ember import SimEnv
from ember.errors import RecipeArgumentError
from ember.runtime.logs import (
    SITE_LOGS,
    LogCollector,
    LogStreamer,
    is_script_record,
    read_log_chunk,
)
from support.sim import numpy_recipe

LINES = 5  # streaming_client.LINES
SITES = ["site-1", "site-2"]


def wait_for_text(path: Path, text: str, timeout: float = 60.0) -> None:
    """Wait until ``path`` holds ``text`` (the server's copy of a site's log)."""
    deadline = time.monotonic() + timeout
    while not (path.is_file() and text in path.read_text(encoding="utf-8")):
        assert time.monotonic() < deadline, f"{text!r} did not reach {path} within {timeout}s"
        time.sleep(0.05)


def script_lines(text: str, site: str) -> list[str]:
    """The script's numbered lines in a log, in order (records put a prefix before them)."""
    marker = f"{site} round "
    return [line[line.index(marker) :] for line in text.splitlines() if marker in line]


@pytest.mark.parametrize("external", [False, True])
def test_a_sites_log_lines_reach_the_server_in_order_while_the_job_runs(
    tmp_path: Path, external: bool
) -> None:
    gate = tmp_path / "gate"
    gate.mkdir()
    recipe = numpy_recipe(
        "streaming_client.py",
        num_rounds=2,
        train_args=f"--gate {gate}",
        launch_external_process=external,
    )
    recipe.enable_log_streaming()
    recipe.set_config("logs.stream_interval", 0.05)
    env = SimEnv(num_clients=2, workspace_root=str(tmp_path / "ws"), progress=False, wait=False)
    run = recipe.execute(env)
    result = Path(env.workspace_root) / "test-job"  # the job's workspace, while it runs
    for site in SITES:
        copy = result / "server" / SITE_LOGS / site / "log.txt"
        # round 1 waits for the go: these lines arrived while the job was running
        wait_for_text(copy, f"{site} round 0 line {LINES - 1}")
        (gate / f"{site}.go").touch()
    run.get_result(timeout=120)
    assert run.get_status() == "FINISHED:COMPLETED", run.get_message()
    for site in SITES:
        own = (result / site / "log.txt").read_text(encoding="utf-8")
        copy = (result / "server" / SITE_LOGS / site / "log.txt").read_text(encoding="utf-8")
        assert own.startswith(copy)  # the site's file, in its order, up to the job's end
        expected = [f"{site} round {r} line {i}" for r in range(2) for i in range(LINES)]
        assert script_lines(copy, site) == expected


def test_enable_log_streaming_names_files_in_the_sites_folder() -> None:
    recipe = numpy_recipe()
    recipe.enable_log_streaming("log.txt", "train.log")
    assert recipe.job.config["logs.stream"] is True
    assert recipe.job.config["logs.stream_files"] == "log.txt,train.log"
    for bad in ("../secrets", "/etc/passwd", "a,b", ""):
        with pytest.raises(RecipeArgumentError, match="enable_log_streaming takes names"):
            recipe.enable_log_streaming(bad)


class Endpoint:
    def __init__(self) -> None:
        self.handlers: dict[str, Any] = {}

    def register_handler(self, topic: str, handler: Any) -> None:
        self.handlers[topic] = handler


def test_the_collector_keeps_batches_in_order_once_each(tmp_path: Path) -> None:
    seen: list[tuple[str, str, list[str]]] = []
    endpoint = Endpoint()
    LogCollector(tmp_path, SITES, lambda *args: seen.append(args)).attach(endpoint)
    handle = endpoint.handlers["logs.lines"]
    assert handle("site-1", {"file": "log.txt", "seq": 0, "lines": ["a", "b"]}) is True
    assert handle("site-1", {"file": "log.txt", "seq": 0, "lines": ["a", "b"]}) is True  # again
    assert "expected 1" in handle("site-1", {"file": "log.txt", "seq": 2, "lines": ["d"]})["error"]
    assert handle("site-1", {"file": "log.txt", "seq": 1, "lines": ["c"]}) is True
    assert (tmp_path / "site-1" / "log.txt").read_text() == "a\nb\nc\n"
    assert seen == [("site-1", "log.txt", ["a", "b"]), ("site-1", "log.txt", ["c"])]
    assert "error" in handle("site-9", {"file": "log.txt", "seq": 0, "lines": []})
    assert "error" in handle("site-2", {"file": "../x", "seq": 0, "lines": []})
    assert "error" in handle("site-2", {"file": "log.txt", "seq": 0, "lines": [b"x"]})


def test_the_streamer_sends_whole_lines_and_resends_a_failed_batch(tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    sent: list[dict[str, Any]] = []
    failing = [True]

    def send(payload: dict[str, Any]) -> None:
        if failing[0]:
            failing[0] = False
            raise ConnectionError("server busy")
        sent.append(payload)

    streamer = LogStreamer("site-1", tmp_path, ["log.txt", "missing.txt"], send, 60.0)
    log.write_text("one\ntw")
    assert streamer.flush() is False  # the first send failed
    assert streamer.flush() is True
    with open(log, "a") as f:
        f.write("o\nthree\n")
    streamer.flush()
    with open(log, "a") as f:
        f.write("tail without newline")
    streamer.close()
    assert [p["seq"] for p in sent] == [0, 1, 2]
    assert [p["lines"] for p in sent] == [["one"], ["two", "three"], ["tail without newline"]]


def test_a_follower_reads_whole_lines_from_an_offset(tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    log.write_bytes(b"first\nsecond\npart")
    text, offset = read_log_chunk(log, 0, final=False)
    assert (text, offset) == ("first\nsecond\n", 13)
    assert read_log_chunk(log, offset, final=False) == ("", 13)
    assert read_log_chunk(log, offset, final=True) == ("part", 17)


def test_script_output_in_a_sites_log_is_told_from_its_records() -> None:
    record = "2026-12-02 11:00:00,123 INFO ember.job.abc.site-1: script returned"
    printed = "2026-12-02 11:00:00,123 INFO ember.job.abc.site-1.stdout: hello"
    assert not is_script_record(record, "site-1")
    assert is_script_record(printed, "site-1")
    assert is_script_record("raw output of a subprocess", "site-1")
