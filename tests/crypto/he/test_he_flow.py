"""The documented client/server flow, end to end through bytes, for both parameter families."""

from __future__ import annotations

import numpy as np
import pytest
from he_testing import negacyclic_mod_2k

from aiompc.crypto.he import (
    PlainNTT,
    PublicKey,
    ResultCiphertext,
    SeededCiphertext,
    ServerPipeline,
    add_plain,
    cheetah_params,
    decrypt_result,
    encrypt_symmetric,
    finalize,
    find_params,
    keygen,
    multiply_accumulate,
    plan_output,
    public_key,
)
from aiompc.crypto.prg import PRG


@pytest.mark.parametrize("family", ["cheetah", "quantized"])
def test_secret_shared_linear_layer(family: str) -> None:
    n_in, n_out, taps, norm = 6, 3, 9, 7
    pipe = ServerPipeline(norm, taps, n_in, visible=100)
    params = cheetah_params(37) if family == "cheetah" else find_params(10, pipe)
    n, t = params.n, params.t
    mask = np.uint64(t - 1)
    rng = np.random.default_rng(1)
    x = rng.integers(0, t, size=(n_in, n), dtype=np.uint64)  # the layer input, additively shared
    x_client = rng.integers(0, t, size=(n_in, n), dtype=np.uint64)
    x_server = (x - x_client) & mask
    w = np.zeros((n_out, n_in, n), dtype=np.int64)
    w[..., rng.choice(n, taps, replace=False)] = rng.integers(-norm, norm + 1, size=(n_out, n_in, taps))
    positions = np.sort(rng.choice(n, 100, replace=False))

    client_prg, server_prg = PRG(b"c" * 32), PRG(b"s" * 32)
    # client
    sk = keygen(params, client_prg)
    pk_bytes = public_key(sk, client_prg).to_bytes()
    upload = encrypt_symmetric(sk, x_client, client_prg).to_bytes()
    # server
    pk = PublicKey.from_bytes(params, pk_bytes)
    ct = add_plain(SeededCiphertext.from_bytes(params, upload).expand(), x_server)
    acc = multiply_accumulate(ct, PlainNTT.encode(params, w))
    r = server_prg.integers(params.plain_bits, (n_out, n))  # the server's output share
    acc = add_plain(acc, (0 - r) & mask)
    reply = finalize(acc, pk, plan_output(params, pipe), server_prg, positions).to_bytes()
    # client
    y_client = decrypt_result(sk, ResultCiphertext.from_bytes(params, reply, positions))
    y = (y_client + r[:, positions]) & mask
    for o in range(n_out):
        ref = sum(negacyclic_mod_2k(x[j], w[o, j], 64) for j in range(n_in)) & mask
        assert np.array_equal(y[o], ref[positions])
    # the reply costs what the plan says (plus header and checksum)
    plan = plan_output(params, pipe)
    assert len(reply) == 28 + plan.wire_bits(n, 100, n_out) // 8 + (plan.wire_bits(n, 100, n_out) % 8 > 0)
