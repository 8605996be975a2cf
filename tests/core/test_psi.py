"""Private set intersection (DhPSIRecipe): the intersection is exact, what crosses the
transport to a site holds no id of another site, keys and salt are fresh per job, and bad
input fails clearly. The loaders live in fixtures/psi/psi_loaders.py."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ember import SimEnv
from ember.client.link import TransportLink
from ember.common.messages import Task
from ember.errors import RecipeArgumentError
from ember.fobs import dumps
from ember.psi import (
    Blinder,
    DhPSIController,
    PSIContext,
    PSIDataLoader,
    PSIError,
    check_items,
    hash_to_point,
)
from ember.recipes import DhPSIRecipe

FIXTURES = Path(__file__).parent / "fixtures" / "psi"
COMPLETED = "FINISHED:COMPLETED"
FAILED = "FINISHED:EXECUTION_EXCEPTION"


@pytest.fixture(scope="module")
def loaders() -> Iterator[ModuleType]:
    """The loaders' module, importable as ``psi_loaders`` (the recipe bundles it)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(FIXTURES))
        import psi_loaders

        yield psi_loaders


@pytest.fixture
def received(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Task]]:
    """Every task a site takes from the server, as it crossed SimEnv's transport."""
    seen: list[tuple[str, Task]] = []
    original = TransportLink.get_task

    def recording(self: TransportLink, wait: float) -> Task | str | None:
        task = original(self, wait)
        if isinstance(task, Task):
            seen.append((self.site, task))
        return task

    monkeypatch.setattr(TransportLink, "get_task", recording)
    return seen


def run_psi(recipe: DhPSIRecipe, root: Path, sites: list[str]) -> Any:
    return recipe.execute(SimEnv(clients=sites, workspace_root=str(root), progress=False))


def expected(ids: dict[str, list[str]]) -> list[str]:
    return sorted(set.intersection(*(set(v) for v in ids.values())))


def test_two_sites_of_10000_ids_find_exactly_their_common_ids_and_nothing_else_crosses(
    loaders: ModuleType, tmp_path: Path, received: list[tuple[str, Task]]
) -> None:
    sites = ["site-1", "site-2"]
    args = {"sites": sites, "seed": 7, "size": 10_000, "common": 3_217}
    recipe = DhPSIRecipe(name="psi2", min_clients=2, local_psi=loaders.RandomIds(**args))
    run = run_psi(recipe, tmp_path, sites)
    assert run.get_status() == COMPLETED, run.get_message()
    ids = loaders.site_ids(**args)
    want = expected(ids)
    assert len(want) == 3_217
    for site in sites:
        path = recipe.intersection_path(run, site)
        assert path == tmp_path / "psi2" / site / "psi" / "intersection.txt"
        assert path.read_text() == "".join(f"{i}\n" for i in want)  # sorted, one per line
    summary = json.loads((tmp_path / "psi2" / "server" / "metrics_summary.json").read_text())
    assert summary["set_sizes"] == {"site-1": 10_000, "site-2": 10_000}
    assert summary["intersection_size"] == 3_217
    assert_nothing_of_the_others_arrives(received, ids)


def assert_nothing_of_the_others_arrives(
    received: list[tuple[str, Task]], ids: dict[str, list[str]]
) -> None:
    """No raw id of another site, nor its unsalted SHA-256, nor its (unblinded) point on
    the curve under the session's salt, in the bytes a site received."""
    assert received
    salts = {t.data.meta["psi_salt"] for _, t in received if t.data.meta["psi_step"] == "prepare"}
    assert len(salts) == 1
    salt = bytes.fromhex(salts.pop())
    for site, task in received:
        wire = dumps(task)
        others = {i for s, v in ids.items() if s != site for i in v} - set(ids[site])
        assert others
        for item in others:
            assert item.encode() not in wire, (site, item)
        for item in sorted(others)[:200]:
            assert hashlib.sha256(item.encode()).digest() not in wire
            point = hash_to_point(salt, item).public_bytes(
                Encoding.X962, PublicFormat.CompressedPoint
            )
            assert point[1:] not in wire  # the x-coordinate, as a blinded value would travel


def test_three_sites_intersect_all_three_not_pairwise(
    loaders: ModuleType, tmp_path: Path, received: list[tuple[str, Task]]
) -> None:
    sites = ["site-1", "site-2", "site-3"]
    args = {"sites": sites, "seed": 11, "size": 10_000, "common": 1_500, "pair": 700}
    recipe = DhPSIRecipe(name="psi3", min_clients=3, local_psi=loaders.RandomIds(**args))
    run = run_psi(recipe, tmp_path, sites)
    assert run.get_status() == COMPLETED, run.get_message()
    ids = loaders.site_ids(**args)
    want = expected(ids)
    assert len(want) == 1_500
    assert len(set(ids["site-1"]) & set(ids["site-2"])) == 2_200  # pairwise ids exist ...
    for site in sites:
        assert recipe.intersection(run, site) == want  # ... and stay out
    # each site took 1 prepare, 2 blind and 1 intersect step; blinded lists are 32-byte rows
    steps = [t.data.meta["psi_step"] for s, t in received if s == "site-1" and t.data]
    assert steps == ["prepare", "blind", "blind", "intersect"]
    assert_nothing_of_the_others_arrives(received, ids)


