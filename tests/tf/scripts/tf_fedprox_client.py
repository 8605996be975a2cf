"""Two SGD steps (lr 1) on loss = -k * sum(w) + TFFedProxLoss(mu)(model, input_model.params).

Step 1 starts at the global model (the proximal gradient is 0): w1 = w + k. Step 2 adds
mu * (w1 - w) = mu * k to the gradient: w2 = w + 2k - mu * k. Sent with weight k; the mu
each site used is reported as a metric."""

import keras
import tensorflow as tf

import ember.client as flare
from ember_tf.client import load_weights, to_flmodel
from ember_tf.fedprox import TFFedProxLoss, fedprox_mu

flare.init()
k = int(flare.get_site_name().rsplit("-", 1)[-1])
model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="dense")])
while flare.is_running():
    input_model = flare.receive()
    if input_model is None:
        break
    mu = fedprox_mu(input_model)
    if mu is None:
        raise RuntimeError("the task carries no fedprox_mu")
    load_weights(model, input_model)
    proximal = TFFedProxLoss(mu)
    optimizer = keras.optimizers.SGD(learning_rate=1.0)
    for _ in range(2):
        with tf.GradientTape() as tape:
            loss = -k * tf.add_n([tf.reduce_sum(w) for w in model.trainable_variables])
            loss += proximal(model, input_model.params)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
    flare.send(to_flmodel(model, metrics={"accuracy": 0.5, "fedprox_mu": mu}, num_steps=k))
