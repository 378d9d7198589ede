"""Cheetah's coefficient encodings of convolutions and matrix products (pure, vectorised, no I/O).

All polynomials are rows of ``uint64`` arrays of length ``N``, coefficients mod ``2^l`` (the caller reduces),
in the negacyclic ring ``Z_{2^l}[X]/(X^N + 1)``.  For every encoding, the negacyclic product of an input
polynomial and a weight polynomial, summed over the input blocks, holds the layer's outputs at the
coefficients given by the matching ``*_positions`` function, exactly (mod ``2^l``); every other coefficient
is garbage that must never leave the server.

Convolution (tile ``C_w x H_w x W_w``, kernel ``kh x kw``, ``S = C_w H_w W_w``, ``O`` = :attr:`ConvTiling.offset`)
    input   ``x^ = sum T[c, i, j] X^(c H_w W_w + i W_w + j)``
    kernel  ``k^ = sum_p sum K[m_p, c, a, b] X^(p S + O - c H_w W_w - a W_w - b)`` for the ``out_pack`` output
            channels ``m_p`` of one output ciphertext (Cheetah: one, ``p = 0``)
    output  coefficient ``p S + O + i W_w + j`` is output channel ``m_p`` at local full-resolution position
            ``(i, j)``, ``0 <= i <= H_w - kh``; with stride ``s`` only ``i, j`` multiples of ``s`` are read.
    The exponents are distinct and no product term wraps onto an output as long as ``out_pack * S <= N``.
    A compact tiling (:attr:`ConvTiling.compact`) stores only ``stored_h`` rows of ``pitch`` coefficients per
    channel and uses ``channel_size = stored_h * pitch`` and ``pitch`` in place of ``H_w W_w`` and ``W_w`` above:
    reads past a stored row or channel land on zeros (the next row's left padding, the next channel's top
    padding, or the unused end of the polynomial).

Matrix product (blocks ``d0 x d1`` of X, ``d1 x d2`` of W^T)
    input   ``A^ = sum A[r, c] X^(r d1 d2 - c)`` (negative exponents wrap with a sign: ``X^-c = -X^(N-c)``)
    weight  ``B^ = sum B[r, c] X^(c d1 + r)`` with ``B = W^T``
    output  coefficient ``r d1 d2 + c d1`` is ``(A B)[r, c]``.  With ``d0 = 1`` this is Cheetah's fc encoding
            ``v^ = v_0 - sum v_j X^(N-j)``, ``W^ = sum W[r, c] X^(r n_i' + c)``.

Grouped and depthwise convolutions use the dense block-diagonal weight (zeros across groups): the
encoding is unchanged and the weight blocks that are all zero are flagged so the protocol skips them.
"""

from __future__ import annotations

import numpy as np

from aiompc.errors import InputError
from aiompc.protocols.linear.tiling import ConvShape, ConvTiling, MatmulTiling

__all__ = [
    "pad_input",
    "dense_weight",
    "conv_input_polys",
    "conv_kernel_polys",
    "conv_kernel_values",
    "scatter_coefficients",
    "conv_kernel_exponents",
    "conv_output_positions",
    "conv_tile_slices",
    "conv_assemble",
    "matmul_input_polys",
    "matmul_weight_polys",
    "matmul_weight_values",
    "matmul_weight_exponents",
    "matmul_output_positions",
    "matmul_assemble",
    "negacyclic_mul",
]

U64 = np.uint64


def _u64(a: np.ndarray, name: str, shape: tuple[int, ...]) -> np.ndarray:
    a = np.asarray(a)
    if a.shape != shape:
        raise InputError(f"{name} must have shape {shape}, got {a.shape}")
    if a.dtype.kind == "i":
        return a.astype(np.int64).view(U64)
    if a.dtype.kind not in "ub":
        raise InputError(f"{name} must hold integers (ring elements), got dtype {a.dtype}")
    return a.astype(U64, copy=False)


# --------------------------------------------------------------------------- convolution


def pad_input(x: np.ndarray, shape: ConvShape) -> np.ndarray:
    """The ``C x Hp x Wp`` zero-padded input (ring elements as ``uint64``)."""
    x = _u64(x, "conv input", shape.in_shape)
    t, b, l, r = shape.padding
    return np.pad(x, ((0, 0), (t, b), (l, r)))


