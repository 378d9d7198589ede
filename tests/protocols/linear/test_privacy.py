"""The server's reply reveals nothing about its weights beyond the output.

Two weight sets give equal outputs on the client's input (they differ only on an input channel that is
zero).  With the client's upload and keys fixed, the server's replies over many runs (fresh server
randomness) must be identically distributed on what the client sees: ``c1`` and the decryption noise at
the exported coefficients.  Negative controls show the same statistics catch a server that skips
re-randomisation (``c1`` then depends on the weights) or flooding (the noise then does).  Both at 40 bits per
result ciphertext and at a per-inference level (52 bits per ciphertext, :mod:`aiompc.nn.stat_budget`).
"""

from __future__ import annotations

import numpy as np
import pytest

from aiompc.protocols.linear.plan import CheetahPlanner
from aiompc.crypto.he import Ciphertext, ResultCiphertext, keygen, phase, public_key, rerandomize, result_phase
from aiompc.crypto.prg import PRG
from aiompc.ring import share
from aiompc.protocols.linear.conv import conv_plan
from aiompc.protocols.linear.engine import absorb_chunk, encrypt_chunk, finish_batch, output_batches
from aiompc.protocols.linear.prepared import prepare_weights
from aiompc.protocols.linear.reference import conv2d_ref
from aiompc.protocols.linear.tiling import ConvShape

TRIALS = 120
KS_CRIT = 2.15  # two-sample Kolmogorov-Smirnov critical value at alpha ~ 1e-4


def ks_stat(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample KS statistic scaled by sqrt(n m / (n + m))."""
    a, b = np.sort(a.astype(np.float64)), np.sort(b.astype(np.float64))
    grid = np.concatenate([a, b])
    d = np.abs(np.searchsorted(a, grid, side="right") / a.size - np.searchsorted(b, grid, side="right") / b.size).max()
    return float(d * np.sqrt(a.size * b.size / (a.size + b.size)))


def centered(v: np.ndarray, bits: int) -> np.ndarray:
    v = v.astype(np.uint64) & np.uint64((1 << bits) - 1)
    return v.astype(np.int64) - np.where(v >= np.uint64(1 << (bits - 1)), np.int64(1 << bits), np.int64(0))


@pytest.fixture(scope="module", params=[40, 52], ids=["40-per-ciphertext", "52-per-ciphertext"])
def setting(request):
    rng = np.random.default_rng(7)
    l, wb = 16, 16
    shape = ConvShape.make(2, 5, 5, 1, 3, padding=1)
    plan = conv_plan(shape, l, weight_bits=wb, planner=CheetahPlanner(he="smallest", stat_bits=request.param))
    assert plan.stat_security >= request.param and plan.pipeline.fail_bits >= request.param
    x = rng.integers(0, 1 << l, shape.in_shape, dtype=np.uint64)
    x[1] = 0  # the weights on channel 1 do not influence the output
    w1 = rng.integers(-(1 << 15), 1 << 15, shape.weight_shape)
    w2 = w1.copy()
    w2[:, 1] = rng.integers(-(1 << 15), 1 << 15, w2[:, 1].shape)
    assert np.array_equal(conv2d_ref(x, w1, shape, l), conv2d_ref(x, w2, shape, l))
    xs, xc = share(x, l, PRG(b"\x01" * 32))
    sk = keygen(plan.he, PRG(b"\x02" * 32))
    pk = public_key(sk, PRG(b"\x03" * 32))
    lay = plan.layout
    upload = encrypt_chunk(sk, lay.input_polys(xc, l)[0], PRG(b"\x04" * 32))
    own = lay.input_polys(xs, l)[0]
    accs = []
    for w in (w1, w2):
        accs.append(absorb_chunk(plan, None, upload, own, prepare_weights(plan, w), 0, lay.inputs))
    (batch,) = output_batches(plan, 0)
    return plan, sk, pk, accs, batch


def client_view(plan, sk, reply: bytes, batch) -> tuple[np.ndarray, np.ndarray]:
    """(c1 coefficients, decryption noise at the exported coefficients) as the client computes them."""
    res = ResultCiphertext.from_bytes(plan.he, reply, batch.positions)
    k = res.modulus.bit_length() - 1
    phi = result_phase(sk, res)[0]
    m = ((phi + np.uint64(1 << (k - plan.l - 1))) >> np.uint64(k - plan.l)) & np.uint64(plan.he.t - 1)
    noise = centered(phi - (m << np.uint64(k - plan.l)), k)
    return res.c1[0], noise


def test_replies_are_identically_distributed(setting) -> None:
    plan, sk, pk, accs, batch = setting
    r = np.zeros((1, batch.positions.size), dtype=np.uint64)  # the mask is uniform anyway; fix it here
    views = []
    for s, acc in enumerate(accs):
        c1s, noises = [], []
        for i in range(TRIALS):
            reply = finish_batch(plan, acc, batch, r, pk, PRG(bytes([s, i % 256, i // 256]) * 8 + b"\x00" * 8))
            c1, noise = client_view(plan, sk, reply, batch)
            c1s.append(c1[:8])
            noises.append(noise)
        views.append((np.array(c1s), np.array(noises)))
    (c1_a, n_a), (c1_b, n_b) = views
    for j in range(c1_a.shape[1]):
        assert ks_stat(c1_a[:, j], c1_b[:, j]) < KS_CRIT
    for j in range(n_a.shape[1]):
        assert ks_stat(n_a[:, j], n_b[:, j]) < KS_CRIT
    # and the statistic is not blind: the flooded noise is spread over many values
    assert np.unique(n_a[:, 0]).size > TRIALS // 2


def test_controls_detect_a_server_that_skips_rerandomisation_or_flooding(setting) -> None:
    plan, sk, pk, accs, batch = setting
    # without re-randomisation, c1 is a function of the weights (the client knows every a)
    raw = [acc.to_coeff().data[1, 0, 0] for acc in accs]
    assert not np.array_equal(raw[0], raw[1])
    # re-randomised but not flooded: the phase noise still carries sum(w * e)
    noises = []
    for s, acc in enumerate(accs):
        rows = []
        for i in range(40):
            ct = rerandomize(Ciphertext(plan.he, acc.data, acc.ntt_form), pk, PRG(bytes([s, i]) * 16), 0)
            ph = phase(sk, ct)[0]  # residues mod q at the top level
            rows.append(ph[0, batch.positions] % np.uint64(1 << 20))  # low bits of the phase
        noises.append(np.array(rows, dtype=np.float64))
    worst = max(ks_stat(noises[0][:, j], noises[1][:, j]) for j in range(batch.positions.size))
    assert worst > KS_CRIT
