"""Execution environments: where a recipe runs."""

from ember.envs.base import Env
from ember.envs.run import Run
from ember.envs.sim import SimEnv

__all__ = ["Env", "Run", "SimEnv"]
