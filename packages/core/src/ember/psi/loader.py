"""What a user writes for private set intersection: the site's ids, from :class:`PSIDataLoader`."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ember.common.components import Component
from ember.errors import EmberError


class PSIError(EmberError, RuntimeError):
    """A site cannot take part in the intersection: its loader failed or returned ids that
    cannot be intersected (duplicates, not strings, line breaks), or a message of the
    protocol is not what it expects."""


@dataclass(frozen=True)
class PSIContext:
    """Where a loader runs: the site's name, the job's id and the site's job workspace."""

    site_name: str
    job_id: str
    workspace: Path

    def get_identity_name(self) -> str:
        """The site's name (NVFlare's ``fl_ctx.get_identity_name()``)."""
        return self.site_name


class PSIDataLoader(Component, ABC):
    """The ids a site brings to a private set intersection (NVFlare's ``PSI``).

    Implement :meth:`load_items`: the site's ids as strings (record keys, emails, ...),
    each at most once. :meth:`initialize` runs at the site before, with a
    :class:`PSIContext` (the site's name tells a loader which data to read).

    ``DhPSIRecipe`` carries the loader to the sites as its class and constructor arguments
    (recorded when the instance is made): the arguments must be JSON values (paths,
    names), and the class must live in a module the job can bundle (a file beside
    ``job.py``, not ``job.py`` itself) or an installed package. Example::

        class CsvIds(PSIDataLoader):
            def __init__(self, folder: str, column: str = "id") -> None:
                self.folder, self.column = folder, column

            def initialize(self, ctx: PSIContext) -> None:
                self.path = Path(self.folder) / f"{ctx.site_name}.csv"

            def load_items(self) -> list[str]:
                with open(self.path, newline="") as f:
                    return [row[self.column] for row in csv.DictReader(f)]
    """

    def initialize(self, ctx: PSIContext) -> None:
        """Called once at the site before :meth:`load_items` (nothing by default)."""
        self.ctx = ctx

    @abstractmethod
    def load_items(self) -> list[str]:
        """The site's ids; each must be a string without line breaks, given once."""


#: NVFlare's name of the loader base class (``nvflare.app_common.psi.psi_spec.PSI``)
PSI = PSIDataLoader


def check_items(site: str, items: Any) -> list[str]:
    """``items`` as a list of distinct strings without line breaks; PSIError otherwise.

    Errors say how many ids are at fault and where, never the ids themselves (an error
    travels to the server, and the ids must stay at the site)."""
    if isinstance(items, str | bytes) or not hasattr(items, "__iter__"):
        raise PSIError(
            f"{site}'s PSI loader must return a list of strings from load_items(), got "
            f"{type(items).__name__}"
        )
    items = list(items)
    bad = [i for i, item in enumerate(items) if not isinstance(item, str)]
    if bad:
        raise PSIError(
            f"{site}'s PSI loader returned {len(bad)} ids that are not strings (the first at "
            f"position {bad[0]}, a {type(items[bad[0]]).__name__}): give every id as a str"
        )
    broken = [i for i, item in enumerate(items) if "\n" in item or "\r" in item]
    if broken:
        raise PSIError(
            f"{site}'s PSI loader returned {len(broken)} ids with a line break (the first at "
            f"position {broken[0]}): the intersection file holds one id per line"
        )
    counts = Counter(items)
    if len(counts) != len(items):
        repeated = sum(1 for c in counts.values() if c > 1)
        first = next(i for i, item in enumerate(items) if counts[item] > 1)
        raise PSIError(
            f"{site}'s PSI loader returned duplicate ids: {repeated} ids appear more than once "
            f"({len(items) - len(counts)} extra copies; the first at position {first}). An "
            "intersection is of sets: de-duplicate the ids in load_items() (the ids are not "
            "shown: they must not leave the site)"
        )
    checked: list[str] = items
    return checked
