"""SCAFFOLD site: trains the scaffold_net on fixed site data with TFScaffoldHelper (K = k + 1
SGD steps on site-k, a custom loop) and writes what each round received and sent to
OUT/site-k-r{round}.npz (keys "c_global/<layer>/<i>", "c_diff/...", "params/...")."""

import argparse
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from tf_scaffold_net import scaffold_net

import ember.client as flare
from ember_tf.client import load_weights, to_flmodel
from ember_tf.convert import model_params, to_numpy
from ember_tf.scaffold import SCAFFOLD_C_DIFF, SCAFFOLD_C_GLOBAL, TFScaffoldHelper

parser = argparse.ArgumentParser()
parser.add_argument("--out", required=True)
parser.add_argument("--no-diff", default="", help="a site that sends no scaffold_c_diff")
args = parser.parse_args()

LR = 0.1
flare.init()
site = flare.get_site_name()
k = int(site.rsplit("-", 1)[-1])
rng = np.random.default_rng(k)
x = tf.constant(rng.standard_normal((8, 3)).astype(np.float32) + k)
y = tf.constant(rng.standard_normal((8, 2)).astype(np.float32))
model = scaffold_net()
optimizer = keras.optimizers.SGD(learning_rate=LR)
scaffold = TFScaffoldHelper()
while flare.is_running():
    input_model = flare.receive()
    if input_model is None:
        break
    load_weights(model, input_model)
    received = {key: to_numpy(v) for key, v in input_model.meta.get(SCAFFOLD_C_GLOBAL, {}).items()}
    scaffold.start_round(model, input_model.meta)
    steps = k + 1
    for _ in range(steps):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(x, training=True) - y))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        scaffold.step(model, LR)
    meta = scaffold.end_round(model, LR)
    record = {f"c_global/{n}": v for n, v in received.items()}
    record.update({f"c_diff/{n}": v for n, v in meta[SCAFFOLD_C_DIFF].items()})
    record.update({f"params/{n}": v for n, v in model_params(model).items()})
    np.savez(Path(args.out) / f"{site}-r{input_model.current_round}.npz", **record)
    flare.send(
        to_flmodel(
            model,
            metrics={"loss": float(loss)},
            num_steps=steps,
            meta={} if site == args.no_diff else meta,
        )
    )
