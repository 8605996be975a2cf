"""Sends BigNet's own (large float16/bfloat16) parameters every round, from both sites."""

import torch
from pt_tiny import BigNet

import ember.client as flare
from ember.client import FLModel

flare.init()
net = BigNet()
while flare.is_running():
    model = flare.receive()
    if model is None:
        break
    if model.current_round > 0:  # what the site received is the previous round's average
        expected = {"w16": net.w16.detach(), "wbf": net.wbf.detach().float()}
        for name, value in expected.items():
            got = model.params[name]  # a pytorch recipe's script receives tensors
            if (
                not isinstance(got, torch.Tensor)
                or got.dtype != value.dtype
                or not torch.equal(got, value)
            ):
                raise RuntimeError(f"received {name} differs from what was sent")
    flare.send(FLModel(params=net.state_dict(), meta={flare.NUM_STEPS_CURRENT_ROUND: 1}))
