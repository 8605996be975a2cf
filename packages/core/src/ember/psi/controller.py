"""The server's side of a private set intersection: it relays blinded lists between the
sites and matches the fully blinded ones; it never holds a key.

Public as :class:`ember.psi.DhPSIController`; ``DhPSIRecipe`` names it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np

from ember.common.messages import TaskResult
from ember.common.model import FLModel
from ember.psi.crypto import PSICryptoError, check_values, new_salt
from ember.psi.site import (
    BLIND,
    INTERSECT,
    POSITIONS,
    PREPARE,
    SALT,
    SESSION,
    SITES,
    SIZE,
    STEP,
    TASK,
    VALUES,
)
from ember.runtime.context import ServerContext
from ember.runtime.errors import JobError


class DhPSIController:
    """Diffie-Hellman private set intersection over every site alive when the job starts
    (at least two; each one must answer every step).

    With the sites in the job's order ``s_0 .. s_(N-1)``, a fresh session id and salt:

    1. ``prepare``: each site hashes its shuffled ids onto P-256 and blinds them with a
       fresh key; the server keeps each site's list ``L_j``;
    2. ``N - 1`` rounds of ``blind``: in round ``r`` site ``s_((j + r) mod N)`` blinds
       ``L_j`` once more (order kept), so every site works in every round and after the
       last round each list carries every site's key;
    3. the server matches the fully blinded lists (equal values are equal ids) and sends
       each site the positions of its list that every list holds (``intersect``); each
       site writes those ids to its ``output_path``.

    The server learns the sizes of the sites' sets and of their intersections (which
    positions match), no id; a site learns the intersection and the other sites' set
    sizes. ``timeout``: seconds per step (0: the job's ``runtime.task_timeout``).
    """

    def __init__(self, timeout: float = 0) -> None:
        self.timeout = float(timeout)

    def run(self, ctx: ServerContext) -> None:
        started = time.monotonic()
        sites = ctx.board.alive_sites()
        if len(sites) < 2:
            raise JobError(
                f"private set intersection needs at least 2 sites, {len(sites)} are alive "
                f"({', '.join(sites) or 'none'}); run the job with more clients"
            )
        timeout = self.timeout or ctx.task_timeout
        session = uuid.uuid4().hex
        salt = new_salt()  # fresh per session: no blinded value carries over between jobs
        count = len(sites)
        steps = count + 1
        ctx.log.info("PSI session %s over %s", session, ", ".join(sites))

        lists: dict[str, np.ndarray] = {}

        def keep(owner_of: Callable[[str], str]) -> Callable[[str, TaskResult], None]:
            def on_result(site: str, result: TaskResult) -> None:
                model = result.data or FLModel()
                try:
                    values = check_values((model.params or {}).get(VALUES))
                except PSICryptoError as exc:
                    raise JobError(
                        f"{site} sent no blinded list ({exc}); is it running DhPSIRecipe's "
                        "site script?"
                    ) from None
                owner = owner_of(site)
                if owner in lists and len(values) != len(lists[owner]):
                    raise JobError(
                        f"{site} returned {len(values)} values for {owner}'s list of "
                        f"{len(lists[owner])}: a blinding must keep every value"
                    )
                lists[owner] = values
                ctx.progress.result_received(site)

            return on_result

        prepare = FLModel(
            meta={STEP: PREPARE, SESSION: session, SALT: salt.hex(), SITES: list(sites)}
        )
        self._step(ctx, 0, steps, sites, prepare, timeout, keep(lambda site: site))
        sizes = {site: len(lists[site]) for site in sites}
        ctx.log.info("PSI set sizes: %s", sizes)
        for r in range(1, count):
            # site s_i blinds the list of s_(i - r): each list visits every other site once
            def owner(site: str, r: int = r) -> str:
                return sites[(sites.index(site) - r) % count]

            def task(site: str, owner: Callable[[str], str] = owner) -> FLModel:
                return FLModel(
                    params={VALUES: lists[owner(site)]}, meta={STEP: BLIND, SESSION: session}
                )

            self._step(ctx, r, steps, sites, task, timeout, keep(owner))
        positions = matching_positions([lists[site] for site in sites])
        lists.clear()
        by_site = dict(zip(sites, positions, strict=True))
        written: dict[str, int] = {}

        def on_written(site: str, result: TaskResult) -> None:
            model = result.data or FLModel()
            written[site] = int((model.meta or {}).get(SIZE, -1))
            ctx.progress.result_received(site)

        def intersect(site: str) -> FLModel:
            return FLModel(
                params={POSITIONS: by_site[site]}, meta={STEP: INTERSECT, SESSION: session}
            )

        self._step(ctx, count, steps, sites, intersect, timeout, on_written)
        size = len(positions[0])
        wrong = {s: n for s, n in written.items() if n != size}
        if wrong:
            raise JobError(
                f"sites wrote intersections of the wrong size (expected {size}): {wrong}"
            )
        summary: dict[str, Any] = {
            "psi_session": session,
            "sites": sites,
            "set_sizes": sizes,
            "intersection_size": size,
            "duration_s": round(time.monotonic() - started, 6),
        }
        ctx.state["psi"] = summary
        ctx.records.summary(**summary)
        ctx.log.info("PSI done: %d ids in the intersection of %d sites", size, count)

    def _step(
        self,
        ctx: ServerContext,
        index: int,
        steps: int,
        sites: list[str],
        data: FLModel | Callable[[str], FLModel],
        timeout: float,
        on_result: Callable[[str, TaskResult], None],
    ) -> None:
        ctx.progress.round_started(index, steps, len(sites))
        ctx.board.broadcast(TASK, data, sites, len(sites), timeout, on_result)
        ctx.progress.round_done(index, {})


def matching_positions(lists: list[np.ndarray]) -> list[np.ndarray]:
    """For each fully blinded list, the positions (int64, ascending) of its values that
    every list holds."""
    keyed = [arr.view(np.dtype((np.void, arr.shape[1]))).ravel() for arr in lists]
    common = keyed[0]
    for other in keyed[1:]:
        common = np.intersect1d(common, other)
    return [np.flatnonzero(np.isin(values, common)).astype(np.int64) for values in keyed]
