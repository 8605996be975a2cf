"""Which first-party package provides what, for "install X" hints in error messages."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Provider:
    """A first-party framework package."""

    distribution: str
    framework: str
    modules: tuple[str, ...]


PROVIDERS: tuple[Provider, ...] = (
    Provider("ember-pt", "pytorch", ("torch",)),
    Provider("ember-tf", "tensorflow", ("tensorflow", "keras", "tf_keras")),
    Provider("ember-sklearn", "sklearn", ("sklearn",)),
    Provider("ember-xgboost", "xgboost", ("xgboost",)),
    Provider("ember-flower", "flower", ("flwr",)),
    Provider("ember-edge", "edge", ()),
)

ALIASES = {
    "pt": "pytorch",
    "torch": "pytorch",
    "tf": "tensorflow",
    "keras": "tensorflow",
    "scikit-learn": "sklearn",
    "flwr": "flower",
    "np": "numpy",
}


def provider_for(kind: str, name: str) -> Provider | None:
    """The first-party package that would register ``name`` for ``kind``, if one would.

    Recipe names start with their framework (``pytorch-fedavg``), decomposer names with the
    module of their type (``torch.Tensor``), tensor adapters and params converters are named
    after their framework.
    """
    if kind == "decomposer":
        root = name.split(".", 1)[0]
        return next((p for p in PROVIDERS if root in p.modules), None)
    head = name.lower().split("-", 1)[0].split(".", 1)[0]
    head = ALIASES.get(head, head)
    return next((p for p in PROVIDERS if head == p.framework), None)
