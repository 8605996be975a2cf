"""The plugin and the recipe's arguments."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from pt_tiny import TinyNet

from ember.cli.main import cli
from ember.recipes.validation import RecipeArgumentError
from ember_pt.recipes import FedAvgRecipe

SCRIPTS = Path(__file__).parent / "scripts"
SCRIPT = str(SCRIPTS / "pt_add_client.py")


def test_recipe_list_shows_pytorch_fedavg() -> None:
    result = CliRunner().invoke(cli, ["recipe", "list", "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.output)}
    row = rows["pytorch-fedavg"]
    assert row["framework"] == "pytorch"
    assert row["algorithm"] == "FedAvg"
    assert row["target"] == "ember_pt.recipes:FedAvgRecipe"
    assert row["plugin"] == "pt"


def test_plugin_recipe_class_and_decomposer_listing_import_no_torch() -> None:
    code = (
        "import sys\n"
        "from ember.plugins import get_registry\n"
        "import ember_pt.plugin\n"
        "reg = get_registry()\n"
        "assert reg.items('decomposer')['torch.Tensor'].plugin == 'pt'\n"
        "reg.get('recipe', 'pytorch-fedavg').item.load()\n"
        "print('torch' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "False"


def test_module_instance_is_saved_at_export_with_its_class(tmp_path: Path) -> None:
    recipe = FedAvgRecipe(min_clients=2, model=TinyNet(3), train_script=SCRIPT)
    recipe.export(str(tmp_path / "job"))
    job = json.loads((tmp_path / "job" / "job.json").read_text())
    args = job["workflows"][0]["args"]
    assert args["persistor"]["args"]["model_class"] == "pt_tiny.TinyNet"
    assert args["task_meta"]["model_class"]["path"] == "pt_tiny.TinyNet"
    assert (tmp_path / "job" / args["persistor"]["args"]["initial_file"]).is_file()
    assert job["meta"]["framework"] == "pytorch"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"model": [1.0, 2.0]}, "model must be a torch.nn.Module instance"),
        ({"model": {"path": "NoDots"}}, "model given by path"),
        ({"model": None}, "give the initial model"),
        ({"initial_ckpt": "missing.pt"}, "does not exist"),
        ({"initial_ckpt": "weights.npz"}, "must be a path ending in .pt or .pth or .safetensors"),
    ],
)
def test_argument_errors(kwargs: dict[str, object], match: str) -> None:
    options: dict[str, object] = {"min_clients": 2, "train_script": SCRIPT}
    options.update(kwargs)
    with pytest.raises(RecipeArgumentError, match=match):
        FedAvgRecipe(**options)  # type: ignore[arg-type]
