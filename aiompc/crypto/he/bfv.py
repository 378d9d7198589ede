"""BFV with coefficient encoding and ``t = 2**l``: encryption, decryption, plaintext arithmetic.

A plaintext is a polynomial of ``Z_t[X]/(X^N+1)`` given by its ``N`` coefficients (any integer dtype,
taken mod ``t``).  It is encoded as ``round(q·m/t)`` (exact, see :func:`~.rns.encode_scaled`).
A ciphertext ``(c0, c1)`` decrypts as ``m = round(t·(c0 + c1·s)/q) mod t``; its *noise* is
``c0 + c1·s − q·m/t`` (centered, a real number).

Arrays: a :class:`Ciphertext` holds ``data`` of shape ``(2, B, L, N)`` (component, batch, prime,
coefficient), ``uint64`` residues, in coefficient or NTT form (``ntt_form``).  Batches are the unit
of vectorisation: every operation here is a handful of numpy calls on the whole batch.

Costs (``B`` polynomials, ``L`` primes; one NTT = one polynomial-prime transform):

* :func:`encrypt_symmetric` — ``B·L`` inverse NTTs, PRG output for ``a`` (``≈ 8·B·L·N`` bytes × 4/3) and ``e``.
* :meth:`SeededCiphertext.expand` — ``B·L`` forward NTTs (``a`` is sampled directly in NTT form).
* :func:`decrypt` — ``B·L`` inverse NTTs (plus ``B·L`` forward ones if given coefficient form).
* :func:`mul_plain` — one pointwise product; :func:`multiply_accumulate` — ``2·O·J·L·N``
  multiply-adds with one modular reduction per 16 products (lazy: residues are ``< 2**30``), compiled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aiompc.crypto.prg import PRG
from aiompc.errors import InputError
from aiompc.kernels.rns import mac_add_into, mac_into

from .keys import SecretKey, expand_uniform
from .ntt import get_ntt
from .params import HEParams
from .rns import RNSBasis, encode_scaled, get_basis, mod_add, mod_mul, mod_neg, reduce_signed, scale_round_pow2
from .serialize import dump_seeded, load_seeded

__all__ = [
    "Ciphertext",
    "SeededCiphertext",
    "PlainNTT",
    "as_plaintext",
    "encode_plain",
    "encrypt_symmetric",
    "phase",
    "decrypt",
    "add",
    "add_plain",
    "mul_plain",
    "multiply_accumulate",
    "multiply_accumulate_into",
]



def _level(params: HEParams, level: int | None) -> int:
    """``level`` (default: all of ``params``' primes), checked to lie in ``1..params.levels``."""
    if level is None:
        return params.levels
    if not 1 <= level <= params.levels:
        raise InputError(f"level {level} outside 1..{params.levels} (the number of primes of these parameters)")
    return level


def _basis(params: HEParams, level: int) -> RNSBasis:
    return get_basis(params.primes[:level])


def as_plaintext(params: HEParams, m: np.ndarray | int) -> np.ndarray:
    """Validate plaintext coefficients: ``(N,)`` or ``(B, N)`` integers → ``(B, N)`` ``uint64`` mod ``t``.

    Signed values are taken mod ``t`` (two's complement), so ``-1`` means ``t − 1``.
    """
    arr = np.asarray(m)
    if arr.dtype.kind not in "iub":
        raise InputError(f"plaintext coefficients must be integers, got dtype {arr.dtype}")
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != params.n:
        raise InputError(f"plaintexts must have shape (N,) or (B, N) with N = {params.n}, got {np.shape(m)}")
    return arr.astype(np.int64 if arr.dtype.kind == "i" else np.uint64).view(np.uint64) & np.uint64(params.t - 1)


def encode_plain(params: HEParams, m: np.ndarray, level: int | None = None) -> np.ndarray:
    """Residues of ``round(q_L·m/t)``, coefficient form, shape ``(B, L, N)``."""
    level = _level(params, level)
    return encode_scaled(as_plaintext(params, m), params.plain_bits, _basis(params, level))


# --------------------------------------------------------------------------- containers


@dataclass(frozen=True, eq=False)
class Ciphertext:
    """A batch of ``B`` BFV ciphertexts at level ``L``: ``data[0] = c0``, ``data[1] = c1``, ``(2, B, L, N)``."""

    params: HEParams
    data: np.ndarray
    ntt_form: bool

    def __post_init__(self) -> None:
        d = self.data
        if d.dtype != np.uint64 or d.ndim != 4 or d.shape[0] != 2 or d.shape[3] != self.params.n:
            raise InputError(
                f"ciphertext data must be uint64 of shape (2, B, L, {self.params.n}), got {d.dtype} {d.shape}"
            )
        if not 1 <= d.shape[2] <= self.params.levels:
            raise InputError(f"ciphertext level {d.shape[2]} outside 1..{self.params.levels}")

    @property
    def batch(self) -> int:
        return self.data.shape[1]

    @property
    def level(self) -> int:
        return self.data.shape[2]

    @property
    def basis(self) -> RNSBasis:
        return _basis(self.params, self.level)

    @property
    def c0(self) -> np.ndarray:
        return self.data[0]

    @property
    def c1(self) -> np.ndarray:
        return self.data[1]

    def to_ntt(self) -> Ciphertext:
        """The same ciphertexts in NTT form (``self`` if already)."""
        if self.ntt_form:
            return self
        return Ciphertext(self.params, get_ntt(self.params.n, self.basis.primes).forward(self.data), True)

    def to_coeff(self) -> Ciphertext:
        """The same ciphertexts in coefficient form (``self`` if already)."""
        if not self.ntt_form:
            return self
        return Ciphertext(self.params, get_ntt(self.params.n, self.basis.primes).inverse(self.data), False)

    def __getitem__(self, idx: int | slice) -> Ciphertext:
        """A sub-batch (an integer index keeps a batch of one)."""
        if isinstance(idx, (int, np.integer)):
            i = range(self.batch)[idx]
            idx = slice(i, i + 1)
        return Ciphertext(self.params, self.data[:, idx], self.ntt_form)

    def __len__(self) -> int:
        return self.batch


@dataclass(frozen=True, eq=False)
class SeededCiphertext:
    """A symmetric ciphertext batch as uploaded: ``c0`` (coefficient form, ``(B, L, N)``) and the 32-byte
    seed from which every ``c1`` (= ``a``) is expanded by :func:`~.keys.expand_uniform`."""

    params: HEParams
    c0: np.ndarray
    seed: bytes

    @property
    def batch(self) -> int:
        return self.c0.shape[0]

    @property
    def level(self) -> int:
        return self.c0.shape[1]

    def __iter__(self):  # noqa: ANN204 - allows ``c0, seed = encrypt_symmetric(...)``
        return iter((self.c0, self.seed))

    def expand(self) -> Ciphertext:
        """The full ciphertexts, NTT form: ``(NTT(c0), â)``.  Costs ``B·L`` forward NTTs."""
        c0_hat = get_ntt(self.params.n, self.params.primes[: self.level]).forward(self.c0)
        a_hat = expand_uniform(self.params, self.seed, self.batch, self.level)
        return Ciphertext(self.params, np.stack([c0_hat, a_hat]), True)

    def to_bytes(self) -> bytes:
        """Bit-packed wire form: ``B·N·⌈log2 q⌉`` bits of ``c0`` plus the seed and a small header."""
        return dump_seeded(self.params, self.c0, self.seed)

    @classmethod
    def from_bytes(cls, params: HEParams, data: bytes | memoryview) -> SeededCiphertext:
        """Parse :meth:`to_bytes` output; raises :class:`~aiompc.errors.ProtocolError` if malformed."""
        return cls(params, *load_seeded(params, data))


@dataclass(frozen=True, eq=False)
class PlainNTT:
    """Plaintext polynomials prepared for multiplication: centered lift mod ``t``, reduced mod each prime,
    NTT form.  ``data`` has shape ``(*batch, L, N)``, ``uint32`` residues (every prime is below ``2**30``;
    half the memory and the memory traffic of ``uint64``, which the operations also accept); build once
    with :meth:`encode`, reuse for every product.  ``norm`` is the largest ``|coefficient|`` of the centered lift and ``count`` the largest
    number of non-zero coefficients in one polynomial (the inputs of the noise estimator)."""

    params: HEParams
    data: np.ndarray
    norm: int
    count: int

    @classmethod
    def encode(cls, params: HEParams, w: np.ndarray, level: int | None = None) -> PlainNTT:
        """``w``: integers of shape ``(*batch, N)`` (taken mod ``t``, lifted to ``(−t/2, t/2]``)."""
        arr = np.asarray(w)
        if arr.dtype.kind not in "iub" or arr.ndim < 1 or arr.shape[-1] != params.n:
            raise InputError(f"weights must be integers of shape (..., {params.n}), got {arr.dtype} {arr.shape}")
        return cls.encode_sparse(params, arr, np.arange(params.n), level)

    @classmethod
    def encode_sparse(cls, params: HEParams, values: np.ndarray, exps: np.ndarray, level: int | None = None) -> PlainNTT:
        """The plaintexts of the dense polynomials ``dense[..., exps] = values`` (``exps`` in ``[0, N)``; a repeated
        exponent takes its last value), as :meth:`encode` gives them, without building those (one compiled pass
        per polynomial)."""
        level = _level(params, level)
        ntt = get_ntt(params.n, params.primes[:level])
        data, norm, count = ntt.forward_sparse_centered(values, exps, params.plain_bits, np.uint32)
        data.setflags(write=False)
        return cls(params, data, norm, count)

    @property
    def shape(self) -> tuple[int, ...]:
        """The batch shape (without the ``(L, N)`` tail)."""
        return self.data.shape[:-2]

    @property
    def level(self) -> int:
        return self.data.shape[-2]


# --------------------------------------------------------------------------- operations


def encrypt_symmetric(sk: SecretKey, m: np.ndarray, prg: PRG, *, level: int | None = None) -> SeededCiphertext:
    """Encrypt plaintexts ``m`` (``(N,)`` or ``(B, N)``, mod ``t``) under ``sk``; returns ``(c0, seed)``.

    ``seed = prg.seed()``; ``a = expand_uniform(seed)``; ``e`` rounded Gaussian (σ, clipped at 6σ) from
    ``prg``; ``c0 = round(q·m/t) + e − a·s``.  The upload is ``c0`` plus 32 bytes.
    """
    params = sk.params
    level = _level(params, level)
    mm = as_plaintext(params, m)
    basis = _basis(params, level)
    seed = prg.seed()
    a_hat = expand_uniform(params, seed, mm.shape[0], level)
    e = prg.gaussian(params.sigma, mm.shape)
    a_s = get_ntt(params.n, basis.primes).inverse(mod_mul(a_hat, sk.ntt(level), basis.col))
    c0 = mod_add(encode_scaled(mm, params.plain_bits, basis), reduce_signed(e, basis), basis.col)
    c0 = mod_add(c0, mod_neg(a_s, basis.col), basis.col)
    return SeededCiphertext(params, c0, seed)


def phase(sk: SecretKey, ct: Ciphertext) -> np.ndarray:
    """``c0 + c1·s mod q_L`` in coefficient form, ``(B, L, N)`` residues (decryption before rounding)."""
    basis = ct.basis
    ntt = get_ntt(ct.params.n, basis.primes)
    s_hat = sk.ntt(ct.level)
    if ct.ntt_form:
        return ntt.inverse(mod_add(ct.c0, mod_mul(ct.c1, s_hat, basis.col), basis.col))
    return mod_add(ct.c0, ntt.inverse(mod_mul(ntt.forward(ct.c1), s_hat, basis.col)), basis.col)


def decrypt(sk: SecretKey, ct: Ciphertext) -> np.ndarray:
    """``round(t·(c0 + c1·s)/q_L) mod t``, shape ``(B, N)`` ``uint64``."""
    return scale_round_pow2(phase(sk, ct), ct.params.plain_bits, ct.basis)


def add(x: Ciphertext, y: Ciphertext) -> Ciphertext:
    """Componentwise sum of two ciphertext batches (same level; ``y`` is converted to ``x``'s form)."""
    if x.level != y.level:
        raise InputError(f"cannot add ciphertexts at levels {x.level} and {y.level}")
    y = y.to_ntt() if x.ntt_form else y.to_coeff()
    return Ciphertext(x.params, mod_add(x.data, y.data, x.basis.col), x.ntt_form)


def add_plain(ct: Ciphertext, m: np.ndarray) -> Ciphertext:
    """``ct + round(q·m/t)`` on ``c0``: the result decrypts to ``dec(ct) + m mod t``.

    ``m``: ``(N,)`` (added to every ciphertext) or ``(B, N)``.  Adds at most ``1/2`` to the noise.
    """
    enc = encode_plain(ct.params, m, ct.level)
    if ct.ntt_form:
        enc = get_ntt(ct.params.n, ct.basis.primes).forward(enc)
    if enc.shape[0] not in (1, ct.batch):
        raise InputError(f"{enc.shape[0]} plaintexts for a batch of {ct.batch} ciphertexts")
    c0 = mod_add(ct.c0, enc, ct.basis.col)
    return Ciphertext(ct.params, np.stack([c0, np.broadcast_to(ct.c1, c0.shape)]), ct.ntt_form)


def _check_plain(ct: Ciphertext, w: PlainNTT) -> None:
    if w.params != ct.params:
        raise InputError("plaintext and ciphertext use different parameters")
    if w.level != ct.level:
        raise InputError(f"plaintext level {w.level} != ciphertext level {ct.level}")


def mul_plain(ct: Ciphertext, w: PlainNTT) -> Ciphertext:
    """Elementwise product of ciphertext ``b`` with plaintext ``b`` (``w.shape`` is ``()``, ``(1,)`` or ``(B,)``).

    The result (NTT form) decrypts to the negacyclic product ``dec(ct)·w mod t``; the noise is
    multiplied by ``w`` (see :mod:`~.noise`).
    """
    _check_plain(ct, w)
    ct = ct.to_ntt()
    if w.data.ndim > 3 or (w.data.ndim == 3 and w.data.shape[0] not in (1, ct.batch)):
        raise InputError(f"plaintext batch {w.shape} does not match ciphertext batch {ct.batch}")
    return Ciphertext(ct.params, mod_mul(ct.data, w.data, ct.basis.col), True)


def multiply_accumulate(ct: Ciphertext, w: PlainNTT) -> Ciphertext:
    """``out[o] = Σ_j ct[j]·w[o, j]`` — the hot path of every linear layer.

    ``ct``: ``J`` ciphertexts; ``w``: plaintexts of batch shape ``(O, J)`` (or ``(J,)`` for ``O = 1``).
    Returns ``O`` ciphertexts in NTT form.  Work: ``2·O·J·L·N`` multiply-adds in a compiled kernel
    (:func:`aiompc.kernels.rns.mac_into`: blocks of 16 products below ``2**60``, one reduction per block).
    """
    _check_plain(ct, w)
    ct = ct.to_ntt()
    wd = w.data if w.data.ndim == 4 else w.data[None]
    if wd.ndim != 4 or wd.shape[1] != ct.batch:
        raise InputError(f"weights of batch shape {w.shape} do not match {ct.batch} ciphertexts (need (O, J))")
    n_out = wd.shape[0]
    out = np.empty((2, n_out, ct.level, ct.params.n), dtype=np.uint64)
    mac_into(ct.data, wd, ct.basis.col.reshape(-1), out)  # strided weight blocks are read in place
    return Ciphertext(ct.params, out, True)


def multiply_accumulate_into(ct: Ciphertext, w: PlainNTT, out: np.ndarray) -> None:
    """``out[:, o] += Σ_j ct[j]·w[o, j]`` in place (NTT form, residues mod each prime): :func:`multiply_accumulate`
    without a new array, so a layer's accumulator (or a row range of it, a strided view) absorbs chunk after
    chunk of inputs in place.

    ``ct``: ``J`` ciphertexts; ``w``: plaintexts of batch shape ``(O, J)``; ``out``: ``uint64`` ``(2, O, L, N)``
    holding reduced residues at ``ct``'s level.  Work as :func:`multiply_accumulate` plus ``2·O·L·N`` adds.
    """
    _check_plain(ct, w)
    ct = ct.to_ntt()
    wd = w.data if w.data.ndim == 4 else w.data[None]
    if wd.ndim != 4 or wd.shape[1] != ct.batch:
        raise InputError(f"weights of batch shape {w.shape} do not match {ct.batch} ciphertexts (need (O, J))")
    if out.dtype != np.uint64 or out.shape != (2, wd.shape[0], ct.level, ct.params.n):
        raise InputError(f"accumulator of shape {out.shape} ({out.dtype}) does not match "
                         f"(2, {wd.shape[0]}, {ct.level}, {ct.params.n}) uint64")
    mac_add_into(ct.data, wd, ct.basis.col.reshape(-1), out)
