"""``ProdEnv``: submit a recipe to a running deployment with an admin's startup kit."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from ember.envs.poc import PocRun
from ember.system.admin import AdminClient

if TYPE_CHECKING:
    from ember.job.definition import Deployable


class ProdEnv:
    """A provisioned deployment, reached as the admin whose startup kit is
    ``startup_kit_location`` (the participant folder or its ``startup/``).

    ``username``, when given, must be the kit's admin (a guard against using the wrong kit);
    ``login_timeout`` bounds the connection to the server. ``sites``: where the job runs
    (default: every connected site). Results are downloaded to
    ``<result_root>/<job name>-<job id>/`` (default ``./ember-results``).
    """

    def __init__(
        self,
        startup_kit_location: str | Path,
        username: str | None = None,
        login_timeout: float = 10.0,
        sites: list[str] | None = None,
        result_root: str | Path = "ember-results",
    ) -> None:
        self.admin = AdminClient(startup_kit_location)
        if username is not None and username != self.admin.kit.name:
            raise ValueError(
                f"the startup kit in {self.admin.kit.folder} is {self.admin.kit.name!r}'s, "
                f"not {username!r}'s"
            )
        self.login_timeout = login_timeout
        self.sites = sites
        self.result_root = Path(result_root)

    def deploy(self, recipe: Deployable) -> PocRun:
        admin = self.admin if self.admin.connected else self.admin.connect(self.login_timeout)
        tmp = Path(tempfile.mkdtemp(prefix="ember-prod-job-"))
        try:
            record = admin.submit(recipe.export(tmp / recipe.name), sites=self.sites)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return PocRun(admin, str(record["id"]), self.result_root / f"{recipe.name}-{record['id']}")
