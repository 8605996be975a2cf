"""What every env provides."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ember.envs.run import Run
    from ember.job.definition import Deployable


class Env(Protocol):
    """Deploys a recipe's job (any :class:`~ember.job.definition.Deployable`, which every
    ``Recipe`` is) and returns a :class:`Run` to follow it."""

    def deploy(self, recipe: Deployable) -> Run: ...
