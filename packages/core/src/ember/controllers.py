"""The server-side workflow contract for plugin authors: one import for a controller.

A controller is any class with ``run(ctx: ServerContext) -> None`` (:class:`Controller`, with
a worked example). What it may use while it runs:

- ``ctx.board`` (:class:`TaskBoard`): ``broadcast`` (or ``post`` then ``collect``) gives sites
  a task and feeds their results to a callback one at a time, in the job's site order;
  ``alive_sites()``; it raises :class:`InsufficientClients` as soon as fewer than the minimum
  can still answer.
- a custom aggregation for FedAvg (a recipe's ``aggregator=``): :class:`Aggregator`
  (``add(site, model, weight)``, ``result()``), built by :func:`build_aggregator`;
- aggregating one result at a time: :class:`WeightedAverage` (a running weighted sum in the
  arrays' own dtype), :func:`apply_update` (FULL or DIFF onto the global model), and
  :func:`resolve_deferred` to pull a result's tensors when an algorithm needs them all at once;
- persisting models: :func:`build_persistor` builds the persistor a recipe named
  (:class:`ModelPersistor`; :class:`NumpyPersistor`, and :class:`InitialModelPersistor` to
  derive a framework's own), :func:`save_npz`, :func:`load_numpy_file`;
- resuming after a server crash: :class:`Resumable` (``checkpoint_state()`` /
  ``restore_state(state)``), :func:`resume_params` when ``run`` starts and
  :func:`checkpoint_round` after each completed round (docs/reliability.md);
- the best model and stopping: :class:`BestModelTracker`, :class:`StopCondition`;
  :func:`release_memory` (garbage, idle receive buffers, the CUDA cache) every few rounds;
- records: ``ctx.records.round(...)`` / ``ctx.records.summary(...)`` write
  ``round_metrics.jsonl`` and ``metrics_summary.json``; ``ctx.progress``, ``ctx.log``;
- built-in workflows to subclass or name as a recipe's target (``"ember.controllers:Name"``):
  :class:`FedAvgController` (hooks ``round_task_meta``, ``kept_for_update``,
  ``result_received``, ``next_global``, ``round_finished``), :class:`CyclicController`,
  :class:`FedEvalController`, :class:`CrossSiteEvalController`, :class:`SwarmController`,
  :class:`ScaffoldController` (SCAFFOLD's control variates, framework-neutral)
  (whose sites run :class:`ember.site_workflows.SwarmSiteLink`).

A controller that cannot go on raises :class:`JobError` naming the site and the fix.
"""

from ember.client.formats import NUMPY, convert_params
from ember.common import FLModel, MetaKey, ParamsType, ResultStatus, TaskName, TaskResult
from ember.runtime.aggregation import WeightedAverage, apply_update
from ember.runtime.board import Collected, Posted, TaskBoard
from ember.runtime.checkpoint import CheckpointError, Resumable, checkpoint_round, resume_params
from ember.runtime.context import ServerContext
from ember.runtime.controller import (
    Aggregator,
    BestModelTracker,
    Controller,
    build_aggregator,
    build_persistor,
    resolve_class,
)
from ember.runtime.controllers.cross_site_eval import CrossSiteEvalController
from ember.runtime.controllers.cyclic import CyclicController
from ember.runtime.controllers.fed_eval import FedEvalController
from ember.runtime.controllers.fed_task import FedTaskController
from ember.runtime.controllers.fedavg import FedAvgController
from ember.runtime.controllers.newton_raphson import NewtonRaphsonController
from ember.runtime.controllers.scaffold import (
    SCAFFOLD_C_DIFF,
    SCAFFOLD_C_GLOBAL,
    ScaffoldController,
)
from ember.runtime.controllers.swarm import SwarmController
from ember.runtime.errors import InsufficientClients, JobAborted, JobError
from ember.runtime.persistors import (
    InitialModelPersistor,
    ModelPersistor,
    NumpyPersistor,
    as_numpy_params,
    build_factory,
    load_numpy_file,
    save_npz,
)
from ember.runtime.stop_condition import StopCondition
from ember.streaming.lazy import DeferredTensor, release_all, resolve_deferred
from ember.streaming.memory import release_memory

__all__ = [
    "NUMPY",
    "SCAFFOLD_C_DIFF",
    "SCAFFOLD_C_GLOBAL",
    "Aggregator",
    "BestModelTracker",
    "CheckpointError",
    "Collected",
    "Controller",
    "CrossSiteEvalController",
    "CyclicController",
    "DeferredTensor",
    "FLModel",
    "FedAvgController",
    "FedEvalController",
    "FedTaskController",
    "InitialModelPersistor",
    "InsufficientClients",
    "JobAborted",
    "JobError",
    "MetaKey",
    "ModelPersistor",
    "NewtonRaphsonController",
    "NumpyPersistor",
    "ParamsType",
    "Posted",
    "ResultStatus",
    "Resumable",
    "ScaffoldController",
    "ServerContext",
    "StopCondition",
    "SwarmController",
    "TaskBoard",
    "TaskName",
    "TaskResult",
    "WeightedAverage",
    "apply_update",
    "as_numpy_params",
    "build_aggregator",
    "build_factory",
    "build_persistor",
    "checkpoint_round",
    "convert_params",
    "load_numpy_file",
    "release_all",
    "release_memory",
    "resolve_class",
    "resolve_deferred",
    "resume_params",
    "save_npz",
]
