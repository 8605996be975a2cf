"""The shared vocabulary of Ember: what the Client API, the runtime and plugins all speak.

``FLModel`` and its enums and keys (what a training script exchanges with the server) and the
task and result messages between the server and the sites; ``Setting``, the declaration of
a tunable that plugins register and :mod:`ember.config` resolves. This package imports nothing of
Ember's but :mod:`ember.errors`, so every layer may use it (as Flower keeps ``flwr.common``).
"""

from ember.common.components import Component, constructor_arguments
from ember.common.messages import MetricRecord, ResultStatus, Task, TaskName, TaskResult
from ember.common.model import NUMPY_KEY, FLModel, MetaKey, ParamsType, TransferType
from ember.common.setting import ConfigError, Setting

__all__ = [
    "NUMPY_KEY",
    "Component",
    "ConfigError",
    "FLModel",
    "MetaKey",
    "MetricRecord",
    "ParamsType",
    "ResultStatus",
    "Setting",
    "Task",
    "TaskName",
    "TaskResult",
    "TransferType",
    "constructor_arguments",
]