def dense_weight(weight: np.ndarray, shape: ConvShape) -> np.ndarray:
    """The ``M x C x kh x kw`` weight of a grouped conv, zero outside each group's diagonal block."""
    w = _u64(weight, "conv weight", shape.weight_shape)
    if shape.groups == 1:
        return w
    g = shape.groups
    m_g, c_g = shape.out_channels // g, shape.in_channels // g
    dense = np.zeros((shape.out_channels, shape.in_channels, *shape.kernel), dtype=U64)
    wg = w.reshape(g, m_g, c_g, *shape.kernel)
    dv = dense.reshape(g, m_g, g, c_g, *shape.kernel)
    idx = np.arange(g)
    dv[idx, :, idx] = wg
    return dense


def _tile_origins(t: ConvTiling) -> tuple[np.ndarray, np.ndarray]:
    sh, sw = t.shape.stride
    return (np.arange(t.tiles_h) * t.rows_per_tile * sh, np.arange(t.tiles_w) * t.cols_per_tile * sw)


def conv_input_polys(x: np.ndarray, tiling: ConvTiling) -> np.ndarray:
    """Encode an (unpadded) ``C x H x W`` input: ``(tiles_h, tiles_w, channel_blocks, N)`` polynomials.

    Pixels beyond the padded input (in the last tiles) and channels beyond ``C`` (in the last block) are 0.
    """
    t, s = tiling, tiling.shape
    xp = pad_input(x, s)
    r0, c0 = _tile_origins(t)
    need_h = max(int(r0[-1]) + t.tile_h, s.padded_height)  # strided tiles may leave the last rows unread
    need_w = max(int(c0[-1]) + t.tile_w, s.padded_width)
    need_c = t.channel_blocks * t.channels
    big = np.zeros((need_c, need_h, need_w), dtype=U64)
    big[: s.in_channels, : s.padded_height, : s.padded_width] = xp
    rows = r0[:, None] + np.arange(t.stored_h)[None, :]  # (tiles_h, H_w); stored rows only when compact
    cols = c0[:, None] + np.arange(t.pitch)[None, :]  # (tiles_w, W_w); stored columns only when compact
    g = big.reshape(t.channel_blocks, t.channels, need_h, need_w)
    tiles = g[:, :, rows[:, :, None, None], cols[None, None, :, :]]  # (cb, C_w, th, H_w, tw, W_w)
    tiles = tiles.transpose(2, 4, 0, 1, 3, 5).reshape(t.tiles_h, t.tiles_w, t.channel_blocks, t.tile_size)
    out = np.zeros((t.tiles_h, t.tiles_w, t.channel_blocks, t.n), dtype=U64)
    out[..., : t.tile_size] = tiles
    return out


def conv_kernel_values(weight: np.ndarray, tiling: ConvTiling) -> tuple[np.ndarray, np.ndarray]:
    """The weight's kernel coefficients without the zeros: ``(values (out_groups, channel_blocks, E),
    nonzero (out_groups, channel_blocks))``, ``values[g, b, e]`` the coefficient of
    ``X^conv_kernel_exponents(tiling)[e]`` in polynomial ``(g, b)``.

    ``weight`` has the grouped shape ``(M, C // groups, kh, kw)``.  ``nonzero[g, b]`` is False when the block
    is structurally zero (a group boundary), so the protocol may skip that product; it depends on the
    public shape only, never on weight values.  ``E = out_pack·channels·kh·kw <= N``: this compact form is
    what the server keeps for wide layers, where the dense ``(…, N)`` polynomials would not fit in memory.
    """
    t, s = tiling, tiling.shape
    dense = dense_weight(weight, s)
    kh, kw = s.kernel
    mp, cp = t.out_groups * t.out_pack, t.channel_blocks * t.channels
    k = np.zeros((mp, cp, kh, kw), dtype=U64)
    k[: s.out_channels, : s.in_channels] = dense
    k = k.reshape(t.out_groups, t.out_pack, t.channel_blocks, t.channels, kh, kw).transpose(0, 2, 1, 3, 4, 5)
    values = np.ascontiguousarray(k.reshape(t.out_groups, t.channel_blocks, -1))
    # structural zeros: which (output group, channel block) pairs meet a common conv group
    m_group = np.arange(mp) // (s.out_channels // s.groups)
    c_group = np.arange(cp) // (s.in_channels // s.groups)
    valid_m = np.arange(mp) < s.out_channels
    valid_c = np.arange(cp) < s.in_channels
    meet = (m_group[:, None] == c_group[None, :]) & valid_m[:, None] & valid_c[None, :]
    nonzero = meet.reshape(t.out_groups, t.out_pack, t.channel_blocks, t.channels).any(axis=(1, 3))
    return values, nonzero


