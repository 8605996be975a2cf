"""Port NVFlare 2.7 code to Ember: ``ember migrate-nvflare PATH``.

See docs/migrating-from-nvflare.md for the mapping table.
"""

from ember.migrate.mapping import NAMES, Unmapped, resolve
from ember.migrate.runner import FileReport, Report, migrate_path
from ember.migrate.transformer import Change, MigrationResult, Problem, migrate_source

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
