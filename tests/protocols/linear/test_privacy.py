"""The server's reply reveals nothing about its weights beyond the output.

Two weight sets give equal outputs on the client's input (they differ only on an input channel that is
zero).  With the client's upload and keys fixed, the server's replies over many runs (fresh server
randomness) must be identically distributed on what the client sees: ``c1`` and the decryption noise at
the exported coefficients.  Negative controls show the same statistics catch a server that skips
re-randomisation (``c1`` then depends on the weights) or flooding (the noise then does).

Four settings: a one-uniform flood (``cheetah-smallest``, a 2-channel 5×5 layer), the same at 52 bits per result
ciphertext, the same layer with two uniforms at the quantized mode's per-inference levels (45 bits per result
with ``fail_bits`` 54, :func:`aiompc.nn.stat_budget.inference_levels`) and the two-uniform flood
of Cheetah mode's wide layers (a 1-channel 55×55 layer at l = 37, 3,025 visible coefficients, whose only
input channel is the zero one).  In the last, switching from q ≈ 2^112 to Q = 2^62 scales the
weight-dependent noise (~2^20) far below one unit, so the client's final view cannot show a missing flood in
a few hundred runs; the flood's own test is on the re-randomised ciphertext before the switch, where the
same statistic does catch a server that does not flood.
"""

from __future__ import annotations

import numpy as np
import pytest

from dataclasses import dataclass

from aiompc.protocols.linear.plan import CheetahPlanner, FloodLevels, LinearPlan, make_plan
from aiompc.protocols.linear.planners import PLANNERS
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
COLUMNS = 25  # coefficients compared per statistic (evenly spaced; bounds the false alarms of many tests)


def ks_stat(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample KS statistic scaled by sqrt(n m / (n + m))."""
    a, b = np.sort(a.astype(np.float64)), np.sort(b.astype(np.float64))
    grid = np.concatenate([a, b])
    d = np.abs(np.searchsorted(a, grid, side="right") / a.size - np.searchsorted(b, grid, side="right") / b.size).max()
    return float(d * np.sqrt(a.size * b.size / (a.size + b.size)))


def centered(v: np.ndarray, bits: int) -> np.ndarray:
    v = v.astype(np.uint64) & np.uint64((1 << bits) - 1)
    return v.astype(np.int64) - np.where(v >= np.uint64(1 << (bits - 1)), np.int64(1 << bits), np.int64(0))


def columns(n: int) -> np.ndarray:
    """At most :data:`COLUMNS` evenly spaced indices of ``n`` coefficients (all of them when few)."""
    return np.unique(np.linspace(0, n - 1, min(n, COLUMNS)).astype(np.int64))


@dataclass(frozen=True)
class TwoUniformsAt:
    """Cheetah's tiling with the smallest ``q`` for a two-uniform flood at ``levels`` (the quantized planner's
    choice under a per-inference budget, on a layout whose replies this test can read)."""

    levels: FloodLevels
    name = "two-uniforms"

    def __call__(self, shape, l: int, weight_bits: int, *, out_shift: int = 0, pack: int = 1) -> LinearPlan:
        layout = CheetahPlanner(he="smallest").layout(shape)
        return make_plan(layout, l, weight_bits, stat_bits=self.levels.tent, flood_terms=2, fail_bits=self.levels.fail)


SETTINGS = {
    "one-uniform": (ConvShape.make(2, 5, 5, 1, 3, padding=1), 16, 16, PLANNERS["cheetah-smallest"]),
    "two-uniform": (ConvShape.make(1, 55, 55, 2, 3, padding=1), 37, 14, CheetahPlanner()),
    "one-uniform-52": (ConvShape.make(2, 5, 5, 1, 3, padding=1), 16, 16, CheetahPlanner(he="smallest", stat_bits=52)),
    "two-uniform-inference": (ConvShape.make(2, 5, 5, 1, 3, padding=1), 16, 16, TwoUniformsAt(FloodLevels(54, 45, 54))),
}


@pytest.fixture(scope="module", params=sorted(SETTINGS))
def setting(request):
    """(plan, sk, pk, the two accumulators, the output batch) for one of :data:`SETTINGS`: the client's input
    is zero on the last input channel, and the two weight sets differ only there."""
    rng = np.random.default_rng(7)
    shape, l, wb, planner = SETTINGS[request.param]
    plan = conv_plan(shape, l, weight_bits=wb, planner=planner)
    assert plan.output.flood_terms == (2 if request.param.startswith("two-uniform") else 1)
    assert plan.stat_security >= plan.pipeline.stat_bits and plan.pipeline.fail_bits >= plan.pipeline.stat_bits
    assert plan.layout.inputs == 1  # one upload ciphertext holds the whole input
    sk, pk, accs = twin_accumulators(plan, shape, l, wb, rng, channel=-1)
    (batch,) = output_batches(plan, 0)
    return plan, sk, pk, accs, batch


def twin_accumulators(plan, shape: ConvShape, l: int, weight_bits: int, rng: np.random.Generator,
                      channel: int, keyed=None) -> tuple:
    """``(sk, pk, accs)``: the client's input (random mod ``2^l``) is zero on input ``channel``, so two weight sets
    of ``weight_bits`` bits that differ only there give equal outputs (checked); with the client's keys and its
    upload (first chunk) fixed, ``accs`` holds the server's accumulator for each weight set.  ``keyed``: the
    parameters the keys are made for (another ``t`` over the same primes, ``HEParams.key_params``); ``sk`` is
    returned at those and ``pk`` bound to ``plan.he``."""
    x = rng.integers(0, 1 << l, shape.in_shape, dtype=np.uint64)
    x[channel] = 0  # the weights on this channel do not influence the output
    w1 = rng.integers(-(1 << (weight_bits - 1)), 1 << (weight_bits - 1), shape.weight_shape)
    w2 = w1.copy()
    w2[:, channel] = rng.integers(-(1 << (weight_bits - 1)), 1 << (weight_bits - 1), w2[:, channel].shape)
    assert not np.array_equal(w1, w2)
    assert np.array_equal(conv2d_ref(x, w1, shape, l), conv2d_ref(x, w2, shape, l))
    xs, xc = share(x, l, PRG(b"\x01" * 32))
    sk = keygen(keyed or plan.he, PRG(b"\x02" * 32))
    pk = public_key(sk, PRG(b"\x03" * 32))
    if keyed is not None:
        pk = pk.at(plan.he)
    lay = plan.layout
    upload = encrypt_chunk(sk if keyed is None else sk.at(plan.he), lay.input_polys(xc, l)[0], PRG(b"\x04" * 32))
    own = lay.input_polys(xs, l)[0]
    accs = [absorb_chunk(plan, None, upload, own, prepare_weights(plan, w), 0, lay.inputs) for w in (w1, w2)]
    return sk, pk, accs


def client_view(plan, sk, reply: bytes, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(c1 coefficients, decryption noise at the exported coefficients ``positions``) as the client computes them."""
    res = ResultCiphertext.from_bytes(plan.he, reply, positions)
    k = res.modulus.bit_length() - 1
    phi = result_phase(sk, res)[0]
    m = ((phi + np.uint64(1 << (k - plan.l - 1))) >> np.uint64(k - plan.l)) & np.uint64(plan.he.t - 1)
    noise = centered(phi - (m << np.uint64(k - plan.l)), k)
    return res.c1[0], noise


