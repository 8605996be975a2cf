"""``ScaffoldRecipe``: SCAFFOLD (Karimireddy et al. 2020) for Keras models."""

from __future__ import annotations

from typing import Any

from ember_tf.recipes.fedavg import FedAvgRecipe

SCAFFOLD_CONTROLLER = "ember.controllers:ScaffoldController"


class ScaffoldRecipe(FedAvgRecipe):
    """SCAFFOLD of a Keras model (NVFlare's TensorFlow ``ScaffoldRecipe``): FedAvg whose
    sites correct their drift with control variates (option II). Takes
    :class:`ember_tf.recipes.FedAvgRecipe`'s arguments.

    Every train task carries the global control variates in ``meta["scaffold_c_global"]``
    (numpy arrays keyed ``"<layer>/<index>"``; zeros in round 0) and every result must
    carry the site's change ``meta["scaffold_c_diff"]``: use
    ``ember_tf.scaffold.TFScaffoldHelper`` in the training script. The server averages the
    models as FedAvg does (server learning rate 1) and sets ``c += sum(c_diff) / N``, N
    being the job's number of sites; it saves ``c`` as
    ``server/models/scaffold_c_global.safetensors``.
    """

    controller = SCAFFOLD_CONTROLLER

    def __init__(self, *, name: str = "scaffold", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
