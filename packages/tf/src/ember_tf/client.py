"""Client API helpers for Keras training scripts: a model's weights to and from an ``FLModel``.

    import ember.client as flare
    from ember_tf.client import load_weights, to_flmodel

    flare.init()
    while flare.is_running():
        input_model = flare.receive()
        load_weights(model, input_model)          # every layer's weights, checked by name
        model.fit(x, y, epochs=1)
        flare.send(to_flmodel(model, metrics={"accuracy": acc}, num_steps=len(x)))

Scripts written for NVFlare work unchanged: ``input_model.params`` is ``{layer name:
[arrays]}`` (``model.get_layer(k).set_weights(v)``) and ``FLModel(params={layer.name:
layer.get_weights() for layer in model.layers})`` is what to send.
"""

from __future__ import annotations

from typing import Any

from ember.client import NUM_STEPS_CURRENT_ROUND, FLModel
from ember_tf.convert import load_model_params


def model_weights(model: Any) -> dict[str, list[Any]]:
    """``{layer name: layer.get_weights()}`` for every layer with weights (NVFlare's form)."""
    return {layer.name: layer.get_weights() for layer in model.layers if layer.weights}


def load_weights(model: Any, input_model: FLModel) -> None:
    """Set ``model``'s weights from a received ``FLModel``; a missing layer or a shape that
    differs is a ``ValueError`` naming the layer."""
    if not input_model.params:
        raise ValueError("the received FLModel has no params to load into the model")
    load_model_params(model, input_model.params)


def to_flmodel(
    model: Any,
    metrics: dict[str, Any] | None = None,
    num_steps: float | None = None,
    meta: dict[str, Any] | None = None,
) -> FLModel:
    """An ``FLModel`` with ``model``'s weights; ``num_steps`` (e.g. the examples trained on)
    weights the result in FedAvg (``meta["NUM_STEPS_CURRENT_ROUND"]``)."""
    out_meta = dict(meta or {})
    if num_steps is not None:
        out_meta[NUM_STEPS_CURRENT_ROUND] = num_steps
    return FLModel(params=model_weights(model), metrics=metrics, meta=out_meta)
