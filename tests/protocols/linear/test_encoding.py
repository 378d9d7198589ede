"""The encodings WITHOUT HE: plaintext negacyclic products of encoded polynomials give the layer's outputs."""

from __future__ import annotations

import numpy as np
import pytest

from aiompc.errors import InputError, ParameterError
from aiompc.protocols.linear.encoding import (
    conv_assemble,
    conv_input_polys,
    conv_kernel_polys,
    conv_output_positions,
    matmul_assemble,
    matmul_input_polys,
    matmul_output_positions,
    matmul_weight_polys,
    negacyclic_mul,
)
from aiompc.protocols.linear.reference import conv2d_ref, matmul_ref
from aiompc.protocols.linear.tiling import (
    ConvShape,
    ConvTiling,
    MatmulShape,
    MatmulTiling,
    cheetah_conv_tiling,
    cheetah_matmul_tiling,
)


def conv_via_encoding(x: np.ndarray, w: np.ndarray, tiling: ConvTiling, l: int) -> np.ndarray:
    xin = conv_input_polys(x, tiling)
    kp, nonzero = conv_kernel_polys(w, tiling)
    values = {}
    for a in range(tiling.tiles_h):
        for b in range(tiling.tiles_w):
            for g in range(tiling.out_groups):
                acc = np.zeros(tiling.n, dtype=np.uint64)
                for cb in range(tiling.channel_blocks):
                    if nonzero[g, cb]:
                        acc += negacyclic_mul(xin[a, b, cb], kp[g, cb], l)
                    else:
                        assert not kp[g, cb].any()
                values[(a, b, g)] = acc[conv_output_positions(tiling, a, b, g)]
    return conv_assemble(tiling, values) & np.uint64((1 << l) - 1)


def negacyclic_schoolbook(a: np.ndarray, b: np.ndarray, l: int) -> np.ndarray:
    n = len(a)
    full = np.convolve(a.astype(object), b.astype(object))
    full = np.concatenate([full, np.zeros(2 * n - len(full), dtype=object)])
    return np.array([(int(v) % (1 << l)) for v in full[:n] - full[n:]], dtype=np.uint64)


def test_negacyclic_mul_matches_schoolbook(nprng: np.random.Generator) -> None:
    for l in (8, 37, 60):
        a = nprng.integers(0, 1 << l, 32, dtype=np.uint64)
        b = nprng.integers(0, 1 << l, 32, dtype=np.uint64)
        assert np.array_equal(negacyclic_mul(a, b, l), negacyclic_schoolbook(a, b, l))


CONV_CASES = [
    # C, H, W, M, k, stride, padding, groups, N, label
    (3, 8, 8, 4, 3, 1, 1, 1, 256, "3x3 pad 1"),
    (5, 9, 7, 3, 3, 2, 1, 1, 256, "stride 2"),
    (4, 6, 6, 5, 1, 1, 0, 1, 64, "1x1, several channel blocks"),
    (2, 11, 11, 2, 7, 2, 3, 1, 128, "7x7 stride 2, H*W > N"),
    (6, 7, 7, 6, 3, 1, 1, 6, 128, "depthwise"),
    (4, 5, 5, 6, 3, 1, 1, 2, 128, "groups 2"),
    (3, 20, 20, 1, 3, 1, 1, 1, 128, "H*W > N, one output channel"),
    (2, 9, 13, 3, (3, 5), (2, 1), (1, 0, 2, 1), 1, 64, "rectangular kernel, asymmetric padding"),
]


@pytest.mark.parametrize("case", CONV_CASES, ids=[c[-1] for c in CONV_CASES])
@pytest.mark.parametrize("l", [8, 37])
def test_conv_encoding_cheetah_tiling(case, l: int, nprng: np.random.Generator) -> None:
    c, h, w, m, k, s, p, g, n, _ = case
    shape = ConvShape.make(c, h, w, m, k, stride=s, padding=p, groups=g)
    tiling = cheetah_conv_tiling(shape, n)
    x = nprng.integers(0, 1 << l, shape.in_shape, dtype=np.uint64)
    wt = nprng.integers(0, 1 << l, shape.weight_shape, dtype=np.uint64)
    assert np.array_equal(conv_via_encoding(x, wt, tiling, l), conv2d_ref(x, wt, shape, l))


@pytest.mark.parametrize(
    "cw, th, tw, pack",
    [(1, 5, 4, 1), (2, 6, 6, 2), (3, 8, 10, 1), (1, 3, 3, 4), (3, 4, 7, 3)],
)
def test_conv_encoding_other_tilings_and_out_packing(cw: int, th: int, tw: int, pack: int, nprng) -> None:
    shape = ConvShape.make(3, 9, 10, 5, 3, stride=(1, 2), padding=(1, 0, 0, 1))
    tiling = ConvTiling(shape, 256, cw, th, tw, pack)
    l = 16
    x = nprng.integers(0, 1 << l, shape.in_shape, dtype=np.uint64)
    wt = nprng.integers(0, 1 << l, shape.weight_shape, dtype=np.uint64)
    assert np.array_equal(conv_via_encoding(x, wt, tiling, l), conv2d_ref(x, wt, shape, l))


