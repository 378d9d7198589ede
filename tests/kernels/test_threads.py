"""Splitting a computation over threads: the ranges cover everything once, results keep their order,
errors surface."""

from __future__ import annotations

import threading

import pytest

from aiompc.errors import InputError
from aiompc.kernels.threads import default_parts, run_parts, split_ranges


@pytest.mark.parametrize("n,parts,align", [(0, 3, 1), (1, 4, 1), (10, 3, 1), (1000, 7, 64), (5, 2, 8), (4096, 2, 4096)])
def test_ranges_partition_the_rows(n: int, parts: int, align: int) -> None:
    ranges = split_ranges(n, parts, align)
    covered = [i for lo, hi in ranges for i in range(lo, hi)]
    assert covered == list(range(n))
    assert len(ranges) <= parts and all(lo % align == 0 for lo, _ in ranges)
    if n >= parts * align:
        assert len(ranges) == parts


def test_parts_run_in_threads_and_keep_their_order() -> None:
    seen: set[int] = set()

    def work(lo: int, hi: int) -> list[int]:
        seen.add(threading.get_ident())
        return list(range(lo, hi))

    out = run_parts(work, 100, 4)
    assert [i for part in out for i in part] == list(range(100))
    assert threading.get_ident() in seen  # the first part runs in the caller
    assert default_parts() >= 1


def test_an_error_in_any_part_is_raised_after_all_parts_end() -> None:
    done: list[int] = []

    def work(lo: int, hi: int) -> None:
        if lo:
            raise ValueError(f"part {lo}")
        done.append(lo)

    with pytest.raises(ValueError, match="part"):
        run_parts(work, 10, 3)
    assert done == [0]
    with pytest.raises(InputError):
        split_ranges(5, 0)
