"""Site log files written by the process's one log writer: whole and in order once closed."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

from ember.runtime.logs import NodeLogs, flush_log_files


def test_many_sites_log_lines_are_in_their_files_in_order_once_the_logs_close(
    tmp_path: Path,
) -> None:
    sites = [f"site-{i}" for i in range(300)]  # more files than the writer may keep open
    logs = {
        s: NodeLogs(f"test.writer.{s}", tmp_path / s, logging.INFO, hold_open=False) for s in sites
    }

    def work(site: str) -> None:
        for i in range(20):
            logs[site].logger.info("line %d of %s", i, site)

    threads = [threading.Thread(target=work, args=(s,)) for s in sites]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for each in logs.values():
        each.close(wait=False)
    assert flush_log_files(60.0)
    for site in sites:
        text = (tmp_path / site / "log.txt").read_text(encoding="utf-8").splitlines()
        assert [line.split(": ", 1)[1] for line in text] == [
            f"line {i} of {site}" for i in range(20)
        ]
        records = (tmp_path / site / "log.jsonl").read_text(encoding="utf-8").splitlines()
        assert [json.loads(r)["message"] for r in records] == [
            f"line {i} of {site}" for i in range(20)
        ]


def test_a_closed_nodes_logs_are_whole_when_close_returns(tmp_path: Path) -> None:
    node = NodeLogs("test.writer.one", tmp_path, logging.INFO, hold_open=False)
    node.logger.info("first")
    node.logger.warning("second")
    node.close()
    lines = (tmp_path / "log.txt").read_text(encoding="utf-8").splitlines()
    assert [line.split(": ", 1)[1] for line in lines] == ["first", "second"]
