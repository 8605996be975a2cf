"""Helpers for tests that build plugins and run the ``ember`` CLI in a fresh process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

FIXTURES = Path(__file__).parent.parent / "core" / "fixtures"
#: the third-party recipe plugin of docs/plugins.md, which the plugin tests build and install
EXAMPLE_PLUGIN = Path(__file__).parents[2] / "examples" / "recipe-plugin"
PLUGIN_ENV_VARS = ("EMBER_DISABLE_PLUGIN_AUTOLOAD", "EMBER_DISABLED_PLUGINS", "EMBER_PLUGINS")


def build_plugin(source: Path, target: Path) -> Path:
    """Build and install the plugin project at ``source`` into the folder ``target``."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--disable-pip-version-check",
            "--no-index",
            "--target",
            str(target),
            str(source),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=180,
    )
    return target


def renamed_copy(tmp: Path, dist: str, module: str, ep_name: str) -> Path:
    """A copy of the example plugin under other distribution, module and entry-point names
    (it registers the same recipe names)."""
    dst = tmp / dist
    shutil.copytree(
        EXAMPLE_PLUGIN, dst, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info")
    )
    (dst / "src" / "ember_recipe_median").rename(dst / "src" / module)
    for path in [dst / "pyproject.toml", *(dst / "src" / module).glob("*.py")]:
        text = path.read_text().replace("ember-recipe-median", dist)
        text = text.replace("ember_recipe_median", module)
        if path.name == "pyproject.toml":
            text = text.replace('\nmedian = "', f'\n{ep_name} = "')
        path.write_text(text)
    return dst


def run_ember(
    *args: str, pythonpath: list[Path] | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the installed ``ember`` console script in a fresh process."""
    script = Path(sys.executable).with_name("ember")
    full_env = {k: v for k, v in os.environ.items() if k not in PLUGIN_ENV_VARS}
    if pythonpath:
        full_env["PYTHONPATH"] = os.pathsep.join(str(p) for p in pythonpath)
    full_env.update(env or {})
    return subprocess.run(
        [str(script), *args], capture_output=True, text=True, env=full_env, timeout=120
    )
