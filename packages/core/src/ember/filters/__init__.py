"""Filters on the task data and result paths, and the built-in privacy filters.

Attach a filter to a recipe (``recipe.add_client_output_filter(ExcludeVars(["fc.bias"]))``
and its siblings ``add_client_input_filter``, ``add_server_input_filter``,
``add_server_output_filter``, each ``(filter, tasks=None, clients=None)``), or name it in a
site's privacy policy (:mod:`ember.filters.policy`). Write your own by subclassing
:class:`Filter` (its docstring has a worked example); a plugin registers filter types by name
with the ``ember_filters`` hook. docs/privacy.md says what each built-in protects against.
"""

from ember.filters.base import (
    Filter,
    FilterContext,
    FilterError,
    as_array,
    model_update,
    replace_params,
    with_update,
)
from ember.filters.builtin import ExcludeVars, GaussianPrivacy, PercentilePrivacy, SVTPrivacy
from ember.filters.rdp import RDPAccountant

__all__ = [
    "ExcludeVars",
    "Filter",
    "FilterContext",
    "FilterError",
    "GaussianPrivacy",
    "PercentilePrivacy",
    "RDPAccountant",
    "SVTPrivacy",
    "as_array",
    "model_update",
    "replace_params",
    "with_update",
]
