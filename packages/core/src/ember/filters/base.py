"""The filter contract: a transformation of task data or task results at one point of the path.

A filter sees the :class:`~ember.common.model.FLModel` of one task on one side of the link
(a site or the server) going one way, and returns the model to pass on::

    server --task data--> [server output] ~~wire~~ [client input]  --> training script
    server <--result----- [server input]  ~~wire~~ [client output] <-- training script

Client output filters run in the site's process before the result leaves the site: whatever
they drop never reaches the wire. A recipe attaches filters with
``recipe.add_client_output_filter(filter, tasks=None, clients=None)`` and its three
siblings; a site's own privacy policy (``<site folder>/local/privacy.json``) adds filters the
job cannot remove (:mod:`ember.filters.policy`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ember.common.components import Component
from ember.common.model import FLModel, MetaKey, ParamsType
from ember.errors import EmberError


class FilterError(EmberError, ValueError):
    """A filter is misconfigured or cannot process what it was given."""


CLIENT, SERVER = "client", "server"
INPUT, OUTPUT = "input", "output"
SIDES = (CLIENT, SERVER)
DIRECTIONS = (INPUT, OUTPUT)

#: the metrics in which a privacy filter (or a DP training script) reports the epsilon a
#: site has spent so far in the job; ``metrics_summary.json`` gathers them per site
SPENT_EPSILON_KEYS = ("dp_epsilon", "svt_epsilon_total")


@dataclass
class FilterContext:
    """Where a filter runs: ``side`` (``client``/``server``), ``direction``
    (``input``/``output``), the ``task`` name, the ``site`` the data goes to or comes from,
    the job id, and for a client output filter the task data that site received
    (``received``, after its input filters) so a filter can work on the update
    ``result - received`` of a full-weights result. ``state`` is the filter chain's own
    per-site scratch space (a filter keeps state on itself; each site has its own instances)."""

    side: str
    direction: str
    task: str
    site: str
    job_id: str = ""
    received: FLModel | None = None
    state: dict[str, Any] = field(default_factory=dict)


class Filter(Component):
    """Base of every filter: :meth:`process` takes the model and returns the model to pass on.

    A filter is built at each site (or at the server) from the class and the constructor
    arguments it was made with in ``job.py`` (:class:`~ember.common.components.Component`
    records them), so its arguments must be JSON values and its class importable at the
    sites (a module beside ``job.py`` is bundled into the job). One instance serves one site
    for the whole job, so a filter may keep state across rounds (an accountant). It must not
    change the arrays it is given in place (the server may share one task's data between
    sites); build new ones. Metrics a filter adds to ``model.metrics`` (its epsilon) are
    recorded with the round's site metrics.

    Example: a filter rounding every variable to ``decimals`` places, attached to what every
    site sends back for the ``train`` task::

        # my_filters.py, beside job.py
        import numpy as np
        from ember.filters import Filter, FilterContext, replace_params
        from ember.common.model import FLModel

        class Round(Filter):
            def __init__(self, decimals: int = 3) -> None:
                self.decimals = decimals

            def process(self, model: FLModel, ctx: FilterContext) -> FLModel:
                params = {k: np.round(np.asarray(v), self.decimals)
                          for k, v in (model.params or {}).items()}
                return replace_params(model, params)

        # job.py
        recipe.add_client_output_filter(Round(decimals=2), tasks=["train"])
    """

    def process(self, model: FLModel, ctx: FilterContext) -> FLModel:
        """The model to pass on instead of ``model``."""
        raise NotImplementedError(f"{type(self).__name__} must implement process(model, ctx)")

    def check(self) -> None:
        """Refuse bad constructor arguments (a :class:`FilterError` naming the fix); called
        when the filter is attached and when it is built at a site."""


def replace_params(model: FLModel, params: dict[str, Any], **changes: Any) -> FLModel:
    """A copy of ``model`` with ``params`` (and other fields in ``changes``); meta and
    metrics are copied so the caller may change them."""
    from dataclasses import replace

    return replace(
        model,
        params=params,
        meta=dict(model.meta),
        metrics=None if model.metrics is None else dict(model.metrics),
        **changes,
    )


def as_array(value: Any) -> np.ndarray[Any, Any]:
    """``value`` (a numpy array, a CPU tensor, a number) as a float numpy array."""
    array = np.asarray(value)
    return array if np.issubdtype(array.dtype, np.floating) else array.astype(np.float64)


def model_update(model: FLModel, ctx: FilterContext) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(update, base)``: the update a result carries by variable and what to add back to
    it to make the result again. A ``DIFF`` result is its own update (base empty); a
    ``FULL`` result's update is its difference to the task data the site received
    (``ctx.received``); a variable the site did not receive is treated as an update."""
    params = model.params or {}
    received = (ctx.received.params or {}) if ctx.received is not None else {}
    if model.params_type == ParamsType.DIFF or not received:
        return {k: as_array(v) for k, v in params.items()}, {}
    update: dict[str, Any] = {}
    base: dict[str, Any] = {}
    for name, value in params.items():
        array = as_array(value)
        if name in received and np.shape(received[name]) == array.shape:
            base[name] = as_array(received[name])
            update[name] = array - base[name]
        else:
            update[name] = array
    return update, base


def with_update(model: FLModel, update: dict[str, Any], base: dict[str, Any]) -> FLModel:
    """``model`` carrying ``update`` (plus ``base`` where :func:`model_update` took it)."""
    params = {
        name: (value + base[name] if name in base else value).astype(
            np.asarray((model.params or {})[name]).dtype
            if np.issubdtype(np.asarray((model.params or {})[name]).dtype, np.floating)
            else value.dtype,
            copy=False,
        )
        for name, value in update.items()
    }
    return replace_params(model, params)


def local_steps(model: FLModel) -> float:
    """The result's ``NUM_STEPS_CURRENT_ROUND`` (1 when absent or not positive): NVFlare's
    percentile and SVT filters work on the update per local step."""
    steps = model.meta.get(MetaKey.NUM_STEPS_CURRENT_ROUND, 1)
    try:
        value = float(steps)
    except (TypeError, ValueError):
        return 1.0
    return value if value > 0 else 1.0
