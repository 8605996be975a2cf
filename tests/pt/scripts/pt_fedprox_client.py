"""Two SGD steps (lr 1) on loss = -k * sum(w) + PTFedProxLoss(mu)(model, global_model).

Step 1 starts at the global model (the proximal gradient is 0): w1 = w + k. Step 2 adds
mu * (w1 - w) = mu * k to the gradient: w2 = w + 2k - mu * k. Sent with weight k; the
mu each site used is reported as a metric.
"""

import copy

import torch
from pt_tiny import TinyNet

import ember.client as flare
from ember.client import FLModel
from ember_pt.client import to_state_dict
from ember_pt.fedprox import PTFedProxLoss, fedprox_mu

flare.init()
k = int(flare.get_site_name().rsplit("-", 1)[-1])
while flare.is_running():
    input_model = flare.receive()
    if input_model is None:
        break
    mu = fedprox_mu(input_model)
    if mu is None:
        raise RuntimeError("the task carries no fedprox_mu")
    model = TinyNet(3)
    model.load_state_dict(to_state_dict(input_model.params))
    global_model = copy.deepcopy(model).requires_grad_(False)
    proximal = PTFedProxLoss(mu)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    for _ in range(2):
        optimizer.zero_grad()
        loss = -k * sum(p.sum() for p in model.parameters()) + proximal(model, global_model)
        loss.backward()
        optimizer.step()
    flare.send(
        FLModel(
            params=model.state_dict(),
            metrics={"accuracy": 0.5, "fedprox_mu": mu},
            meta={flare.NUM_STEPS_CURRENT_ROUND: k},
        )
    )
