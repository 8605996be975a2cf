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


class NodeLogs:
    """Attaches text and JSON-lines file handlers for one node's logger; ``close`` detaches."""

    def __init__(self, logger_name: str, folder: Path, level: int) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.logger = logging.getLogger(logger_name)
        self.logger.setLevel(level)
        self.handlers: list[logging.Handler] = []
        text = logging.FileHandler(folder / "log.txt", encoding="utf-8")
        text.setFormatter(logging.Formatter(TEXT_FORMAT))
        jsonl = logging.FileHandler(folder / "log.jsonl", encoding="utf-8")
        jsonl.setFormatter(JsonLinesFormatter())
        for handler in (text, jsonl):
            self.logger.addHandler(handler)
            self.handlers.append(handler)

    def close(self) -> None:
        for handler in self.handlers:
            self.logger.removeHandler(handler)
            handler.close()


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
