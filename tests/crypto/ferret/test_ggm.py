import numpy as np
import pytest

from aiompc.crypto.ferret import ggm
from aiompc.crypto.ferret.ggm import expand, expand_punctured
from aiompc.errors import InputError
from ferret_reference import random_blocks, ref_tree, to_bytes, xor_bytes


def _xor_all(blocks: list[bytes]) -> bytes:
    acc = bytes(16)
    for b in blocks:
        acc = xor_bytes(acc, b)
    return acc


@pytest.mark.parametrize("t,depth", [(1, 1), (3, 4), (5, 7)])
def test_expand_matches_recursive_reference(nprng, t: int, depth: int) -> None:
    roots = random_blocks(nprng, t)
    trees = expand(roots, depth)
    assert trees.leaves.shape == (t << depth, 2) and trees.level_sums.shape == (depth, 2, t, 2)
    for i in range(t):
        levels = ref_tree(to_bytes(roots[i]), depth)
        assert trees.leaves[i << depth : (i + 1) << depth].tobytes() == b"".join(levels[depth])
        for level in range(1, depth + 1):
            for side in (0, 1):
                assert to_bytes(trees.level_sums[level - 1, side, i]) == _xor_all(levels[level][side::2])
        assert to_bytes(trees.leaf_sums()[i]) == _xor_all(levels[depth])


def test_grouping_does_not_change_the_result(nprng, monkeypatch) -> None:
    roots = random_blocks(nprng, 37)
    whole = expand(roots, 6)
    monkeypatch.setattr(ggm, "GROUP_LEAVES", 1 << 7)  # 2 trees per group, last group partial
    grouped = expand(roots, 6)
    assert np.array_equal(whole.leaves, grouped.leaves)
    assert np.array_equal(whole.level_sums, grouped.level_sums)


@pytest.mark.parametrize("parts", [2, 3, 8, 64])
def test_parts_in_threads_do_not_change_the_result(nprng, monkeypatch, parts: int) -> None:
    """Trees cut into ranges (uneven, with several groups per range, more parts than trees) give the same
    leaves and sums, for the sender's and the receiver's expansion."""
    monkeypatch.setattr(ggm, "GROUP_LEAVES", 1 << 7)
    t, depth = 37, 5
    roots = random_blocks(nprng, t)
    whole = expand(roots, depth, clear_lsb=True)
    split = expand(roots, depth, clear_lsb=True, parts=parts)
    assert np.array_equal(whole.leaves, split.leaves) and np.array_equal(whole.level_sums, split.level_sums)
    alpha = nprng.integers(0, 1 << depth, size=t)
    levels = np.arange(1, depth + 1)
    off = 1 - ((alpha[None, :] >> (depth - levels[:, None])) & 1)
    received = np.ascontiguousarray(whole.level_sums[levels[:, None] - 1, off, np.arange(t)[None, :]])
    one = expand_punctured(alpha, received, depth, clear_lsb=True)
    many = expand_punctured(alpha, received, depth, clear_lsb=True, parts=parts)
    assert np.array_equal(one.leaves, many.leaves) and np.array_equal(one.level_sums, many.level_sums)


@pytest.mark.parametrize("clear_lsb", [False, True])
@pytest.mark.parametrize("depth", [1, 2, 5, 9])
def test_punctured_reconstruction_recovers_all_leaves_but_alpha(nprng, monkeypatch, depth: int, clear_lsb: bool) -> None:
    monkeypatch.setattr(ggm, "GROUP_LEAVES", 1 << 8)  # several groups even at small sizes
    t = 40
    roots = random_blocks(nprng, t)
    full = expand(roots, depth, clear_lsb=clear_lsb)
    alpha = nprng.integers(0, 1 << depth, size=t)
    alpha[:2] = [0, (1 << depth) - 1]  # both edges
    levels = np.arange(1, depth + 1)
    off = 1 - ((alpha[None, :] >> (depth - levels[:, None])) & 1)  # (h, t)
    received = full.level_sums[levels[:, None] - 1, off, np.arange(t)[None, :]]
    punct = expand_punctured(alpha, np.ascontiguousarray(received), depth, clear_lsb=clear_lsb)
    leaves = full.leaves.reshape(t, 1 << depth, 2)
    got = punct.leaves.reshape(t, 1 << depth, 2)
    mask = np.ones((t, 1 << depth), bool)
    mask[np.arange(t), alpha] = False
    assert np.array_equal(got[mask], leaves[mask])
    assert not got[np.arange(t), alpha].any()
    assert np.array_equal(punct.leaf_sums(), full.leaf_sums() ^ leaves[np.arange(t), alpha])
    if clear_lsb:
        assert not (full.leaves[:, 0] & np.uint64(1)).any()


def test_wrong_sum_breaks_exactly_the_dependent_leaves(nprng) -> None:
    depth, t = 4, 2
    roots = random_blocks(nprng, t)
    full = expand(roots, depth)
    alpha = np.array([5, 10])
    levels = np.arange(1, depth + 1)
    off = 1 - ((alpha[None, :] >> (depth - levels[:, None])) & 1)
    received = np.ascontiguousarray(full.level_sums[levels[:, None] - 1, off, np.arange(t)[None, :]])
    received[depth - 1, 1, 0] ^= np.uint64(1)  # corrupt tree 1's last level: only its sibling leaf is wrong
    punct = expand_punctured(alpha, received, depth)
    diff = (punct.leaves != full.leaves).any(axis=1).reshape(t, -1)
    assert np.flatnonzero(diff[0]).tolist() == [5]  # only the punctured leaf (zero here)
    assert np.flatnonzero(diff[1]).tolist() == [10, 11]  # the punctured leaf and its sibling


def test_bad_inputs_raise(nprng) -> None:
    with pytest.raises(InputError):
        expand(np.zeros((3, 3), np.uint64), 4)
    with pytest.raises(InputError):
        expand(random_blocks(nprng, 2), 0)
    with pytest.raises(InputError):
        expand(random_blocks(nprng, 2), 4, out=np.empty((31, 2), np.uint64))
    with pytest.raises(InputError):
        expand_punctured(np.array([16]), np.zeros((4, 1, 2), np.uint64), 4)
    with pytest.raises(InputError):
        expand_punctured(np.array([3]), np.zeros((3, 1, 2), np.uint64), 4)
