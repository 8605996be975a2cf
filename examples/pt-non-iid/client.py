"""pt-non-iid client: one training script for FedAvg, FedProx, SCAFFOLD and FedOpt.

What the task carries decides the algorithm's site side:
- ``meta["fedprox_mu"]`` (FedProxRecipe): add ``PTFedProxLoss(mu)`` towards the received model;
- ``meta["scaffold_c_global"]`` (ScaffoldRecipe): correct every SGD step with
  ``PTScaffoldHelper`` and send the control-variate change;
- neither (FedAvgRecipe, FedOptRecipe: FedOpt's optimizer runs on the server): plain SGD.

Each round the received global model is evaluated on the shared test set first and its
``accuracy`` sent in the metrics, so the server records the accuracy per round.
"""

import argparse

import torch
from data import accuracy, site_data, test_data
from model import DigitsMLP

import ember.client as flare
from ember.client import FLModel
from ember_pt.fedprox import PTFedProxLoss, fedprox_mu
from ember_pt.scaffold import SCAFFOLD_C_GLOBAL, PTScaffoldHelper


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n-sites", type=int, default=8)
    parser.add_argument("--alpha", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=0.05)
    args = parser.parse_args()

    flare.init()
    site = flare.get_site_name()
    index = int(site.rsplit("-", 1)[-1]) - 1  # site-1 -> 0
    torch.set_num_threads(1)  # sites are threads of one process in SimEnv
    # the site's own shuffle stream, the same for every algorithm (no global torch RNG use:
    # the sites share a process)
    shuffle = torch.Generator().manual_seed(args.seed * 1000 + index)
    x, y = site_data(index, args.n_sites, args.alpha, args.seed)
    x_test, y_test = test_data()
    model = DigitsMLP()
    loss_fn = torch.nn.CrossEntropyLoss()
    scaffold = PTScaffoldHelper()  # keeps this site's c_i across rounds

    while flare.is_running():
        input_model = flare.receive()
        if input_model is None:
            break
        model.load_state_dict(input_model.params)  # a state_dict of CPU tensors
        metrics = {"accuracy": accuracy(model, x_test, y_test)}  # of the received model
        if flare.is_evaluate():
            flare.send(FLModel(metrics=metrics))
            continue

        meta = input_model.meta or {}
        mu = fedprox_mu(input_model, 0.0)
        proximal = PTFedProxLoss(mu) if mu else None
        global_params = {k: p.detach().clone() for k, p in model.named_parameters()}
        use_scaffold = SCAFFOLD_C_GLOBAL in meta
        if use_scaffold:
            scaffold.start_round(model, meta)
        optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)  # plain SGD, no state

        model.train()
        total, steps = 0.0, 0
        for _ in range(args.epochs):
            for batch in torch.randperm(len(x), generator=shuffle).split(args.batch_size):
                optimizer.zero_grad()
                loss = loss_fn(model(x[batch]), y[batch])
                total += loss.item()
                if proximal is not None:
                    loss = loss + proximal(model, global_params)
                loss.backward()
                optimizer.step()
                if use_scaffold:
                    scaffold.step(model, args.lr)  # y -= lr * (c - c_i)
                steps += 1

        out_meta = {flare.NUM_STEPS_CURRENT_ROUND: len(x)}  # FedAvg weights sites by size
        if use_scaffold:
            out_meta.update(scaffold.end_round(model, args.lr))  # scaffold_c_diff
        metrics["train_loss"] = total / max(steps, 1)
        flare.send(
            FLModel(
                params=model.state_dict(),
                metrics=metrics,
                current_round=input_model.current_round,
                meta=out_meta,
            )
        )


if __name__ == "__main__":
    main()