def test_cheetah_tile_rule() -> None:
    # H*W <= N: whole image, C_w = min(C, N // HW, N // h^2)
    t = cheetah_conv_tiling(ConvShape.make(64, 56, 56, 64, 3, padding=1), 4096)
    assert (t.channels, t.tile_h, t.tile_w, t.input_ciphertexts, t.output_ciphertexts) == (1, 58, 58, 64, 64)
    t = cheetah_conv_tiling(ConvShape.make(512, 4, 4, 512, 3, padding=1), 4096)
    assert (t.channels, t.tile_h, t.tile_w) == (min(512, 4096 // 36, 4096 // 9), 6, 6)
    t = cheetah_conv_tiling(ConvShape.make(64, 4, 4, 8, 1), 4096)
    assert t.channels == 64
    # H*W > N: one channel, H_w = floor(sqrt(N H / W)), W_w = N // H_w
    t = cheetah_conv_tiling(ConvShape.make(3, 224, 224, 64, 7, stride=2, padding=3), 4096)
    assert (t.channels, t.tile_h, t.tile_w) == (1, 64, 64)
    t = cheetah_conv_tiling(ConvShape.make(3, 100, 400, 4, 3), 4096)
    assert (t.tile_h, t.tile_w) == (32, 128)
    assert t.tile_h * t.tile_w <= 4096


def test_tiling_validation() -> None:
    shape = ConvShape.make(3, 8, 8, 4, 3, padding=1)
    with pytest.raises(ParameterError):
        ConvTiling(shape, 64, 3, 10, 10)  # 300 > 64
    with pytest.raises(ParameterError):
        ConvTiling(shape, 256, 1, 2, 10)  # smaller than the kernel
    with pytest.raises(ParameterError):
        ConvTiling(shape, 256, 1, 10, 10, out_pack=3)  # 300 > 256
    with pytest.raises(InputError):
        ConvShape.make(3, 8, 8, 4, 3, groups=2)
    with pytest.raises(InputError):
        ConvShape.make(3, 2, 2, 4, 3)


MATMUL_CASES = [(1, 20, 7, 64), (1, 100, 3, 64), (3, 10, 9, 64), (5, 17, 11, 128), (1, 1, 1, 16), (4, 64, 1, 64)]


@pytest.mark.parametrize("batch, n_in, n_out, n", MATMUL_CASES)
@pytest.mark.parametrize("l", [8, 37, 60])
def test_matmul_encoding_cheetah_blocks(batch: int, n_in: int, n_out: int, n: int, l: int, nprng) -> None:
    tiling = cheetah_matmul_tiling(MatmulShape(batch, n_in, n_out), n)
    check_matmul(tiling, l, nprng)


@pytest.mark.parametrize("d0, d1, d2", [(1, 7, 3), (2, 5, 4), (3, 10, 2), (1, 10, 6), (5, 1, 1)])
def test_matmul_encoding_any_blocks(d0: int, d1: int, d2: int, nprng) -> None:
    check_matmul(MatmulTiling(MatmulShape(5, 10, 6), 64, d0, d1, d2), 20, nprng)


def check_matmul(tiling: MatmulTiling, l: int, nprng: np.random.Generator) -> None:
    s = tiling.shape
    x = nprng.integers(0, 1 << l, (s.batch, s.in_features), dtype=np.uint64)
    w = nprng.integers(0, 1 << l, (s.out_features, s.in_features), dtype=np.uint64)
    xa = matmul_input_polys(x, tiling, l)
    wb = matmul_weight_polys(w, tiling)
    values = {}
    for rb in range(tiling.row_blocks):
        for cb in range(tiling.col_blocks):
            acc = sum(negacyclic_mul(xa[rb, ib], wb[cb, ib], l) for ib in range(tiling.inner_blocks))
            values[(rb, cb)] = acc[matmul_output_positions(tiling, rb, cb)]
    got = matmul_assemble(tiling, values) & np.uint64((1 << l) - 1)
    assert np.array_equal(got, matmul_ref(x, w, l))


def test_cheetah_fc_blocks_minimise_ciphertexts() -> None:
    shape = MatmulShape(1, 2048, 1001)
    t = cheetah_matmul_tiling(shape, 4096)
    best = min(-(-2048 // d1) + -(-1001 // min(1001, 4096 // d1)) for d1 in range(1, 2049))
    assert t.input_ciphertexts + t.output_ciphertexts == best
    assert t.d0 == 1 and t.d1 * t.d2 <= 4096
