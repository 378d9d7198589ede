"""Bit-exact wire formats: round trips, exact sizes, and ProtocolError on wrong/short/tampered bytes."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from he_testing import cheetah, keys, params_for, prg

from aiompc.crypto.he import (
    PublicKey,
    ResultCiphertext,
    SeededCiphertext,
    decrypt,
    decrypt_result,
    drop_bits,
    encrypt_symmetric,
    select,
    switch_modulus,
)
from aiompc.crypto.he.serialize import result_size, seeded_size
from aiompc.errors import ProtocolError

HEADER = 16  # magic, version, kind, fingerprint, batch
CRC = 4


def _recrc(body: bytes) -> bytes:
    """Re-seal a tampered body with a valid checksum (to reach the checks behind the CRC)."""
    return body + struct.pack("<I", zlib.crc32(body))


@pytest.mark.parametrize("n,bits,l,batch", [(1024, 27, 4, 1), (4096, 109, 37, 3), (8192, 150, 20, 2)])
def test_seeded_roundtrip_is_bit_exact(n: int, bits: int, l: int, batch: int) -> None:
    params = cheetah(l) if n == 4096 else params_for(n, bits, l)
    sk, _ = keys(params)
    m = np.random.default_rng(n).integers(0, params.t, size=(batch, n), dtype=np.uint64)
    up = encrypt_symmetric(sk, m, prg(n))
    data = up.to_bytes()
    log_q = params.q.bit_length()
    assert len(data) == HEADER + 33 + batch * n * log_q // 8 + CRC == seeded_size(params, batch)
    back = SeededCiphertext.from_bytes(params, data)
    assert back.seed == up.seed and np.array_equal(back.c0, up.c0)
    assert np.array_equal(decrypt(sk, back.expand()), m)
    assert SeededCiphertext.from_bytes(params, memoryview(data)).batch == batch


def test_cheetah_upload_costs_109_bits_per_coefficient() -> None:
    params = cheetah()
    sk, _ = keys(params)
    up = encrypt_symmetric(sk, np.zeros((16, 4096), dtype=np.uint64), prg(1))
    payload = len(up.to_bytes()) - HEADER - 33 - CRC
    assert payload * 8 == 16 * 4096 * 109


def test_public_key_roundtrip() -> None:
    params = cheetah()
    sk, pk = keys(params)
    data = pk.to_bytes()
    back = PublicKey.from_bytes(params, data)
    assert back.seed == pk.seed and np.array_equal(back.b, pk.b)
    assert np.array_equal(back.ntt_pair(4), pk.ntt_pair(4))
    with pytest.raises(ProtocolError, match="kind"):
        SeededCiphertext.from_bytes(params, data)  # a key is not a ciphertext


def _result(params, sk, modulus, drops, positions):
    rng = np.random.default_rng(4)
    m = rng.integers(0, params.t, size=(2, params.n), dtype=np.uint64)
    ct = encrypt_symmetric(sk, m, prg(9)).expand()
    res = drop_bits(switch_modulus(ct, modulus), *drops)
    if positions is not None:
        res = select(res, positions)
    return m, res


@pytest.mark.parametrize("pow2", [True, False])
def test_result_roundtrip_exact_size(pow2: bool) -> None:
    params = cheetah(12) if pow2 else params_for(4096, 100, 12)
    sk, _ = keys(params)
    modulus = 1 << 62 if pow2 else params.primes[0]
    pos = np.array([3, 1, 4000, 59, 26])
    m, res = _result(params, sk, modulus, (45 if pow2 else 8, 30 if pow2 else 2), pos)
    data = res.to_bytes()
    assert len(data) == result_size(params, 2, 5, res.bits0, res.bits1)
    assert len(data) == HEADER + 8 + CRC + -(-2 * 4096 * res.bits1 // 8) + -(-2 * 5 * res.bits0 // 8)
    back = ResultCiphertext.from_bytes(params, data, pos)
    assert back.modulus == modulus and (back.drop0, back.drop1) == (res.drop0, res.drop1)
    assert np.array_equal(back.c0, res.c0) and np.array_equal(back.c1, res.c1)
    assert np.array_equal(decrypt_result(sk, back), m[:, pos])
    with pytest.raises(ProtocolError, match="carries 5"):
        ResultCiphertext.from_bytes(params, data, None)  # positions must agree


def test_tampering_is_detected() -> None:
    params = cheetah(12)
    sk, _ = keys(params)
    up = encrypt_symmetric(sk, np.zeros((1, 4096), dtype=np.uint64), prg(2)).to_bytes()
    _, res = _result(params, sk, 1 << 62, (40, 20), None)
    rdata = res.to_bytes()
    for data, load in ((up, lambda d: SeededCiphertext.from_bytes(params, d)),
                       (rdata, lambda d: ResultCiphertext.from_bytes(params, d))):
        load(data)  # the untouched message loads
        rng = np.random.default_rng(len(data))
        for pos in list(rng.choice(len(data), 12, replace=False)) + [0, 5, len(data) - 1]:
            bad = bytearray(data)
            bad[pos] ^= 1 << int(rng.integers(8))
            with pytest.raises(ProtocolError):
                load(bytes(bad))
        for cut in (0, 3, HEADER, len(data) // 2, len(data) - 1):
            with pytest.raises(ProtocolError):
                load(data[:cut])
        with pytest.raises(ProtocolError):
            load(data + b"\x00")
        with pytest.raises(ProtocolError):
            load(b"")


def test_checks_behind_the_checksum() -> None:
    params = cheetah(12)
    sk, _ = keys(params)
    body = encrypt_symmetric(sk, np.zeros((1, 4096), dtype=np.uint64), prg(3)).to_bytes()[:-CRC]
    load = lambda d: SeededCiphertext.from_bytes(params, d)  # noqa: E731
    wrong_params = cheetah(13)
    with pytest.raises(ProtocolError, match="different parameters"):
        SeededCiphertext.from_bytes(wrong_params, _recrc(body))
    for offset, value, msg in [(0, b"XX", "not an aiompc"), (2, b"\x07", "not an aiompc"),
                               (12, struct.pack("<I", 2), "payload"), (12, struct.pack("<I", 0), "empty"),
                               (16, b"\x09", "level")]:
        bad = body[:offset] + value + body[offset + len(value):]
        with pytest.raises(ProtocolError, match=msg):
            load(_recrc(bad))
    # a coefficient >= q (all-ones 109-bit value) with a valid checksum
    payload_start = HEADER + 33
    n = 4096
    lo = bytearray(body[payload_start : payload_start + 8 * n])
    hi_start = payload_start + 8 * n
    hi = bytearray(body[hi_start:])
    lo[0:8] = b"\xff" * 8
    hi_bits = np.unpackbits(np.frombuffer(bytes(hi), dtype=np.uint8), bitorder="little")
    hi_bits[:45] = 1
    bad = body[:payload_start] + bytes(lo) + np.packbits(hi_bits, bitorder="little").tobytes()
    with pytest.raises(ProtocolError, match="not below the modulus"):
        load(_recrc(bad))


def test_result_header_checks() -> None:
    params = params_for(4096, 100, 12)
    sk, _ = keys(params)
    _, res = _result(params, sk, params.primes[0], (0, 0), None)
    body = res.to_bytes()[:-CRC]
    load = lambda d: ResultCiphertext.from_bytes(params, d)  # noqa: E731
    for offset, value, msg in [(16, b"\x02", "modulus code"), (16, b"\x00\x63", "modulus code"),
                               (18, b"\x40", "cannot drop"), (20, struct.pack("<I", 7), "carries 7")]:
        bad = body[:offset] + value + body[offset + len(value):]
        with pytest.raises(ProtocolError, match=msg):
            load(_recrc(bad))
    # a value >= the prime modulus
    bits1 = res.bits1
    start = HEADER + 8
    raw = np.unpackbits(np.frombuffer(body[start:], dtype=np.uint8), bitorder="little")
    raw[:bits1] = 1
    bad = body[:start] + np.packbits(raw, bitorder="little").tobytes()
    with pytest.raises(ProtocolError, match="not below the modulus"):
        load(_recrc(bad))
