"""``DhPSIRecipe``: Diffie-Hellman private set intersection of the sites' ids."""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Any

from ember.job.definition import APP_DIR, ClientApp, JobFile
from ember.psi.loader import PSIDataLoader
from ember.psi.site import DEFAULT_OUTPUT_PATH, output_file
from ember.recipes.base import Recipe
from ember.recipes.components import component_spec
from ember.recipes.validation import RecipeArgumentError, check_job_name

PSI_CONTROLLER = "ember.psi:DhPSIController"
SITE_SCRIPT = "psi_site.py"
SITE_SETTINGS = "psi_site.json"
#: the site script: the same bytes in every job (a site without custom code trusts its hash)
SITE_SCRIPT_SOURCE = b'''"""Private set intersection, this site's side (written by DhPSIRecipe).

It loads this site's ids with the job's PSI loader and answers the server's steps through
the Client API; only blinded values and positions leave the site (ember.psi).
"""

from pathlib import Path

from ember.psi import run_site

run_site(Path(__file__).with_name("psi_site.json"))
'''


class DhPSIRecipe(Recipe):
    """Private set intersection (NVFlare's ``DhPSIRecipe``): the sites learn which of their
    ids every site holds, and nothing of the others' other ids (``docs/psi.md``).

    - ``min_clients``: at least 2; every site alive when the job starts takes part and
      must answer each step.
    - ``local_psi``: an instance of an :class:`ember.psi.PSIDataLoader` subclass defined
      in a module beside ``job.py`` (bundled into the job; its constructor arguments must
      be JSON values), or ``{"path": "module.Class", "args": {...}}``. Its
      The path may also be written ``"module:Class"``. ``load_items()`` gives a site's
      ids (strings, each once: duplicates fail the job).
    - ``output_path``: where each site writes the intersection, relative to its job
      workspace: one id per line, sorted (Python's string order, so every site writes the
      same file), e.g. ``<workspace_root>/<name>/<site>/psi/intersection.txt`` in SimEnv
      (:meth:`intersection_path`).

    ECDH over P-256 with a fresh key per site and a fresh salt per job; the server only
    relays and matches blinded values (it learns set and intersection sizes).
    """

    framework = "numpy"

    def __init__(
        self,
        *,
        name: str = "dh_psi",
        min_clients: int,
        local_psi: Any,
        output_path: str = DEFAULT_OUTPUT_PATH,
    ) -> None:
        name = check_job_name(name)
        if not isinstance(min_clients, int) or isinstance(min_clients, bool) or min_clients < 2:
            raise RecipeArgumentError(
                f"min_clients must be an integer >= 2 (an intersection is between sites), got "
                f"{min_clients!r}"
            )
        self.output_path = _check_output_path(output_path)
        files: dict[str, JobFile] = {}
        if isinstance(local_psi, dict) and isinstance(local_psi.get("path"), str):
            # "module:Class" (how jobs name classes) or "module.Class"
            local_psi = {**local_psi, "path": local_psi["path"].replace(":", ".", 1)}
        loader, _ = component_spec(
            "local_psi", local_psi, PSIDataLoader, files, "ember.psi.PSIDataLoader"
        )
        settings = {"local_psi": loader, "output_path": self.output_path}
        files[f"{APP_DIR}/{SITE_SCRIPT}"] = SITE_SCRIPT_SOURCE
        files[f"{APP_DIR}/{SITE_SETTINGS}"] = (json.dumps(settings, indent=2) + "\n").encode()
        self.local_psi = loader
        self.assemble(
            name=name,
            min_clients=min_clients,
            workflows=[{"target": PSI_CONTROLLER, "args": {}}],
            client=ClientApp(script=f"{APP_DIR}/{SITE_SCRIPT}"),
            files=files,
        )

    def intersection_path(self, result: Any, site: str) -> Path:
        """A site's intersection file after a SimEnv run: ``result`` is the run
        (``recipe.execute(env)``) or its result folder (``run.get_result()``, which is
        ``<workspace_root>/<name>``). In PoC and production the file stays at the site:
        ``output_path`` under that site's job workspace."""
        if hasattr(result, "get_result"):
            result = result.get_result()
        return output_file(Path(result) / site, self.output_path)

    def intersection(self, result: Any, site: str) -> list[str]:
        """The ids a site wrote (see :meth:`intersection_path`)."""
        return self.intersection_path(result, site).read_text(encoding="utf-8").splitlines()


def _check_output_path(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or value.endswith("/"):
        raise RecipeArgumentError(
            f"output_path must be a file path, e.g. 'psi/intersection.txt', got {value!r}"
        )
    path = PurePosixPath(value)
    if path.is_absolute() or Path(value).is_absolute() or ".." in path.parts:
        raise RecipeArgumentError(
            f"output_path {value!r} must be relative and stay inside each site's job "
            "workspace (no leading '/', no '..'): every site writes its own copy there"
        )
    return value
