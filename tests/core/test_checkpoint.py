"""Round checkpoints: atomic safetensors files the safetensors library reads, the controllers'
declared state, and errors that name the unreadable file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from ember.controllers import CheckpointError, FedAvgController, Resumable
from ember.runtime.checkpoint import (
    MODEL_FILE,
    STATE_FILE,
    load_checkpoint,
    save_checkpoint,
    write_safetensors,
)

PERSISTOR = {"target": "ember.controllers:NumpyPersistor", "args": {}}


def test_a_checkpoint_model_is_a_safetensors_file_written_without_leftovers(
    tmp_path: Path,
) -> None:
    arrays = {
        "w": np.arange(12, dtype=np.float32).reshape(3, 4),
        "b": np.array([1, 2], dtype=np.int64),
        "flag": np.array([True, False]),
        "fortran": np.asfortranarray(np.arange(6, dtype=np.float64).reshape(2, 3)),
    }
    write_safetensors(tmp_path / "m.safetensors", arrays)
    back = load_file(str(tmp_path / "m.safetensors"))
    for key, value in arrays.items():
        np.testing.assert_array_equal(back[key], value)
        assert back[key].dtype == value.dtype
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


def test_a_checkpoint_keeps_round_state_and_arrays_safetensors_lacks(tmp_path: Path) -> None:
    params = {"w": np.ones(3, dtype=np.float32), "c": np.array([1 + 2j])}
    state = {"next_round": 3, "optimizer": {"m": np.zeros(2)}, "best": None}
    save_checkpoint(tmp_path, 2, params, state)
    found = load_checkpoint(tmp_path)
    assert found is not None
    assert found.round == 2
    assert found.state["next_round"] == 3
    np.testing.assert_array_equal(found.state["optimizer"]["m"], np.zeros(2))
    np.testing.assert_array_equal(found.params["c"], params["c"])
    np.testing.assert_array_equal(found.params["w"], params["w"])


def test_no_checkpoint_is_a_fresh_start_and_a_garbled_state_file_is_named(
    tmp_path: Path,
) -> None:
    assert load_checkpoint(tmp_path) is None
    save_checkpoint(tmp_path, 0, {"w": np.ones(2)}, {"next_round": 1})
    (tmp_path / STATE_FILE).write_bytes(b"not fobs")
    with pytest.raises(CheckpointError, match=str(tmp_path / STATE_FILE)):
        load_checkpoint(tmp_path)
    save_checkpoint(tmp_path, 0, {"w": np.ones(2)}, {"next_round": 1})
    (tmp_path / MODEL_FILE).unlink()
    with pytest.raises(CheckpointError, match=str(tmp_path / MODEL_FILE)):
        load_checkpoint(tmp_path)


def test_fedavg_declares_its_round_best_metric_patience_and_stop_through_the_contract() -> None:
    first = FedAvgController(5, 1, PERSISTOR, key_metric="acc", patience=3)
    assert isinstance(first, Resumable)
    state = {
        "next_round": 3,
        "best_value": 0.75,
        "best_round": 1,
        "rounds_without_improvement": 1,
        "stopped": None,
    }
    first.restore_state(state)
    assert first.checkpoint_state() == state
    second = FedAvgController(5, 1, PERSISTOR, key_metric="acc", patience=3)
    second.restore_state({**state, "rounds_without_improvement": 2})
    assert second._best.update(3, {"acc": 0.5}) is False
    assert second._best.patience_exhausted() is not None
