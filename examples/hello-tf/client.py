"""hello-tf client, in NVFlare's Keras convention: the received params are {layer name:
[arrays]} (``model.get_layer(k).set_weights(v)``), the sent ones
``{layer.name: layer.get_weights()}``."""

import os

# before tensorflow is imported: quiet, one thread per op (fast on a small CPU), same bits
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import argparse

import keras
import numpy as np
from data import accuracy, site_data, test_data
from model import DigitsNet

import ember.client as flare


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n-sites", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.01)
    args = parser.parse_args()

    flare.init()
    site = flare.get_site_name()
    index = int(site.rsplit("-", 1)[-1]) - 1  # site-1 -> 0
    x, y = site_data(index, args.n_sites)
    x_test, y_test = test_data()
    model = DigitsNet()
    model.build((None, 64))
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=args.lr),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    # sites share a process (and the global random state) in SimEnv: each shuffles with its
    # own generator and fit() does not shuffle, so a run gives the same numbers every time
    shuffle = np.random.default_rng(index)

    while flare.is_running():
        input_model = flare.receive()
        if input_model is None:
            break
        for k, v in input_model.params.items():  # {layer name: [kernel, bias]}
            model.get_layer(k).set_weights(v)
        received = accuracy(model, x_test, y_test)  # of the global model
        for _ in range(args.epochs):
            order = shuffle.permutation(len(x))
            model.fit(
                x[order], y[order], batch_size=args.batch_size, epochs=1, shuffle=False, verbose=0
            )
        print(
            f"{site}: round {input_model.current_round}, received model accuracy {received:.3f}, "
            f"after local training {accuracy(model, x_test, y_test):.3f}"
        )
        flare.send(
            flare.FLModel(
                params={layer.name: layer.get_weights() for layer in model.layers},
                metrics={"accuracy": received},
                current_round=input_model.current_round,
                meta={flare.NUM_STEPS_CURRENT_ROUND: len(x)},
            )
        )


if __name__ == "__main__":
    main()
