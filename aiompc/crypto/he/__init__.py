"""RLWE/BFV core for the HE linear layers: coefficient encoding, ``t = 2**l``, RNS + NTT in numpy.

Pure math, no I/O.  The client owns the secret key; the server only multiplies the client's
ciphertexts by its own plaintexts, adds plaintexts, and finishes the result.  All randomness comes
from :class:`aiompc.crypto.prg.PRG`.

Parameters
==========
``HEParams(n, primes, plain_bits)`` — immutable, validated against the HE-standard 128-bit table
(:class:`~aiompc.errors.InsecureParameters` names the number that is off).  Primes are NTT-friendly
(``≡ 1 mod 2N``) and below ``2**30`` so all arithmetic stays in ``uint64``: butterflies in ``[0, 4p)``
fit 32 bits for Shoup multiplication, and 16 residue products sum without overflow (one reduction per 16
terms of a multiply-accumulate).  Many ~30-bit primes rather than few ~60-bit ones is the numpy-friendly
trade: a 60-bit modular product needs a split (4 multiplications and carries) in numpy, costing more
than the extra primes.  Wire sizes and noise depend only on ``log2 q``, never on the split.

* :func:`cheetah_params` ``(l=37)`` — ``N = 4096``, ``log2 q ≈ 109`` (four ≈27.25-bit primes).
* :func:`find_params` ``(l, pipeline)`` — smallest secure ``(N, q)`` for a layer, primes with
  ``q ≡ 1 (mod t)`` where possible.  :func:`min_modulus_bits` gives the need at a given ``N``.

Client
======
::

    sk = keygen(params, prg)
    pk = public_key(sk, prg)                         # once per session: pk.to_bytes()
    up = encrypt_symmetric(sk, m, prg)               # m: (B, N) ints mod t -> SeededCiphertext(c0, seed)
    data = up.to_bytes()                             # B·N·⌈log2 q⌉ bits + 32-byte seed + 21 bytes of header
    ...
    res = ResultCiphertext.from_bytes(params, reply, positions)
    out = decrypt_result(sk, res)                    # (B, len(positions)) values mod t

Server
======
::

    pk = PublicKey.from_bytes(params, pk_bytes)
    ct = SeededCiphertext.from_bytes(params, data).expand()   # Ciphertext, NTT form, (2, B, L, N)
    ct = add_plain(ct, x_server)                      # its additive share (B, N) or (N,)
    w = PlainNTT.encode(params, weights)              # (O, J, N) ints -> NTT form, build once, reuse
    acc = multiply_accumulate(ct, w)                  # O outputs; THE hot path (batched uint64 einsum)
    acc = add_plain(acc, -r)                          # output mask: the server's share is r
    plan = plan_output(params, ServerPipeline(weight_norm=..., weight_count=..., accumulations=...,
                                              visible=len(positions)))
    reply = finalize(acc, pk, plan, prg, positions).to_bytes()

``finalize`` = :func:`rerandomize` (``+ u·pk + (e0 + U, e1)``, ``U`` uniform flooding of
``plan.flood_bits`` bits) → :func:`switch_modulus` (to ``2**62``, or to the first prime via
:func:`switch_level`) → :func:`drop_bits` → :func:`select` (``c0`` at ``positions``, ``c1`` whole).

Privacy of the reply (argued in :mod:`~.result`): the symmetric upload gives the server no key, so the
client sends a public key once — an encryption of zero, ``N·⌈log2 q⌉`` bits plus a seed.  Adding
``u·pk + e1`` makes ``c1`` a fresh RLWE sample (computational), and uniform flooding with
``2**f >= 2**41·visible·B`` hides every weight-dependent noise term bounded by ``B`` (statistical
distance ``<= 2**-40``).  The flooding is added *before* switching so its cost is scaled down with
everything else.  ``tests/crypto/he/test_he_privacy.py`` checks the property statistically (and that it
fails without flooding or without re-randomisation).

Noise (:mod:`~.noise`)
=====================
``estimate(params, pipeline, plan)`` bounds the noise after each stage (fresh → plaintext add →
multiply/accumulate → mask → re-randomise → flood → switch → drop) with decryption failure
``<= 2**-40``; :func:`check` (= ``estimate(...).require()``) raises
:class:`~aiompc.errors.UndecryptableParameters` naming the number that is off.
:func:`plan_output` picks the flood width and the cheapest ``(drop0, drop1)``.  Wire sizes for a cost
model: :func:`seeded_size`, :func:`result_size`, :meth:`OutputPlan.wire_bits`.

Budget example (measured by the tests): with Cheetah's ``q ≈ 2**109`` and ``l = 37``, 40-bit flooding
fits layers whose hidden noise ``B`` satisfies ``41 + log2(visible·B) <= 70`` — e.g. 8-bit weights with
fan-in ≈ 600 and up to ≈ 512 visible outputs per ciphertext, but not 12-bit weights with 4096 visible
outputs; :func:`check` says which number is off, :func:`find_params` finds a set that fits.

Lower level
===========
:class:`NTT` / :func:`get_ntt` (negacyclic, batched over ``(..., primes, N)``), :mod:`~.rns`
(exact encoding ``round(q·m/t)``, scaling, CRT to limbs), :mod:`~.serialize` (bit-exact formats,
``ProtocolError`` on malformed input), :func:`decrypt`, :func:`phase`, :func:`mul_plain`,
:func:`measure_noise` / :func:`measure_result_noise` (client-side diagnostics).
"""

