"""Private set intersection: the public names (``DhPSIRecipe`` is in :mod:`ember.recipes`).

Sites find the ids they have in common without showing each other, or the server, any
other id (``docs/psi.md``): each blinds its hashed ids with a fresh P-256 key, the server
relays the lists so that every site blinds every list once, and matches the fully blinded
values; each site writes the intersection to ``psi/intersection.txt`` (``output_path``)
under its job workspace.

- :class:`PSIDataLoader` (alias :data:`PSI`, NVFlare's name): the base class a user
  subclasses to give a site's ids (``load_items() -> list[str]``), with :class:`PSIContext`;
- :class:`DhPSIController`: the server workflow; :func:`run_site`: the site script's body;
- :class:`PSIError`: a site that cannot take part (duplicate ids, ...).
"""

from ember.psi.controller import DhPSIController, matching_positions
from ember.psi.crypto import Blinder, PSICryptoError, hash_to_point
from ember.psi.loader import PSI, PSIContext, PSIDataLoader, PSIError, check_items
from ember.psi.site import DEFAULT_OUTPUT_PATH, PSISite, output_file, run_site

__all__ = [
    "DEFAULT_OUTPUT_PATH",
    "PSI",
    "Blinder",
    "DhPSIController",
    "PSIContext",
    "PSICryptoError",
    "PSIDataLoader",
    "PSIError",
    "PSISite",
    "check_items",
    "hash_to_point",
    "matching_positions",
    "output_file",
    "run_site",
]
