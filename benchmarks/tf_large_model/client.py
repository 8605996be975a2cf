"""Benchmark client, an ordinary Keras script: site-N loads the received weights into its own
Keras model, "trains" (every weight + N, as new arrays) and sends
``{layer.name: layer.get_weights()}`` (new arrays again). It keeps the received ``FLModel``
until the next ``receive()``, as a script that logs or compares with it would.

Run as its own process (launch_external_process), it leaves its peak RSS in its working
directory (the site's folder) for the benchmark to read.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import resource
from pathlib import Path

from model import LAYERS, build

import ember.client as flare


def main() -> None:
    flare.init()
    constant = float(flare.get_site_name().rsplit("-", 1)[-1])
    model = None
    while flare.is_running():
        input_model = flare.receive()
        if input_model is None:
            break
        if model is None:  # the width from the first layer's kernel: (width, width)
            width = len(input_model.params["dense_0"][0])
            model = build(width, LAYERS, fill_seed=None)
        for k, v in input_model.params.items():
            model.get_layer(k).set_weights(v)
        for layer in model.layers:  # "training": new arrays, set back into the model
            if layer.weights:
                layer.set_weights([w + constant for w in layer.get_weights()])
        flare.send(
            flare.FLModel(
                params={layer.name: layer.get_weights() for layer in model.layers},
                metrics={"constant": constant},
            )
        )
    if "EMBER_CLIENT_ENDPOINT" in os.environ:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        Path("peak_rss_bytes").write_text(str(peak))


if __name__ == "__main__":
    main()
