"""aiompc.nn.npy_files.load_npy: numeric arrays come back as float64 with their values; every other file is one
InputError naming the file, what it was for and what was expected (the CLI's one-line messages are checked in
tests/nn/test_commands.py)."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import pytest

from aiompc.errors import InputError
from aiompc.nn.npy_files import load_npy


@pytest.mark.parametrize("arr", [
    np.arange(12, dtype=np.uint8).reshape(3, 4), np.array([-5, 0, 7], dtype=np.int64), np.array([True, False]),
    np.array([[0.1, -2.5e300]], dtype=np.float64), np.array([1.5, -0.25], dtype=np.float16), np.array(3.0),
    np.array([2**62, -(2**62)], dtype=np.int64),
])
def test_numeric_arrays_load_as_float64(arr: np.ndarray, tmp_path: Path) -> None:
    p = tmp_path / "a.npy"
    np.save(p, arr)
    got = load_npy(p, "--input file")
    assert got.dtype == np.float64 and got.shape == arr.shape
    np.testing.assert_array_equal(got, arr.astype(np.float64))
    assert np.array_equal(load_npy(str(p), "x"), got)  # a str path too


def _msg(what: str, p: Path, rest: str) -> str:
    return re.escape(f"{what} {str(p)!r} {rest}")


def test_missing_file_and_directory(tmp_path: Path) -> None:
    for p in (tmp_path / "nope.npy", tmp_path):
        with pytest.raises(InputError, match=_msg("--input file", p, "not found; expected a .npy file of float inputs "
                                                                     "(N, *input_shape) or one sample")):
            load_npy(p, "--input file")


@pytest.mark.parametrize("content", [b"pixels\n", b"", b"\x93NUMPY\x01\x00garbage", pickle.dumps({"a": 1})])
def test_files_that_are_not_npy_arrays(content: bytes, tmp_path: Path) -> None:
    p = tmp_path / "x.npy"
    p.write_bytes(content)
    with pytest.raises(InputError, match=_msg("calibration file", p, "is not a numpy .npy array; expected images, "
                                                                     "written with numpy.save")):
        load_npy(p, "calibration file", "images")


def test_object_arrays_are_refused_without_unpickling(tmp_path: Path) -> None:
    p = tmp_path / "obj.npy"
    np.save(p, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="is not a numpy .npy array"):
        load_npy(p, "f")


@pytest.mark.parametrize("arr,kind", [
    (np.array(["a", "b"]), "<U1 of shape (2,)"), (np.zeros((0, 3)), "float64 of shape (0, 3)"),
    (np.array([1 + 2j]), "complex128 of shape (1,)"),
    (np.array([np.datetime64("2020-01-01")]), "datetime64[D] of shape (1,)"),
])
def test_arrays_that_are_not_numbers(arr: np.ndarray, kind: str, tmp_path: Path) -> None:
    p = tmp_path / "s.npy"
    np.save(p, arr)
    with pytest.raises(InputError, match=_msg("--input file", p, f"holds {kind}; expected weights")):
        load_npy(p, "--input file", "weights")


def test_an_npz_archive_is_named_as_such(tmp_path: Path) -> None:
    p = tmp_path / "d.npz"
    np.savez(p, x=np.zeros(3))
    with pytest.raises(InputError, match=_msg("--input file", p, "holds NpzFile; expected float inputs")):
        load_npy(p, "--input file")
