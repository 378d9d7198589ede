"""A cross term of ``matmul_shared`` reveals nothing of the server's share ``Y`` beyond ``X @ Y``.

The server's share is a full-ring "weight" (one digit: ``weight_bits = l``) or split into digits; either way the
reply must be flooded and re-randomised like every linear layer's.  Two server shares that give the same product
on the client's ``X`` (``X`` is zero in inner column ``k``; the shares differ only in row ``k``, one of them at the
ring's extremes) must give identically distributed replies on what the client sees (``c1`` and the decryption
noise), with the statistics of :mod:`test_privacy`, whose negative controls show they catch a server that skips
re-randomisation or flooding.
"""

from __future__ import annotations

import numpy as np
import pytest

from aiompc.crypto.he import keygen, public_key
from aiompc.crypto.prg import PRG
from aiompc.protocols.linear.engine import absorb_chunk, encrypt_chunk, output_batches
from aiompc.protocols.linear.fc import fc_plan
from aiompc.protocols.linear.matmul import digit_inputs, digit_weights
from aiompc.protocols.linear.planners import PLANNERS
from aiompc.protocols.linear.prepared import prepare_weights
from aiompc.protocols.linear.tiling import MatmulShape

from test_privacy import KS_CRIT, assert_replies_identically_distributed, ks_stat, low_phase_bits

ROWS, INNER, COLS = 4, 6, 3

# (ring, digits, planner): a full-ring plaintext at a small ring, and Cheetah's 37-bit ring in digits
SETTINGS = {"full-ring-16": (16, 1, "cheetah-smallest"), "digits-37": (37, 3, "cheetah")}


@pytest.fixture(scope="module", params=sorted(SETTINGS))
def setting(request):
    l, d, planner = SETTINGS[request.param]
    plan = fc_plan(MatmulShape(ROWS, d * INNER, COLS), l, weight_bits=-(-l // d), planner=PLANNERS[planner])
    assert plan.stat_security >= 40 and plan.layout.units == 1 and plan.layout.inputs == 1
    rng = np.random.default_rng(3)
    x = rng.integers(0, 1 << l, (1, ROWS, INNER), dtype=np.uint64)
    x[..., -1] = 0  # row INNER-1 of Y does not influence X @ Y
    y1 = rng.integers(0, 1 << l, (1, INNER, COLS), dtype=np.uint64)
    y2 = y1.copy()
    y2[:, -1] = np.array([1 << (l - 1), (1 << (l - 1)) - 1, (1 << l) - 1], dtype=np.uint64)  # extremes
    mask = np.uint64((1 << l) - 1)
    assert not np.array_equal(y1, y2)
    assert np.array_equal(np.matmul(x, y1) & mask, np.matmul(x, y2) & mask)
    sk = keygen(plan.he, PRG(b"\x02" * 32))
    pk = public_key(sk, PRG(b"\x03" * 32))
    lay = plan.layout
    upload = encrypt_chunk(sk, lay.input_polys(digit_inputs(x, l, d)[0], l)[0], PRG(b"\x04" * 32))
    own = lay.input_polys(np.zeros((ROWS, d * INNER), dtype=np.uint64), l)[0]  # the server holds no share of X
    accs = [absorb_chunk(plan, None, upload, own, prepare_weights(plan, digit_weights(y, l, d)[0]), 0, lay.inputs)
            for y in (y1, y2)]
    (batch,) = output_batches(plan, 0)
    return plan, sk, pk, accs, batch


def test_cross_term_replies_are_identically_distributed(setting) -> None:
    plan, sk, pk, accs, batch = setting
    r = np.zeros((batch.count, batch.positions.size), dtype=np.uint64)
    assert_replies_identically_distributed(plan, sk, pk, accs, batch, r, seed_tail=b"\x09")


def test_controls_see_the_share_without_rerandomisation_or_flooding(setting) -> None:
    plan, sk, pk, accs, batch = setting
    raw = [acc.to_coeff().data[1, 0, 0] for acc in accs]
    assert not np.array_equal(raw[0], raw[1])  # c1 before re-randomisation depends on the server's share
    a, b = low_phase_bits(plan, sk, pk, accs, batch, 0, 1, 40)  # re-randomised, not flooded
    assert max(ks_stat(a[:, j], b[:, j]) for j in range(a.shape[1])) > KS_CRIT
    a, b = low_phase_bits(plan, sk, pk, accs, batch, plan.output.flood_bits, plan.output.flood_terms, 40)
    assert max(ks_stat(a[:, j], b[:, j]) for j in range(a.shape[1])) < KS_CRIT
