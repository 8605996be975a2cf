"""examples/monai-seg2d: a MONAI UNet through the Client API, Dice printed per round."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).parents[2] / "examples" / "monai-seg2d" / "job.py"


def test_monai_seg2d_trains_a_unet_over_two_sites_and_prints_dice_per_round(
    tmp_path: Path,
) -> None:
    pytest.importorskip(
        "monai", reason="monai is not installed (examples/monai-seg2d/requirements.txt)"
    )
    out = subprocess.run(
        [sys.executable, str(EXAMPLE), "--num-rounds", "2", "--steps", "10",
         "--workspace-root", str(tmp_path)],
        capture_output=True, text=True, timeout=240,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    dice = [float(d) for d in re.findall(r"^round \d+: dice ([0-9.]+)$", out.stdout, re.M)]
    assert len(dice) == 2, out.stdout
    assert dice[1] > dice[0]  # the second round's global model segments better