from .bfv import (
    Ciphertext,
    PlainNTT,
    SeededCiphertext,
    add,
    add_plain,
    as_plaintext,
    decrypt,
    encode_plain,
    encrypt_symmetric,
    mul_plain,
    multiply_accumulate,
    multiply_accumulate_into,
    phase,
)
from .keys import PublicKey, SecretKey, expand_uniform, keygen, public_key
from .measure import measure_noise, measure_result_noise
from .noise import (
    FLOOD_TERMS,
    FloodBound,
    NoiseEstimate,
    OutputPlan,
    ServerPipeline,
    check,
    choose_primes,
    estimate,
    flood_bound,
    flood_distance,
    flood_security,
    min_modulus_bits,
    plan_output,
    statistical_security,
)
from .ntt import NTT, get_ntt
from .params import (
    CHEETAH_PLAIN_BITS,
    CHEETAH_RING_DEGREE,
    FAILURE_BITS,
    MAX_PLAIN_BITS,
    SECURITY_TABLE,
    STATISTICAL_SECURITY,
    HEParams,
    max_modulus_bits,
)
from .paramsets import cheetah_params, find_params, params_for_modulus
from .result import (
    ResultCiphertext,
    decrypt_result,
    drop_bits,
    finalize,
    rerandomize,
    result_phase,
    select,
    switch_level,
    switch_modulus,
)
from .serialize import result_size, seeded_size

__all__ = [
    "FLOOD_TERMS", "flood_distance", "flood_security", "statistical_security", "FloodBound", "flood_bound",
    "HEParams", "SECURITY_TABLE", "cheetah_params", "max_modulus_bits", "params_for_modulus",
    "STATISTICAL_SECURITY", "FAILURE_BITS", "MAX_PLAIN_BITS", "CHEETAH_RING_DEGREE", "CHEETAH_PLAIN_BITS",
    "SecretKey", "PublicKey", "keygen", "public_key", "expand_uniform",
    "Ciphertext", "SeededCiphertext", "PlainNTT",
    "as_plaintext", "encode_plain", "encrypt_symmetric", "phase", "decrypt",
    "add", "add_plain", "mul_plain", "multiply_accumulate", "multiply_accumulate_into",
    "ResultCiphertext", "rerandomize", "switch_level", "switch_modulus", "drop_bits", "select",
    "finalize", "result_phase", "decrypt_result",
    "ServerPipeline", "OutputPlan", "NoiseEstimate", "estimate", "check", "plan_output", "min_modulus_bits",
    "find_params", "choose_primes",
    "NTT", "get_ntt",
    "measure_noise", "measure_result_noise", "seeded_size", "result_size",
]
