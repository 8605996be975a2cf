"""Port NVFlare 2.7 code to Ember: ``ember migrate-nvflare PATH``.

See docs/migrating-from-nvflare.md for the mapping table. It needs libcst, which comes with
the ``migrate`` extra (``pip install 'ember-core[migrate]'``): importing this package (or
any module in it) without libcst raises MissingDependencyError naming the extra.
"""

from ember.extras import require

require("libcst", "migrate", "ember migrate-nvflare")

from ember.migrate.mapping import NAMES, Unmapped, resolve  # noqa: E402
from ember.migrate.runner import FileReport, Report, migrate_path  # noqa: E402
from ember.migrate.transformer import Change, MigrationResult, Problem, migrate_source  # noqa: E402

__all__ = [
    "NAMES",
    "Change",
    "FileReport",
    "MigrationResult",
    "Problem",
    "Report",
    "Unmapped",
    "migrate_path",
    "migrate_source",
    "resolve",
]
