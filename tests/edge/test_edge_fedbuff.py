"""ember_edge.fedbuff: FedBuff's versions, staleness and device selection, without Ember."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from ember_edge.fedbuff import FedBuff, FedBuffConfig, FedBuffError, staleness_factor


def _config(**kwargs: Any) -> FedBuffConfig:
    options: dict[str, Any] = {
        "num_updates_for_model": 4,
        "device_selection_size": 4,
        "min_hole_to_fill": 4,
        "max_model_version": 3,
    }
    options.update(kwargs)
    return FedBuffConfig(**options)


def _initial() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"w": rng.normal(size=(3, 2)), "b": rng.normal(size=2)}


def _devices(n: int) -> list[str]:
    return [f"dev-{i}" for i in range(n)]


def test_sync_mode_gives_exactly_fedavgs_weighted_average_of_the_devices_models() -> None:
    fb = FedBuff(_config(), _initial())
    fb.add_devices("site-1", _devices(3))
    fb.add_devices("site-2", _devices(8)[3:])
    rng = np.random.default_rng(1)
    for version in range(3):
        picked = fb.fill(now=0.0)
        chosen = [d for devices in picked.values() for d in devices]
        assert len(chosen) == 4
        assert fb.version == version
        models = [{k: v + rng.normal(size=v.shape) for k, v in fb.params.items()} for _ in chosen]
        samples = rng.integers(1, 50, size=len(chosen)).astype(float)
        expected = {
            k: sum(n * m[k] for n, m in zip(samples, models, strict=True)) / samples.sum()
            for k in fb.params
        }
        base = fb.params
        for device, model, n in zip(chosen, models, samples, strict=True):
            diff = {k: n * (model[k] - base[k]) for k in base}
            assert not fb.accept(version, diff, n).dropped
            fb.reported([device])
            assert fb.maybe_new_version() == (device == chosen[-1])
        assert fb.version == version + 1
        for key in expected:
            np.testing.assert_allclose(fb.params[key], expected[key], rtol=1e-12, atol=1e-12)
    assert fb.done
    assert fb.fill(now=0.0) == {}
    assert fb.stats.accepted_updates == 12
    assert fb.stats.stale_updates == fb.stats.dropped_updates == 0


def test_a_stale_update_is_down_weighted_by_one_over_one_plus_root_staleness() -> None:
    fb = FedBuff(
        _config(num_updates_for_model=1, min_hole_to_fill=1, staleness_weight=True),
        {"w": np.zeros(2)},
    )
    fb.add_devices("site-1", _devices(4))
    fb.fill(now=0.0)
    for _ in range(4):  # four fresh updates of +1: versions 1..4... up to max_model_version
        if fb.done:
            break
        fb.accept(fb.version, {"w": np.ones(2)}, 1.0)
        fb.maybe_new_version()
    assert fb.version == 3
    np.testing.assert_allclose(fb.params["w"], [3.0, 3.0])
    fb2 = FedBuff(
        _config(
            num_updates_for_model=1, min_hole_to_fill=1, staleness_weight=True, max_model_version=10
        ),
        {"w": np.zeros(2)},
    )
    for _ in range(4):
        fb2.accept(fb2.version, {"w": np.zeros(2)}, 1.0)
        fb2.maybe_new_version()
    accepted = fb2.accept(0, {"w": np.ones(2)}, 1.0)  # trained on version 0, now version 4
    assert accepted.staleness == 4
    assert accepted.factor == pytest.approx(1 / 3)
    assert fb2.maybe_new_version()
    np.testing.assert_allclose(fb2.params["w"], [1 / 3, 1 / 3])
    assert fb2.stats.stale_updates == 1
    assert staleness_factor(0) == 1.0


def test_without_staleness_weight_a_stale_update_counts_in_full() -> None:
    fb = FedBuff(_config(num_updates_for_model=1, min_hole_to_fill=1), {"w": np.zeros(1)})
    fb.accept(0, {"w": np.zeros(1)}, 1.0)
    fb.maybe_new_version()
    accepted = fb.accept(0, {"w": np.full(1, 2.0)}, 1.0)
    assert accepted.staleness == 1
    assert accepted.factor == 1.0
    fb.maybe_new_version()
    np.testing.assert_allclose(fb.params["w"], [2.0])
    assert fb.stats.stale_updates == 1


def test_an_update_older_than_max_model_history_is_dropped_and_counted() -> None:
    fb = FedBuff(
        _config(
            num_updates_for_model=1, min_hole_to_fill=1, max_model_history=2, max_model_version=10
        ),
        {"w": np.zeros(1)},
    )
    for _ in range(3):
        fb.accept(fb.version, {"w": np.zeros(1)}, 1.0)
        fb.maybe_new_version()
    assert fb.version == 3
    assert fb.accept(2, {"w": np.ones(1)}, 1.0, count=1).factor == 1.0  # staleness 1: kept
    dropped = fb.accept(1, {"w": np.ones(1) * 7}, 5.0, count=5)  # staleness 2: dropped
    assert dropped.dropped
    assert fb.stats.dropped_updates == 5
    assert fb.buffered == 1
    fb.maybe_new_version()
    np.testing.assert_allclose(fb.params["w"], [1.0])


def test_global_lr_scales_the_step() -> None:
    fb = FedBuff(
        _config(num_updates_for_model=2, min_hole_to_fill=1, global_lr=0.5),
        {"w": np.ones(1, dtype=np.float32)},
    )
    fb.accept(0, {"w": np.full(1, 2.0)}, 1.0)
    fb.accept(0, {"w": np.full(1, 6.0)}, 3.0)  # sums of w*d: mean update (2 + 6) / 4 = 2
    assert fb.maybe_new_version()
    assert fb.params["w"].dtype == np.float32
    np.testing.assert_allclose(fb.params["w"], [2.0])


def test_holes_are_refilled_only_once_min_hole_to_fill_slots_are_empty() -> None:
    fb = FedBuff(
        _config(device_selection_size=4, min_hole_to_fill=2, num_updates_for_model=8),
        {"w": np.zeros(1)},
    )
    fb.add_devices("site-1", _devices(10))
    first = fb.fill(now=0.0)["site-1"]
    assert len(first) == 4
    fb.reported(first[:1])
    assert fb.fill(now=0.0) == {}  # one hole
    fb.reported(first[1:2])
    again = fb.fill(now=0.0)["site-1"]
    assert len(again) == 2
    assert not set(again) & set(first)  # device_reuse: not twice for one version
    assert len(fb.selection) == 4


def test_without_device_reuse_a_device_is_never_selected_twice() -> None:
    fb = FedBuff(
        _config(
            device_selection_size=2,
            min_hole_to_fill=1,
            num_updates_for_model=1,
            device_reuse=False,
            max_model_version=10,
        ),
        {"w": np.zeros(1)},
    )
    fb.add_devices("site-1", _devices(5))
    seen: list[str] = []
    for _ in range(6):
        picked = fb.fill(now=0.0).get("site-1", [])
        seen += picked
        for device in picked:
            fb.accept(fb.version, {"w": np.zeros(1)}, 1.0)
            fb.reported([device])
            fb.maybe_new_version()
    assert sorted(seen) == _devices(5)


def test_version_zero_waits_for_initial_min_client_num_devices() -> None:
    fb = FedBuff(_config(initial_min_client_num=5), {"w": np.zeros(1)})
    fb.add_devices("site-1", _devices(4))
    assert fb.fill(now=0.0) == {}
    fb.add_devices("site-2", ["x"])
    assert sum(len(v) for v in fb.fill(now=0.0).values()) == 4


def test_a_device_that_vanished_frees_its_slot_after_device_wait_timeout() -> None:
    fb = FedBuff(_config(device_wait_timeout=10.0), {"w": np.zeros(1)})
    fb.add_devices("site-1", _devices(8))
    chosen = fb.fill(now=0.0)["site-1"]
    fb.reported(chosen[:3])
    assert fb.expire(now=9.0) == []
    assert fb.expire(now=10.0) == chosen[3:]
    assert fb.stats.timed_out_devices == 1
    assert len(fb.fill(now=10.0)["site-1"]) == 4


def test_a_site_that_went_away_takes_its_devices_out_of_the_selection() -> None:
    fb = FedBuff(_config(device_selection_size=4, min_hole_to_fill=1), {"w": np.zeros(1)})
    fb.add_devices("site-1", ["a", "b"])
    fb.add_devices("site-2", ["c", "d", "e"])
    fb.fill(now=0.0)
    fb.remove_site("site-2")
    assert set(fb.selection) <= {"a", "b"}
    assert set(fb.available) == {"a", "b"}


def _three_sites(fb: FedBuff) -> None:
    """A big site, a middle one and a small one (900, 90, 20 devices)."""
    for site, n in (("big", 900), ("mid", 90), ("small", 20)):
        fb.add_devices(site, [f"{site}/{i}" for i in range(n)])


def test_balanced_sampling_gives_each_site_an_equal_share_of_the_selection() -> None:
    fb = FedBuff(
        _config(device_selection_size=30, min_hole_to_fill=1, device_sampling="balanced"),
        {"w": np.zeros(1)},
    )
    _three_sites(fb)
    first = fb.fill(now=0.0)
    assert {site: len(d) for site, d in first.items()} == {"big": 10, "mid": 10, "small": 10}
    # the small site's reports free its slots: the refill goes back to it (to devices not
    # used for this version yet), not to the big one
    fb.reported(first["small"][:4])
    assert {s: len(d) for s, d in fb.fill(now=0.0).items()} == {"small": 4}
    for site, devices in first.items():  # each chosen device belongs to its site
        assert all(d.startswith(site + "/") for d in devices)


def test_balanced_sampling_gives_a_site_that_runs_out_of_devices_slots_to_the_others() -> None:
    fb = FedBuff(
        _config(device_selection_size=80, min_hole_to_fill=1, device_sampling="balanced"),
        {"w": np.zeros(1)},
    )
    _three_sites(fb)
    counts = {site: len(d) for site, d in fb.fill(now=0.0).items()}
    assert counts == {"big": 30, "mid": 30, "small": 20}


def test_random_sampling_follows_the_sites_fleet_sizes() -> None:
    fb = FedBuff(_config(device_selection_size=100, min_hole_to_fill=1), {"w": np.zeros(1)})
    _three_sites(fb)
    counts = {site: len(d) for site, d in fb.fill(now=0.0).items()}
    assert counts["big"] > 70, counts  # about 89 of 100 expected
    assert counts.get("small", 0) < 8, counts  # about 2 expected


def test_balanced_sampling_is_repeatable_under_a_seed() -> None:
    picks = []
    for _ in range(2):
        fb = FedBuff(
            _config(device_selection_size=30, device_sampling="balanced", seed=7),
            {"w": np.zeros(1)},
        )
        _three_sites(fb)
        picks.append(fb.fill(now=0.0))
    assert picks[0] == picks[1]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_updates_for_model": 0}, "num_updates_for_model"),
        ({"min_hole_to_fill": 5}, "min_hole_to_fill=5 exceeds"),
        ({"max_model_history": 0}, "max_model_history"),
        ({"global_lr": float("nan")}, "global_lr"),
        ({"device_wait_timeout": 0}, "device_wait_timeout"),
        ({"staleness_weight": 1}, "staleness_weight"),
        ({"device_sampling": "fair"}, "device_sampling must be one of"),
    ],
)
def test_bad_knobs_are_refused_by_name(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(FedBuffError, match=match):
        _config(**kwargs)


def test_an_update_from_the_future_or_of_another_shape_is_refused() -> None:
    fb = FedBuff(_config(), {"w": np.zeros(2)})
    with pytest.raises(FedBuffError, match="current version is 0"):
        fb.accept(1, {"w": np.zeros(2)}, 1.0)
    with pytest.raises(FedBuffError, match="shape"):
        fb.accept(0, {"w": np.zeros(3)}, 1.0)
    with pytest.raises(FedBuffError, match="does not have"):
        fb.accept(0, {"v": np.zeros(2)}, 1.0)
