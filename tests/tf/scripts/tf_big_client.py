"""Sends large TF tensors every round, from both sites (float16, bfloat16 and a tf.Variable,
each above streaming.min_tensor_bytes: streamed, not inlined); from round 1 on, checks the
global model it receives is the average of what the sites sent, bit for bit."""

import numpy as np
import tensorflow as tf

import ember.client as flare
from ember.client import FLModel

SHAPE = (1024, 640)  # 1.25 MiB in a 2-byte dtype


def big_tensors() -> dict[str, object]:
    """The same tensors at every site (their average is themselves)."""
    w = np.random.default_rng(7).standard_normal(SHAPE, dtype=np.float32)
    return {
        "w16": tf.constant(w.astype(np.float16)),
        "wbf": tf.cast(tf.constant(w), tf.bfloat16),
        "var": tf.Variable(w[:512] * 3),
    }


def expected() -> dict[str, np.ndarray]:
    """What the server holds: numpy; bfloat16 widened exactly to float32."""
    sent = big_tensors()
    return {
        "w16": sent["w16"].numpy(),
        "wbf": tf.cast(sent["wbf"], tf.float32).numpy(),
        "var": sent["var"].numpy(),
    }


if __name__ == "__main__":
    flare.init()
    while flare.is_running():
        model = flare.receive()
        if model is None:
            break
        if model.current_round > 0:  # the previous round's average
            for name, value in expected().items():
                got = model.params[name]  # a numpy job's script receives numpy arrays
                if (
                    not isinstance(got, np.ndarray)
                    or got.dtype != value.dtype
                    or got.tobytes() != value.tobytes()
                ):
                    raise RuntimeError(f"received {name} differs from what was sent")
        flare.send(FLModel(params=big_tensors(), meta={flare.NUM_STEPS_CURRENT_ROUND: 1}))
