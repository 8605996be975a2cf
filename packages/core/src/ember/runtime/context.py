"""What a server-side controller can use while it runs."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ember.runtime.board import TaskBoard
from ember.runtime.progress import Progress
from ember.runtime.records import RoundRecorder
from ember.tunnel.service import TunnelService


@dataclass
class ServerContext:
    """The job's task board, folders, recorders and a shared ``state`` between workflows."""

    job_id: str
    job_name: str
    job_dir: Path
    server_dir: Path
    board: TaskBoard
    task_timeout: float
    records: RoundRecorder
    progress: Progress
    log: logging.Logger
    state: dict[str, Any] = field(default_factory=dict)
    offload_dir: Path | None = None
    """``streaming.offload_dir`` for this job (None: models stay in memory)."""
    results_filtered: bool = False
    """The job filters results (a client output or server input filter): a result may lack
    variables the global model has, so a workflow keeps their global values."""
    tunnels: TunnelService = field(default_factory=TunnelService)
    """The job's tunnels: a workflow opens one to let sites reach a service beside the
    server (``ember.tunnel``)."""
