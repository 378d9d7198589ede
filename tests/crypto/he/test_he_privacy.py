"""The returned ciphertext hides the server's weights (statistical tests, with negative controls).

The client encrypts zeros, so two different weight sets give the same decrypted output (0).  The
client knows its own encryption errors ``e_j`` and every ``a_j``, hence for each candidate weight set
``w`` the exact weight-dependent noise ``X_w = Σ_j w_j·e_j`` and the un-randomised ``c1 = Σ_j w_j·a_j``.
Its best tests — project the observed noise on ``X_B − X_A``; compare the received ``c1`` with each
candidate — must be at chance with the real pipeline, and must win without flooding resp. without
re-randomisation (so the tests can fail).
"""

from __future__ import annotations

import numpy as np
import pytest
from he_testing import cheetah, keys, negacyclic_int, prg
from scipy.stats import ks_2samp

from aiompc.crypto.he import (
    Ciphertext,
    PlainNTT,
    ServerPipeline,
    add,
    drop_bits,
    encrypt_symmetric,
    finalize,
    measure_noise,
    measure_result_noise,
    mul_plain,
    multiply_accumulate,
    plan_output,
    rerandomize,
    select,
    switch_modulus,
)

SAMPLES = 160  # per world
VISIBLE = 64
N_IN = 2


@pytest.fixture(scope="module")
def setup():
    params = cheetah(8)
    sk, pk = keys(params, seed=7)
    n = params.n
    upload = encrypt_symmetric(sk, np.zeros((N_IN, n), dtype=np.uint64), prg(77)).expand()
    e = np.rint(measure_noise(sk, upload, np.zeros((N_IN, n), dtype=np.uint64))).astype(np.int64)
    rng = np.random.default_rng(2024)
    weights = {}
    for name in "AB":
        w = np.zeros((N_IN, n), dtype=np.int64)
        for j in range(N_IN):
            idx = rng.choice(n, 9, replace=False)
            w[j, idx] = rng.integers(-15, 16, 9)
            w[j, idx[0]] = 15
        weights[name] = w
    pos = np.sort(rng.choice(n, VISIBLE, replace=False))
    pipe = ServerPipeline(15, 9, N_IN, plain_before_multiply=False, visible=VISIBLE)
    plan = plan_output(params, pipe)
    # what the client can compute for each hypothesis
    x_noise = {k: sum(negacyclic_int(e[j], w[j]) for j in range(N_IN))[pos] for k, w in weights.items()}
    acc = {k: multiply_accumulate(upload, PlainNTT.encode(params, w[None])) for k, w in weights.items()}
    return params, sk, pk, pos, plan, x_noise, acc, upload, weights


def _repeat(ct: Ciphertext, times: int) -> Ciphertext:
    return Ciphertext(ct.params, np.repeat(ct.data, times, axis=1), ct.ntt_form)


def _projection(noise: dict[str, np.ndarray], x_noise: dict[str, np.ndarray]) -> tuple[float, float]:
    """The optimal linear test 'is the noise X_A + R or X_B + R': its accuracy, and the KS p-value of
    the projected samples of the two worlds."""
    d = (x_noise["B"] - x_noise["A"]).astype(np.float64)
    d /= np.linalg.norm(d)
    mid = 0.5 * float((x_noise["A"] + x_noise["B"]) @ d)
    proj = {k: noise[k] @ d for k in "AB"}
    right = np.sum(proj["A"] <= mid) + np.sum(proj["B"] > mid)
    return right / (proj["A"].size + proj["B"].size), ks_2samp(proj["A"], proj["B"]).pvalue


def test_flooded_phase_hides_the_weights(setup) -> None:
    params, sk, pk, pos, plan, x_noise, acc, upload, weights = setup
    zero = np.zeros(params.n, dtype=np.uint64)
    assert np.linalg.norm(x_noise["B"] - x_noise["A"]) > 100  # the hypotheses really differ
    flooded, bare = {}, {}
    for k, ct in acc.items():
        many = _repeat(ct, SAMPLES)
        flooded[k] = measure_noise(sk, rerandomize(many, pk, prg(ord(k)), plan.flood_bits), zero)[:, pos]
        bare[k] = measure_noise(sk, rerandomize(many, pk, prg(ord(k) + 1), 0), zero)[:, pos]
    # negative control: without flooding the client tells the weight sets apart every time
    accuracy, pvalue = _projection(bare, x_noise)
    assert accuracy > 0.97 and pvalue < 1e-20
    # with flooding: chance level, and the noise distributions agree
    accuracy, pvalue = _projection(flooded, x_noise)
    assert abs(accuracy - 0.5) < 0.1 and pvalue > 1e-3
    assert ks_2samp(flooded["A"].ravel(), flooded["B"].ravel()).pvalue > 1e-3
    assert np.log2(np.abs(flooded["A"]).max()) > plan.flood_bits - 2


def _client_prediction(params, upload: Ciphertext, w: np.ndarray, plan, pos) -> np.ndarray:
    """The c1 the client expects if the server did not re-randomise: Σ_j w_j·a_j, switched, dropped."""
    total = None
    for j in range(N_IN):
        part = mul_plain(upload[j], PlainNTT.encode(params, w[j]))
        total = part if total is None else add(total, part)
    return select(drop_bits(switch_modulus(total, plan.modulus), plan.drop0, plan.drop1), pos).c1


def test_sent_coefficients_hide_the_weights(setup) -> None:
    params, sk, pk, pos, plan, x_noise, acc, upload, weights = setup
    zero = np.zeros(VISIBLE, dtype=np.uint64)
    predicted = {h: _client_prediction(params, upload, weights[h], plan, pos) for h in "AB"}
    assert np.mean(predicted["A"] == predicted["B"]) < 0.01
    sent = {k: finalize(_repeat(ct, SAMPLES), pk, plan, prg(ord(k) + 10), pos) for k, ct in acc.items()}
    for k in "AB":
        for h in "AB":  # the received c1 matches neither candidate's prediction
            assert np.mean(sent[k].c1 == predicted[h]) < 0.01, (k, h)
    # c1 looks uniform in both worlds (top 4 bits), and alike
    tops = {k: (sent[k].c1 >> np.uint64(sent[k].bits1 - 4)).ravel() for k in "AB"}
    for k in "AB":
        counts = np.bincount(tops[k].astype(np.int64), minlength=16)
        assert counts.min() > 0.9 * tops[k].size / 16 and counts.max() < 1.1 * tops[k].size / 16
    assert ks_2samp(tops["A"], tops["B"]).pvalue > 1e-3
    # the decrypted noise of what is sent: same distribution, chance-level linear test
    noise = {k: measure_result_noise(sk, sent[k], zero) for k in "AB"}
    assert ks_2samp(noise["A"].ravel(), noise["B"].ravel()).pvalue > 1e-3
    accuracy, pvalue = _projection(noise, x_noise)
    assert abs(accuracy - 0.5) < 0.1 and pvalue > 1e-3


def test_without_rerandomisation_c1_betrays_the_weights(setup) -> None:
    """Control: a server that skips re-randomisation sends exactly the client's prediction for its weights."""
    params, sk, pk, pos, plan, x_noise, acc, upload, weights = setup
    predicted = {h: _client_prediction(params, upload, weights[h], plan, pos) for h in "AB"}
    for k in "AB":
        unsafe = select(drop_bits(switch_modulus(acc[k], plan.modulus), plan.drop0, plan.drop1), pos)
        assert np.array_equal(unsafe.c1, predicted[k])
        assert np.mean(unsafe.c1 == predicted["B" if k == "A" else "A"]) < 0.01
