"""hello-pt client: receive the global model, train one local epoch, send the state_dict."""

import argparse

import torch
from data import accuracy, site_data, test_data
from model import DigitsMLP

import ember.client as flare
from ember.client import FLModel


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n-sites", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    flare.init()
    site = flare.get_site_name()
    index = int(site.rsplit("-", 1)[-1]) - 1  # site-1 -> 0
    torch.manual_seed(index)  # sites share a process in SimEnv: each shuffles with its own
    shuffle = torch.Generator().manual_seed(index)
    torch.set_num_threads(1)
    x, y = site_data(index, args.n_sites)
    x_test, y_test = test_data()
    model = DigitsMLP()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss_fn = torch.nn.CrossEntropyLoss()

    while flare.is_running():
        input_model = flare.receive()
        if input_model is None:
            break
        model.load_state_dict(input_model.params)  # a state_dict of CPU tensors
        metrics = {"accuracy": accuracy(model, x_test, y_test)}  # of the received model
        if flare.is_evaluate():
            flare.send(FLModel(metrics=metrics))
            continue
        model.train()
        for _ in range(args.epochs):
            for batch in torch.randperm(len(x), generator=shuffle).split(args.batch_size):
                optimizer.zero_grad()
                loss_fn(model(x[batch]), y[batch]).backward()
                optimizer.step()
        print(
            f"{site}: round {input_model.current_round}, received model accuracy "
            f"{metrics['accuracy']:.3f}"
        )
        flare.send(
            FLModel(
                params=model.state_dict(),
                metrics=metrics,
                current_round=input_model.current_round,
                meta={flare.NUM_STEPS_CURRENT_ROUND: len(x)},
            )
        )


if __name__ == "__main__":
    main()