def test_each_job_blinds_with_fresh_keys_and_a_fresh_salt(
    loaders: ModuleType, tmp_path: Path, received: list[tuple[str, Task]]
) -> None:
    sites = ["site-1", "site-2"]
    args = {"sites": sites, "seed": 3, "size": 300, "common": 100}
    lists, salts = [], []
    for n in range(2):
        recipe = DhPSIRecipe(name=f"fresh{n}", min_clients=2, local_psi=loaders.RandomIds(**args))
        run = run_psi(recipe, tmp_path, sites)
        assert run.get_status() == COMPLETED, run.get_message()
        assert len(recipe.intersection(run, "site-1")) == 100
        blind = [t for s, t in received if s == "site-2" and t.data.meta["psi_step"] == "blind"]
        prepare = [t for s, t in received if t.data.meta["psi_step"] == "prepare"]
        lists.append({bytes(row) for row in blind[-1].data.params["blinded"]})
        salts.append(prepare[-1].data.meta["psi_salt"])
    # the same ids of site-1, blinded in two jobs: no value in common, other salts
    assert len(lists[0]) == len(lists[1]) == 300
    assert lists[0].isdisjoint(lists[1])
    assert salts[0] != salts[1]


def test_blinding_commutes_and_differs_per_key() -> None:
    salt = b"s" * 32
    a, b = Blinder(), Blinder()
    items = ["alice@example.org", "bob", "", "ü-ñ"]
    ab = b.blind(a.blind_items(salt, items))
    ba = a.blind(b.blind_items(salt, items))
    assert np.array_equal(ab, ba)
    assert not np.array_equal(a.blind_items(salt, items), b.blind_items(salt, items))
    assert not np.array_equal(a.blind_items(salt, items), a.blind_items(b"t" * 32, items))
    assert len({bytes(r) for r in ab}) == len(items)
    assert hash_to_point(salt, "x").public_numbers() == hash_to_point(salt, "x").public_numbers()


def test_a_site_with_duplicate_ids_fails_the_job_naming_it_without_showing_ids(
    loaders: ModuleType, tmp_path: Path
) -> None:
    sites = ["site-1", "site-2"]
    args = {"sites": sites, "seed": 5, "size": 50, "common": 10, "duplicate_at": ["site-2"]}
    recipe = DhPSIRecipe(name="dups", min_clients=2, local_psi=loaders.RandomIds(**args))
    run = run_psi(recipe, tmp_path, sites)
    assert run.get_status() == FAILED
    message = run.get_message()
    assert "site-2's PSI loader returned duplicate ids" in message, message
    assert "2 ids appear more than once" in message, message
    for item in loaders.site_ids(sites, 5, 50, 10)["site-2"]:
        assert item not in message
    assert not recipe.intersection_path(run, "site-1").exists()


def test_check_items_refuses_non_strings_line_breaks_and_duplicates() -> None:
    assert check_items("s", iter(["a", "b"])) == ["a", "b"]
    with pytest.raises(PSIError, match=r"s's PSI loader must return a list of strings"):
        check_items("s", "abc")
    with pytest.raises(PSIError, match=r"1 ids that are not strings \(the first at position 1"):
        check_items("s", ["a", 2])
    with pytest.raises(PSIError, match="line break"):
        check_items("s", ["a", "b\nc"])
    with pytest.raises(PSIError, match=r"1 ids appear more than once \(1 extra copies"):
        check_items("s", ["a", "b", "a"])


def test_bad_arguments_give_clear_errors(loaders: ModuleType) -> None:
    good = loaders.RandomIds(sites=["a", "b"], seed=1, size=10, common=2)
    with pytest.raises(RecipeArgumentError, match="min_clients must be an integer >= 2"):
        DhPSIRecipe(min_clients=1, local_psi=good)
    with pytest.raises(RecipeArgumentError, match="local_psi must be an instance"):
        DhPSIRecipe(min_clients=2, local_psi=["a", "b"])
    with pytest.raises(RecipeArgumentError, match=r"not a subclass of ember\.psi\.PSIDataLoader"):
        DhPSIRecipe(min_clients=2, local_psi={"path": "ember.psi.DhPSIController"})
    for path in ("/tmp/x.txt", "../out.txt", "", "psi/"):
        with pytest.raises(RecipeArgumentError, match="output_path"):
            DhPSIRecipe(min_clients=2, local_psi=good, output_path=path)


def test_the_job_carries_the_loader_by_class_and_arguments(
    loaders: ModuleType, tmp_path: Path
) -> None:
    recipe = DhPSIRecipe(
        min_clients=2,
        local_psi={
            "path": "psi_loaders:RandomIds",
            "args": {"sites": ["a"], "seed": 1, "size": 3, "common": 1},
        },
        output_path="ids/common.txt",
    )
    job = recipe.export(tmp_path / "job")
    settings = json.loads((job / "app" / "psi_site.json").read_text())
    assert settings == {
        "local_psi": {
            "path": "psi_loaders.RandomIds",
            "args": {"sites": ["a"], "seed": 1, "size": 3, "common": 1},
        },
        "output_path": "ids/common.txt",
    }
    assert (job / "app" / "psi_loaders.py").is_file()
    assert json.loads((job / "job.json").read_text())["workflows"][0]["target"] == (
        "ember.psi:DhPSIController"
    )


def test_the_loader_base_class_is_public_and_runs_initialize_first() -> None:
    from ember import recipes

    assert recipes.PSIDataLoader is PSIDataLoader
    assert {"DhPSIRecipe", "PSIDataLoader"} <= set(recipes.__all__)
    assert DhPSIController().timeout == 0
    ctx = PSIContext("site-9", "job", Path("."))
    assert ctx.get_identity_name() == "site-9"


def test_the_recipe_is_registered_as_dh_psi(fresh_plugins: None) -> None:
    import inspect

    from ember.plugins import get_registry

    assert get_registry().get("recipe", "dh-psi").item.load() is DhPSIRecipe
    # NVFlare's parameter names
    names = list(inspect.signature(DhPSIRecipe).parameters)
    assert names == ["name", "min_clients", "local_psi", "output_path"]
