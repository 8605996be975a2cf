"""The numpy persistor's files: what np.savez writes, read back by np.load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ember.runtime.errors import JobError
from ember.runtime.persistors import load_numpy_file, save_npz

PARAMS: dict[str, Any] = {
    "c": np.arange(12.0).reshape(3, 4),
    "fortran": np.asfortranarray(np.arange(12, dtype=np.int32).reshape(3, 4)),
    "strided": np.arange(20.0)[::3],
    "empty": np.zeros((0, 3), np.float32),
    "scalar": np.float32(2.5),
    "flags": np.array([True, False]),
    "text": np.array(["ab", "c"]),
    "record": np.array([(1, 2.0)], dtype=[("a", "<i4"), ("b", "<f8")]),
    "number": 7,
}


def test_saved_params_load_back_with_dtype_shape_and_order(tmp_path: Path) -> None:
    save_npz(PARAMS, tmp_path / "model.npz")
    with np.load(tmp_path / "model.npz", allow_pickle=False) as saved:
        assert sorted(saved.files) == sorted(PARAMS)
        for key, value in PARAMS.items():
            expected = np.asarray(value)
            assert saved[key].dtype == expected.dtype, key
            np.testing.assert_array_equal(saved[key], expected)
        assert saved["fortran"].flags.f_contiguous
        assert not saved["fortran"].flags.c_contiguous
    loaded = load_numpy_file(tmp_path / "model.npz")
    np.testing.assert_array_equal(loaded["strided"], PARAMS["strided"])
    assert not (tmp_path / "model.npz.tmp").exists()


def test_the_file_matches_what_numpy_savez_writes(tmp_path: Path) -> None:
    arrays = {k: np.asarray(v) for k, v in PARAMS.items()}
    save_npz(arrays, tmp_path / "ours.npz")
    np.savez(tmp_path / "numpy.npz", **arrays)
    with np.load(tmp_path / "ours.npz") as ours, np.load(tmp_path / "numpy.npz") as theirs:
        for key in arrays:
            assert ours[key].tobytes() == theirs[key].tobytes()
            assert ours[key].dtype == theirs[key].dtype
            assert ours[key].shape == theirs[key].shape


def test_python_objects_are_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(JobError, match=r"params\['mixed'\] holds Python objects"):
        save_npz({"mixed": np.array([1, "x"], dtype=object)}, tmp_path / "model.npz")
