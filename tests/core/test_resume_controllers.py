"""Each built-in workflow declares its state through the Controller contract (Resumable): a
job stopped after round 2 and resumed for rounds 2-3 ends with the same bits as 4 rounds in
one go (SCAFFOLD's control variates, Cyclic's random order generator)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ember import SimEnv
from ember.recipes import CyclicRecipe
from support.sim import INITIAL, SCRIPTS, global_model, numpy_recipe

SCRIPT = str(SCRIPTS / "resume_client.py")


def scaffold(rounds: int) -> Any:
    recipe = numpy_recipe("resume_client.py", name="resume", num_rounds=rounds)
    recipe.job.workflows[0]["target"] = "ember.controllers:ScaffoldController"
    return recipe


def cyclic(rounds: int) -> Any:
    return CyclicRecipe(
        name="resume",
        framework="numpy",
        num_rounds=rounds,
        model=INITIAL,
        train_script=SCRIPT,
        order="random",
        seed=7,
    )


@pytest.mark.parametrize("build", [scaffold, cyclic], ids=["scaffold", "cyclic"])
def test_a_workflow_resumed_after_two_rounds_ends_as_four_rounds_in_one_go(
    build: Callable[[int], Any], tmp_path: Path
) -> None:
    def run(rounds: int, root: str, resume: bool = False) -> Path:
        env = SimEnv(
            num_clients=3, workspace_root=str(tmp_path / root), progress=False, resume=resume
        )
        outcome = build(rounds).execute(env)
        assert outcome.get_status() == "FINISHED:COMPLETED", outcome.get_message()
        return Path(outcome.get_result())

    reference = run(4, "ref")
    run(2, "resumed")
    resumed = run(4, "resumed", resume=True)
    assert global_model(resumed).tobytes() == global_model(reference).tobytes()
    assert "resumed from round 1" in (resumed / "server" / "log.txt").read_text()
    if build is scaffold:
        c = "models/scaffold_c_global.safetensors"
        assert (resumed / "server" / c).read_bytes() == (reference / "server" / c).read_bytes()
