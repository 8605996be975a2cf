"""Per-node log files: ``log.txt`` (text) and ``log.jsonl`` (JSON lines) in each node's folder."""

from __future__ import annotations

import json
import logging
import logging.config
from pathlib import Path
from typing import Any

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonLinesFormatter(logging.Formatter):
    """One JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class OpenPerRecordHandler(logging.FileHandler):
    """Appends each record and closes the file again: a simulation of 1000 sites does not
    hold 2000 files open (the usual limit is 1024 per process)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, mode="a", encoding="utf-8", delay=True)

    def emit(self, record: logging.LogRecord) -> None:
        super().emit(record)
        with self.lock:  # type: ignore[union-attr]
            if self.stream is not None:
                self.stream.close()
                self.stream = None


class NodeLogs:
    """Attaches text and JSON-lines file handlers for one node's logger; ``close`` detaches
    them and forgets the logger (names carry the job id, so they must not accumulate)."""

    def __init__(self, logger_name: str, folder: Path, level: int, hold_open: bool = True) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.logger = logging.getLogger(logger_name)
        self.logger.level = level  # not setLevel(): it clears a cache over every logger
        self.handlers: list[logging.Handler] = []

        def handler(path: Path) -> logging.FileHandler:
            if hold_open:
                return logging.FileHandler(path, encoding="utf-8")
            return OpenPerRecordHandler(path)

        text = handler(folder / "log.txt")
        text.setFormatter(logging.Formatter(TEXT_FORMAT))
        jsonl = handler(folder / "log.jsonl")
        jsonl.setFormatter(JsonLinesFormatter())
        for each in (text, jsonl):
            self.logger.addHandler(each)
            self.handlers.append(each)

    def close(self) -> None:
        for handler in self.handlers:
            self.logger.removeHandler(handler)
            handler.close()
        logging.Logger.manager.loggerDict.pop(self.logger.name, None)


def forget_logger_tree(prefix: str) -> None:
    """Drop every logger (and placeholder) named ``prefix`` or below it."""
    names = [
        n for n in logging.Logger.manager.loggerDict if n == prefix or n.startswith(prefix + ".")
    ]
    for name in names:
        logging.Logger.manager.loggerDict.pop(name, None)


def resolve_level(log_config: str | dict[str, Any] | None) -> int:
    """``log_config``: None (INFO), a level name, a dictConfig dict or a JSON file with one."""
    if log_config is None:
        return logging.INFO
    if isinstance(log_config, dict):
        logging.config.dictConfig(log_config)
        return logging.INFO
    if isinstance(log_config, str) and log_config.upper() in logging.getLevelNamesMapping():
        return logging.getLevelNamesMapping()[log_config.upper()]
    path = Path(log_config)
    if path.is_file():
        logging.config.dictConfig(json.loads(path.read_text(encoding="utf-8")))
        return logging.INFO
    raise ValueError(
        f"log_config {log_config!r} is neither a level name (DEBUG, INFO, WARNING, ERROR), a "
        "logging dictConfig dict, nor a JSON file holding one"
    )
