"""hello-dp client: DP-SGD with Opacus, one privacy budget for the whole job.

The script runs once per site and loops over the rounds (the recipe's ``launch_once``), so
the ``PrivacyEngine`` made on the first task, its accountant and the DP optimizer and data
loader live across every round: the epsilon it reports is what the site has spent on its
data since the job began, not per round.
"""

import argparse
import warnings

import torch
from data import accuracy, site_data
from model import CancerMLP
from torch.utils.data import DataLoader, TensorDataset

try:
    from opacus import PrivacyEngine
except ImportError as missing:
    raise SystemExit("hello-dp needs Opacus: pip install 'ember-pt[dp]'") from missing

import ember.client as flare
from ember.client import FLModel


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n-sites", type=int, default=2)
    parser.add_argument("--target-epsilon", type=float, default=2.0)
    parser.add_argument("--delta", type=float, default=1e-5)
    parser.add_argument("--max-grad-norm", type=float, default=1.0)
    parser.add_argument("--local-epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=0.2)
    args = parser.parse_args()

    flare.init()
    site = flare.get_site_name()
    index = int(site.rsplit("-", 1)[-1]) - 1  # site-1 -> 0
    torch.set_num_threads(1)
    # Opacus' per-sample-gradient hooks fire on the first layer, whose input needs no
    # gradient; torch warns about that every time, harmlessly
    warnings.filterwarnings("ignore", message="Full backward hook is firing")
    x, y, x_test, y_test = site_data(index, args.n_sites)
    module = CancerMLP()
    optimizer = torch.optim.SGD(module.parameters(), lr=args.lr)
    loader = DataLoader(
        TensorDataset(x, y),
        batch_size=args.batch_size,
        generator=torch.Generator().manual_seed(index),  # sites share a process in SimEnv
    )
    loss_fn = torch.nn.CrossEntropyLoss()
    engine = None

    while flare.is_running():
        input_model = flare.receive()
        if input_model is None:
            break
        if engine is None:
            # Once, on the first task: size the noise so that ALL the job's rounds together
            # spend target_epsilon. From here on train only with what make_private returns:
            # the wrapped module (per-sample gradients), the optimizer (clip and noise) and
            # the data loader (Poisson sampling, which the accountant's analysis assumes).
            rounds = input_model.total_rounds or 1
            engine = PrivacyEngine(accountant="rdp")
            private, optimizer, loader = engine.make_private_with_epsilon(
                module=module,
                optimizer=optimizer,
                data_loader=loader,
                target_epsilon=args.target_epsilon,
                target_delta=args.delta,
                epochs=rounds * args.local_epochs,
                max_grad_norm=args.max_grad_norm,
                noise_generator=torch.Generator().manual_seed(1000 + index),
            )
        # the global weights go into the module the wrapper holds (its keys have no prefix)
        private._module.load_state_dict(input_model.params)
        received = accuracy(private._module, x_test, y_test)
        if flare.is_evaluate():
            flare.send(FLModel(metrics={"accuracy": received}))
            continue
        private.train()
        for _ in range(args.local_epochs):
            for xb, yb in loader:
                optimizer.zero_grad()
                loss_fn(private(xb), yb).backward()
                optimizer.step()
        eps = engine.get_epsilon(args.delta)
        noise, sample_rate, _ = engine.accountant.history[-1]  # the same every step here
        steps = sum(n for _, _, n in engine.accountant.history)
        local = accuracy(private._module, x_test, y_test)
        print(
            f"{site}: round {input_model.current_round}, epsilon spent {eps:.3f} "
            f"(delta {args.delta:g}), test accuracy of the received model {received:.3f}, "
            f"after local DP training {local:.3f}"
        )
        flare.send(
            FLModel(
                params=private._module.state_dict(),
                metrics={
                    "accuracy": received,
                    "local_accuracy": local,
                    "dp_epsilon": eps,  # the key metrics_summary.json gathers (privacy_spent)
                    "dp_delta": args.delta,
                    "noise_multiplier": noise,
                    "sample_rate": sample_rate,
                    "dp_steps": steps,
                },
                current_round=input_model.current_round,
                meta={flare.NUM_STEPS_CURRENT_ROUND: len(x)},
            )
        )


if __name__ == "__main__":
    main()
