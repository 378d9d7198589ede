"""The replies of the layouts beyond Cheetah's (im2col, interleaved with several output channels per ciphertext
and compact tiles), plain and output-packed, do not depend on the weights beyond the output.

As in ``test_privacy.py``: two weight sets give equal outputs on the client's input (they differ only on an
input channel that is zero); with the client's upload and keys fixed, what the client sees of the server's
replies over many runs — ``c1`` and the decryption noise at the exported coefficients — must be identically
distributed.  (``test_privacy.py`` and ``test_output_packing.py`` hold the negative controls: a server that skips
re-randomisation or flooding is caught by the same statistics.)
"""

from __future__ import annotations

import numpy as np
import pytest
from test_privacy import KS_CRIT, client_view, ks_stat, twin_accumulators

from aiompc.crypto.he import cheetah_params
from aiompc.crypto.he.galois import galois_keys
from aiompc.crypto.he.packing import packing_elements, refresh
from aiompc.crypto.prg import PRG
from aiompc.protocols.linear.engine import finish_batch, finish_group, output_batches
from aiompc.protocols.linear.im2col import Im2colLayout, im2col_shape
from aiompc.protocols.linear.interleaved import InterleavedConvLayout
from aiompc.protocols.linear.packed import packed_groups
from aiompc.protocols.linear.plan import make_plan, packed_plan
from aiompc.protocols.linear.tiling import ConvShape, ConvTiling, MatmulTiling

L = 16
TRIALS = 100
SHAPE = ConvShape.make(2, 3, 3, 2, 3, padding=1)
LAYOUTS = {
    "im2col": Im2colLayout(MatmulTiling(im2col_shape(SHAPE), 4096, 9, 16, 2), source=SHAPE),
    "interleaved-2-outputs-compact": InterleavedConvLayout(ConvTiling(SHAPE, 4096, 2, 5, 5, 2, True)),
}


@pytest.fixture(scope="module", params=[(k, p) for k in LAYOUTS for p in (False, True)],
                ids=lambda v: f"{v[0]}-{'packed' if v[1] else 'plain'}")
def setting(request):
    name, packed = request.param
    layout = LAYOUTS[name]
    rng = np.random.default_rng(11)
    plan = make_plan(layout, L, L // 2, he=cheetah_params(L))
    if packed:
        plan = packed_plan(plan)
    assert plan.layout is layout
    sk, pk, accs = twin_accumulators(plan, SHAPE, L, 8, rng, channel=1)
    return plan, sk, pk, accs


def _replies(plan, sk, pk, accs) -> list[tuple[np.ndarray, np.ndarray]]:
    if plan.output_packing:
        gk = galois_keys(sk, packing_elements(plan.he.n), PRG(b"\x05" * 32))
        (group, *_), _ = packed_groups(plan.layout, 0)
        positions = group.positions
        r = np.zeros(positions.size, dtype=np.uint64)
    else:
        batch = output_batches(plan, 0)[0]
        positions = batch.positions
        r = np.zeros((batch.count, positions.size), dtype=np.uint64)
    views = []
    for s, acc in enumerate(accs):
        c1s, noises = [], []
        for i in range(TRIALS):
            rng = PRG(bytes([s, i]) * 16)
            if plan.output_packing:
                reply = finish_group(plan, refresh(acc, pk, rng.fork()), group, r, gk, rng.fork())
            else:
                reply = finish_batch(plan, acc, batch, r, pk, rng)
            c1, noise = client_view(plan, sk, reply, positions)
            c1s.append(c1[:8])
            noises.append(noise)
        views.append((np.array(c1s), np.array(noises)))
    return views


def test_replies_are_identically_distributed(setting) -> None:
    (c1_a, n_a), (c1_b, n_b) = _replies(*setting)
    for j in range(c1_a.shape[1]):
        assert ks_stat(c1_a[:, j], c1_b[:, j]) < KS_CRIT
    for j in range(n_a.shape[1]):
        assert ks_stat(n_a[:, j], n_b[:, j]) < KS_CRIT
    assert np.unique(n_a[:, 0]).size > TRIALS // 2  # the flooded noise is spread: the test is not blind
