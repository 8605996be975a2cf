"""Benchmark client: site-N adds N to every tensor of the state_dict it receives, in place.

``input_model.params`` is a state_dict of CPU tensors sharing memory with what arrived, so
the "training" makes no second copy; the same tensors are sent back. Run as its own process
(launch_external_process), it leaves its peak RSS in its working directory (the site's
folder) for the benchmark to read.
"""

import os
import resource
from pathlib import Path

import torch

import ember.client as flare


def train(params: dict, constant: float) -> None:
    """Add ``constant`` to every tensor in place (a function: no loop variable outlives it
    to keep a tensor of this round alive into the next one)."""
    with torch.no_grad():
        for tensor in params.values():
            assert isinstance(tensor, torch.Tensor), type(tensor)
            tensor += constant


flare.init()
constant = float(flare.get_site_name().rsplit("-", 1)[-1])
while flare.is_running():
    model = flare.receive()
    if model is None:
        break
    train(model.params, constant)
    flare.send(model)
    del model
if "EMBER_CLIENT_ENDPOINT" in os.environ:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    Path("peak_rss_bytes").write_text(str(peak))
