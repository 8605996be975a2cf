"""Benchmark client: adds 1 to every array in place (training without a second copy).

Run as its own process (launch_external_process), it leaves its peak RSS in its working
directory (the site's folder) for the benchmark to read.
"""

import os
import resource
from pathlib import Path

import ember.client as flare

flare.init()
while flare.is_running():
    model = flare.receive()
    if model is None:
        break
    for array in model.params.values():
        array += 1
    flare.send(model)
    del model
if "EMBER_CLIENT_ENDPOINT" in os.environ:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    Path("peak_rss_bytes").write_text(str(peak))