def assert_replies_identically_distributed(plan, sk, pk, accs, batch, r: np.ndarray, *, seed_tail: bytes) -> None:
    """The client's view of the replies (the first c1 coefficients and the decrypted noise at spread columns)
    for the two accumulators ``accs`` is the same distribution over ``TRIALS`` server coins (KS test), and the
    statistic is not blind: the flooded noise is spread over many values."""
    cols = columns(batch.positions.size)
    views = []
    for s, acc in enumerate(accs):
        c1s, noises = [], []
        for i in range(TRIALS):
            reply = finish_batch(plan, acc, batch, r, pk, PRG(bytes([s, i % 256, i // 256]) * 8 + seed_tail * 8))
            c1, noise = client_view(plan, sk, reply, batch.positions)
            c1s.append(c1[:8])
            noises.append(noise[cols])
        views.append((np.array(c1s), np.array(noises)))
    (c1_a, n_a), (c1_b, n_b) = views
    for j in range(c1_a.shape[1]):
        assert ks_stat(c1_a[:, j], c1_b[:, j]) < KS_CRIT
    for j in range(n_a.shape[1]):
        assert ks_stat(n_a[:, j], n_b[:, j]) < KS_CRIT
    assert np.unique(n_a[:, 0]).size > TRIALS // 2


def test_replies_are_identically_distributed(setting) -> None:
    plan, sk, pk, accs, batch = setting
    assert plan.stat_security >= 40
    r = np.zeros((1, batch.positions.size), dtype=np.uint64)  # the mask is uniform anyway; fix it here
    assert_replies_identically_distributed(plan, sk, pk, accs, batch, r, seed_tail=b"\x00")


def low_phase_bits(plan, sk, pk, accs, batch, flood_bits: int, flood_terms: int, trials: int) -> list[np.ndarray]:
    """Per weight set, ``(trials, columns)``: the low 20 bits of the phase (mod the first prime, at the top
    modulus) at the exported coefficients after :func:`rerandomize` with this flood."""
    cols = batch.positions[columns(batch.positions.size)]
    out = []
    for s, acc in enumerate(accs):
        rows = []
        for i in range(trials):
            ct = rerandomize(Ciphertext(plan.he, acc.data, acc.ntt_form), pk, PRG(bytes([s, i]) * 16), flood_bits,
                             flood_terms)
            ph = phase(sk, ct)[0]  # residues mod q at the top level
            rows.append(ph[0, cols] % np.uint64(1 << 20))
        out.append(np.array(rows, dtype=np.float64))
    return out


def test_controls_detect_a_server_that_skips_rerandomisation_or_flooding(setting) -> None:
    plan, sk, pk, accs, batch = setting
    # without re-randomisation, c1 is a function of the weights (the client knows every a)
    raw = [acc.to_coeff().data[1, 0, 0] for acc in accs]
    assert not np.array_equal(raw[0], raw[1])
    # re-randomised but not flooded: the phase noise still carries sum(w * e)
    a, b = low_phase_bits(plan, sk, pk, accs, batch, 0, 1, 40)
    assert max(ks_stat(a[:, j], b[:, j]) for j in range(a.shape[1])) > KS_CRIT


def test_the_plans_flood_hides_the_weights_before_the_switch(setting) -> None:
    """The statistic that catches a missing flood above finds nothing once the plan's own flood (one or two
    uniforms: the two paths of :func:`rerandomize`) is added."""
    plan, sk, pk, accs, batch = setting
    a, b = low_phase_bits(plan, sk, pk, accs, batch, plan.output.flood_bits, plan.output.flood_terms, 40)
    assert max(ks_stat(a[:, j], b[:, j]) for j in range(a.shape[1])) < KS_CRIT
    assert np.unique(a[:, 0]).size > 35  # spread, not constant
