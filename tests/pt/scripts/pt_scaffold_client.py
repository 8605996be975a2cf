"""SCAFFOLD site: trains ScaffoldNet on fixed site data with PTScaffoldHelper (K = k + 1 SGD
steps on site-k) and writes what each round received and sent to OUT/site-k-r{round}.npz."""

import argparse
from pathlib import Path

import numpy as np
import torch
from pt_scaffold_net import ScaffoldNet

import ember.client as flare
from ember.client import FLModel
from ember_pt.client import from_state_dict, to_state_dict
from ember_pt.convert import to_numpy
from ember_pt.scaffold import SCAFFOLD_C_DIFF, SCAFFOLD_C_GLOBAL, PTScaffoldHelper

parser = argparse.ArgumentParser()
parser.add_argument("--out", required=True)
parser.add_argument("--no-diff", default="", help="a site that sends no scaffold_c_diff")
parser.add_argument("--tensors", action="store_true", help="send c_diff as torch tensors")
args = parser.parse_args()

LR = 0.1
flare.init()
site = flare.get_site_name()
k = int(site.rsplit("-", 1)[-1])
gen = torch.Generator().manual_seed(k)
x = torch.randn(8, 3, generator=gen) + k
y = torch.randn(8, 2, generator=gen)
model = ScaffoldNet()
optimizer = torch.optim.SGD(model.parameters(), lr=LR)
scaffold = PTScaffoldHelper()
while flare.is_running():
    input_model = flare.receive()
    if input_model is None:
        break
    model.load_state_dict(to_state_dict(input_model.params))
    received = {
        name: to_numpy(v) for name, v in input_model.meta.get(SCAFFOLD_C_GLOBAL, {}).items()
    }
    scaffold.start_round(model, input_model.meta)
    steps = k + 1
    for _ in range(steps):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        scaffold.step(model, LR)
    meta = scaffold.end_round(model, LR)
    diff = meta[SCAFFOLD_C_DIFF]
    sent = from_state_dict(model.state_dict())
    record = {f"c_global/{n}": v for n, v in received.items()}
    record.update({f"c_diff/{n}": v for n, v in diff.items()})
    record.update({f"params/{n}": v for n, v in sent.items()})
    np.savez(Path(args.out) / f"{site}-r{input_model.current_round}.npz", **record)
    if site == args.no_diff:
        meta = {}
    elif args.tensors:
        meta = {SCAFFOLD_C_DIFF: {n: torch.from_numpy(v) for n, v in diff.items()}}
    flare.send(
        FLModel(
            params=model.state_dict(),
            metrics={"loss": loss.item()},
            meta={flare.NUM_STEPS_CURRENT_ROUND: steps, **meta},
        )
    )
