"""hello-cyclic client: load the model the previous site sent (``ember_tf.client.load_weights``),
train on this site's digits, send it on (``ember_tf.client.to_flmodel``)."""

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
from ember_tf.client import load_weights, to_flmodel


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
    shuffle = np.random.default_rng(index)  # this site's own order, the same every run

    while flare.is_running():
        input_model = flare.receive()
        if input_model is None:
            break
        load_weights(model, input_model)  # every layer, checked by name and shape
        received = accuracy(model, x_test, y_test)
        for _ in range(args.epochs):
            order = shuffle.permutation(len(x))
            model.fit(
                x[order], y[order], batch_size=args.batch_size, epochs=1, shuffle=False, verbose=0
            )
        trained = accuracy(model, x_test, y_test)
        position = input_model.meta.get("cyclic_position")
        print(
            f"{site}: round {input_model.current_round}, position {position}: received model "
            f"accuracy {received:.3f}, after local training {trained:.3f}"
        )
        flare.send(to_flmodel(model, metrics={"accuracy": trained}, num_steps=len(x)))


if __name__ == "__main__":
    main()
