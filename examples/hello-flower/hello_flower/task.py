"""The model and the data: multinomial logistic regression (numpy) on scikit-learn's digits,
split into ``num_partitions`` equal, disjoint, deterministic partitions."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits

N_FEATURES = 64
N_CLASSES = 10


def initial_weights() -> list[np.ndarray]:
    """Zero weights and biases: every run starts from the same model."""
    return [np.zeros((N_FEATURES, N_CLASSES)), np.zeros(N_CLASSES)]


def load_partition(partition_id: int, num_partitions: int) -> tuple[np.ndarray, np.ndarray]:
    """This partition's rows (pixels scaled to [0, 1]) and labels."""
    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))
    part = np.array_split(order, num_partitions)[partition_id]
    return x[part] / 16.0, y[part]


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def loss_and_accuracy(
    weights: list[np.ndarray], x: np.ndarray, y: np.ndarray
) -> tuple[float, float]:
    p = _softmax(x @ weights[0] + weights[1])
    loss = float(-np.log(p[np.arange(len(y)), y] + 1e-12).mean())
    return loss, float((p.argmax(axis=1) == y).mean())


def train(
    weights: list[np.ndarray], x: np.ndarray, y: np.ndarray, epochs: int, lr: float
) -> list[np.ndarray]:
    """Full-batch gradient descent for ``epochs`` steps (deterministic)."""
    w, b = weights[0].copy(), weights[1].copy()
    onehot = np.eye(N_CLASSES)[y]
    for _ in range(epochs):
        grad = _softmax(x @ w + b) - onehot
        w -= lr * x.T @ grad / len(y)
        b -= lr * grad.mean(axis=0)
    return [w, b]
