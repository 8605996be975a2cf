"""Site log files written by the process's one log writer: whole and in order once closed."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

from ember.runtime.logs import NodeLogs, SharedLogFiles, flush_log_files


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


def test_a_site_log_folder_is_made_with_its_first_line_not_before(tmp_path: Path) -> None:
    folder = tmp_path / "site-1"
    node = NodeLogs("test.writer.lazy", folder, logging.INFO, hold_open=False)
    node.logger.debug("below the level: nothing to write")
    assert flush_log_files(60.0)
    assert not folder.exists()
    node.logger.info("first")
    node.close()
    assert (folder / "log.txt").read_text(encoding="utf-8").endswith(": first\n")


def test_nodes_sharing_log_files_write_each_record_once_naming_its_node(tmp_path: Path) -> None:
    shared = SharedLogFiles(tmp_path / "sites")
    nodes = [
        NodeLogs(f"test.shared.site-{i}", tmp_path / f"site-{i}", logging.INFO, shared=shared)
        for i in range(3)
    ]
    for i, node in enumerate(nodes):
        node.logger.info("hello from %d", i)
    for node in nodes:
        node.close(wait=False)
    nodes[0].logger.info("after its close: not written")
    shared.close()
    assert flush_log_files(60.0)
    lines = (tmp_path / "sites" / "log.txt").read_text(encoding="utf-8").splitlines()
    assert [line.split(" INFO ", 1)[1] for line in lines] == [
        f"test.shared.site-{i}: hello from {i}" for i in range(3)
    ]
    assert not any((tmp_path / f"site-{i}").exists() for i in range(3))
