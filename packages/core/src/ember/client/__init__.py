"""The Client API: ``import ember.client as flare`` turns a training script into an FL client.

``init()``, ``receive()``, ``send(FLModel(...))`` and ``is_running()`` are the loop;
``system_info()``, ``get_site_name()``, ``get_job_id()``, ``get_config()`` and ``log()`` tell
the script where it runs and report values.
"""

from ember.client.api import (
    get_config,
    get_job_id,
    get_site_name,
    init,
    is_evaluate,
    is_running,
    is_submit_model,
    is_train,
    log,
    receive,
    send,
    system_info,
)
from ember.client.session import ClientAPIError
from ember.common.model import NUMPY_KEY, FLModel, MetaKey, ParamsType, TransferType

NUM_STEPS_CURRENT_ROUND = MetaKey.NUM_STEPS_CURRENT_ROUND

__all__ = [
    "NUMPY_KEY",
    "NUM_STEPS_CURRENT_ROUND",
    "ClientAPIError",
    "FLModel",
    "MetaKey",
    "ParamsType",
    "TransferType",
    "get_config",
    "get_job_id",
    "get_site_name",
    "init",
    "is_evaluate",
    "is_running",
    "is_submit_model",
    "is_train",
    "log",
    "receive",
    "send",
    "system_info",
]