def scatter_coefficients(values: np.ndarray, exps: np.ndarray, n: int) -> np.ndarray:
    """Dense polynomials ``(*batch, n)`` (``values``' dtype) with ``values[..., e]`` at ``X^exps[e]`` and zeros
    elsewhere."""
    polys = np.zeros((*values.shape[:-1], n), dtype=values.dtype)
    polys[..., np.asarray(exps).reshape(-1)] = values
    return polys


def conv_kernel_polys(weight: np.ndarray, tiling: ConvTiling) -> tuple[np.ndarray, np.ndarray]:
    """Encode the weight: ``(polys (out_groups, channel_blocks, N), nonzero (out_groups, channel_blocks))``
    (:func:`conv_kernel_values` scattered to its exponents)."""
    values, nonzero = conv_kernel_values(weight, tiling)
    return scatter_coefficients(values, conv_kernel_exponents(tiling), tiling.n), nonzero


def conv_kernel_exponents(tiling: ConvTiling) -> np.ndarray:
    """Exponents of the kernel coefficients, flat in the order ``(out slot p, channel c, row a, col b)``.

    ``p S + O - c H_w W_w - a W_w - b``: distinct, in ``[0, N)``; public (they depend on the shape only).
    """
    t = tiling
    kh, kw = t.shape.kernel
    p = np.arange(t.out_pack)[:, None, None, None]
    c = np.arange(t.channels)[None, :, None, None]
    a = np.arange(kh)[None, None, :, None]
    b = np.arange(kw)[None, None, None, :]
    return (p * t.tile_size + t.offset - c * t.channel_size - a * t.pitch - b).reshape(-1)


def conv_tile_slices(tiling: ConvTiling, a: int, b: int) -> tuple[slice, slice]:
    """Output rows and columns (strided output coordinates) computed by spatial tile ``(a, b)``."""
    t, s = tiling, tiling.shape
    r = slice(a * t.rows_per_tile, min((a + 1) * t.rows_per_tile, s.out_height))
    c = slice(b * t.cols_per_tile, min((b + 1) * t.cols_per_tile, s.out_width))
    return r, c


def conv_output_positions(tiling: ConvTiling, a: int, b: int, group: int) -> np.ndarray:
    """Coefficients of output ciphertext ``(tile (a, b), output group)`` that hold outputs.

    Returned as a flat ``int64`` array in the order ``(channel of the group, out row, out col)``; only the
    existing channels of the last group and the existing outputs of edge tiles are listed.
    """
    t, s = tiling, tiling.shape
    rs, cs = conv_tile_slices(t, a, b)
    sh, sw = s.stride
    n_ch = min(t.out_pack, s.out_channels - group * t.out_pack)
    i = np.arange(rs.stop - rs.start) * sh
    j = np.arange(cs.stop - cs.start) * sw
    p = np.arange(n_ch)
    pos = p[:, None, None] * t.tile_size + t.offset + i[None, :, None] * t.pitch + j[None, None, :]
    return pos.reshape(-1)


def conv_assemble(tiling: ConvTiling, values: dict[tuple[int, int, int], np.ndarray]) -> np.ndarray:
    """Place decoded outputs into an ``M x Ho x Wo`` array.

    ``values[(a, b, g)]`` holds the coefficients read at ``conv_output_positions(tiling, a, b, g)``.
    """
    t, s = tiling, tiling.shape
    out = np.zeros(s.out_shape, dtype=U64)
    for (a, b, g), v in values.items():
        rs, cs = conv_tile_slices(t, a, b)
        m0 = g * t.out_pack
        n_ch = min(t.out_pack, s.out_channels - m0)
        out[m0 : m0 + n_ch, rs, cs] = np.asarray(v, dtype=U64).reshape(n_ch, rs.stop - rs.start, cs.stop - cs.start)
    return out


# --------------------------------------------------------------------------- matrix products


def matmul_input_polys(x: np.ndarray, tiling: MatmulTiling, l: int) -> np.ndarray:
    """Encode ``X`` (``batch x in_features``, mod ``2^l``): ``(row_blocks, inner_blocks, N)`` polynomials."""
    t, s = tiling, tiling.shape
    x = _u64(x, "matmul input", (s.batch, s.in_features))
    rp, cp = t.row_blocks * t.d0, t.inner_blocks * t.d1
    a = np.zeros((rp, cp), dtype=U64)
    a[: s.batch, : s.in_features] = x
    a = a.reshape(t.row_blocks, t.d0, t.inner_blocks, t.d1).transpose(0, 2, 1, 3)  # (rb, ib, d0, d1)
    r = np.arange(t.d0)[:, None]
    c = np.arange(t.d1)[None, :]
    e = r * t.d1 * t.d2 - c  # in (-d1, N)
    neg = e < 0
    mask = np.uint64((1 << l) - 1) if l < 64 else np.uint64(-1)
    vals = np.where(neg, (np.uint64(0) - a) & mask, a)  # X^-c = -X^(N-c)
    out = np.zeros((t.row_blocks, t.inner_blocks, t.n), dtype=U64)
    out[:, :, (e % t.n).reshape(-1)] = vals.reshape(t.row_blocks, t.inner_blocks, -1)
    return out


