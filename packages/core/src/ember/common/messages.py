"""Messages between the server and the sites: tasks, results, reports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ember.common.model import FLModel


class TaskName:
    """Names of the tasks the built-in controllers send."""

    TRAIN = "train"
    VALIDATE = "validate"
    SUBMIT_MODEL = "submit_model"


class ResultStatus:
    """How a site's task ended."""

    OK = "OK"
    EXECUTION_EXCEPTION = "EXECUTION_EXCEPTION"


@dataclass
class Task:
    """One unit of work for one site, pulled by the site with ``get_task``."""

    name: str
    task_id: str
    data: FLModel | None = None
    timeout: float = 0.0


@dataclass
class TaskResult:
    """A site's answer to a task."""

    task_id: str
    site: str
    status: str = ResultStatus.OK
    data: FLModel | None = None
    message: str = ""


@dataclass
class MetricRecord:
    """One value logged by a training script (``SummaryWriter.add_scalar`` and friends)."""

    site: str
    kind: str
    tag: str
    value: Any
    step: int | None = None
