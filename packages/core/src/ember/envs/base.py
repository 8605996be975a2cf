"""What every env provides."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ember.envs.run import Run
    from ember.recipes.base import Recipe


class Env(Protocol):
    """Deploys a recipe's job and returns a :class:`Run` to follow it."""

    def deploy(self, recipe: Recipe) -> Run: ...