def matmul_weight_values(weight: np.ndarray, tiling: MatmulTiling) -> np.ndarray:
    """``W`` (``out_features x in_features``) without the zeros: ``(col_blocks, inner_blocks, d2·d1)``, the
    coefficients at :func:`matmul_weight_exponents`."""
    t, s = tiling, tiling.shape
    w = _u64(weight, "matmul weight", (s.out_features, s.in_features))
    op, ip = t.col_blocks * t.d2, t.inner_blocks * t.d1
    b = np.zeros((op, ip), dtype=U64)
    b[: s.out_features, : s.in_features] = w
    b = b.reshape(t.col_blocks, t.d2, t.inner_blocks, t.d1).transpose(0, 2, 1, 3)  # (cb, ib, d2 = c, d1 = r)
    return np.ascontiguousarray(b.reshape(t.col_blocks, t.inner_blocks, -1))


def matmul_weight_polys(weight: np.ndarray, tiling: MatmulTiling) -> np.ndarray:
    """Encode ``W`` (``out_features x in_features``): ``(col_blocks, inner_blocks, N)`` polynomials."""
    return scatter_coefficients(matmul_weight_values(weight, tiling), matmul_weight_exponents(tiling), tiling.n)


def matmul_weight_exponents(tiling: MatmulTiling) -> np.ndarray:
    """Exponents ``c d1 + r`` of the weight coefficients, flat in the order ``(c < d2, r < d1)``."""
    t = tiling
    return (np.arange(t.d2)[:, None] * t.d1 + np.arange(t.d1)[None, :]).reshape(-1)


def _block_len(total: int, block: int, index: int) -> int:
    return min(block, total - index * block)


def matmul_output_positions(tiling: MatmulTiling, row_block: int, col_block: int) -> np.ndarray:
    """Coefficients of output ciphertext ``(row block, column block)`` holding outputs, order ``(row, col)``."""
    t, s = tiling, tiling.shape
    nr = _block_len(s.batch, t.d0, row_block)
    nc = _block_len(s.out_features, t.d2, col_block)
    pos = np.arange(nr)[:, None] * (t.d1 * t.d2) + np.arange(nc)[None, :] * t.d1
    return pos.reshape(-1)


def matmul_assemble(tiling: MatmulTiling, values: dict[tuple[int, int], np.ndarray]) -> np.ndarray:
    """Place decoded outputs (``values[(row block, col block)]``) into a ``batch x out_features`` array."""
    t, s = tiling, tiling.shape
    out = np.zeros((s.batch, s.out_features), dtype=U64)
    for (rb, cb), v in values.items():
        nr = _block_len(s.batch, t.d0, rb)
        nc = _block_len(s.out_features, t.d2, cb)
        out[rb * t.d0 : rb * t.d0 + nr, cb * t.d2 : cb * t.d2 + nc] = np.asarray(v, dtype=U64).reshape(nr, nc)
    return out


# --------------------------------------------------------------------------- plaintext reference


def negacyclic_mul(a: np.ndarray, b: np.ndarray, l: int) -> np.ndarray:
    """Negacyclic product ``a . b mod (X^N + 1, 2^l)`` of polynomials ``a`` (shape ``(..., N)``) and ``b`` (``(N,)``).

    Plaintext reference for tests and planners (no HE): ``a`` times the ``N x N`` negacyclic matrix of ``b``,
    in ``uint64`` arithmetic (exact mod ``2^64``, hence mod ``2^l``).  Cost ``O(N^2)`` per product.
    """
    a = np.asarray(a, dtype=U64)
    b = np.asarray(b, dtype=U64)
    n = b.shape[-1]
    if b.ndim != 1 or a.shape[-1] != n:
        raise InputError(f"negacyclic_mul takes a (..., N) and b (N,), got {a.shape} and {b.shape}")
    mask = np.uint64((1 << l) - 1) if l < 64 else np.uint64(-1)
    d = np.arange(n)[None, :] - np.arange(n)[:, None]  # row i = coefficient of a, column k = output
    mat = np.where(d >= 0, b[d % n], np.uint64(0) - b[d % n])
    return (a @ mat) & mask
