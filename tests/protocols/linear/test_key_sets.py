"""Keys independent of ``t``: layers of different ``l`` over the same primes share one secret, one public key and
one set of Galois keys on the wire (counted from the channel statistics), and still equal their references."""

from __future__ import annotations

import numpy as np
import pytest

from aiompc.crypto.he import HEParams, cheetah_params, keygen, public_key
from aiompc.crypto.he.galois import GaloisKeyRing, galois_keys
from aiompc.crypto.prg import PRG
from aiompc.errors import InputError
from aiompc.protocols.linear.costs import galois_key_bytes, key_bytes, plan_cost
from aiompc.protocols.linear.engine import run_linear
from aiompc.protocols.linear.layouts import MatmulLayout
from aiompc.protocols.linear.packed import layout_elements
from aiompc.protocols.linear.plan import make_plan, packed_plan
from aiompc.protocols.linear.reference import matmul_ref
from aiompc.protocols.linear.tiling import MatmulShape, MatmulTiling
from aiompc.ring import reconstruct, share, to_signed
from aiompc.session import run_local


def test_key_params_drop_t_only() -> None:
    a, b = cheetah_params(14), cheetah_params(16)
    assert a.fingerprint != b.fingerprint and a.key_fingerprint == b.key_fingerprint
    assert a.key_params == b.key_params and a.key_params.primes == a.primes
    other = HEParams(4096, a.primes[:3], 14)
    assert other.key_fingerprint != a.key_fingerprint
    sk = keygen(a.key_params, PRG())
    assert sk.at(a).params == a and sk.at(a) is sk.at(a) and np.array_equal(sk.at(b).s, sk.s)
    assert public_key(sk, PRG()).at(b).params == b
    with pytest.raises(InputError):
        sk.at(other)
    gk = galois_keys(sk, (3,), PRG())
    GaloisKeyRing(b, (gk,))  # another t: accepted
    with pytest.raises(InputError):
        GaloisKeyRing(other, (gk,))


def _plan(l: int, rows: int, blocks: tuple[int, int, int], n_in: int, n_out: int):
    layout = MatmulLayout(MatmulTiling(MatmulShape(rows, n_in, n_out), 4096, *blocks))
    return packed_plan(make_plan(layout, l, 4, he=cheetah_params(l)))


async def test_two_ls_one_key_set_on_the_wire(nprng) -> None:
    """Two packed layers at ``l = 14`` and ``l = 16`` over the same primes: one public key and one Galois key per
    element of the union on the wire (not one set per ``l``), and both layers exact."""
    p14 = _plan(14, 1, (1, 256, 15), 512, 100)
    p16 = _plan(16, 7, (3, 64, 20), 64, 40)
    assert p14.he.primes == p16.he.primes and p14.he.plain_bits != p16.he.plain_bits
    x1, w1 = nprng.integers(0, 16, (1, 512)), nprng.integers(-8, 8, (100, 512))
    x2, w2 = nprng.integers(0, 16, (7, 64)), nprng.integers(-8, 8, (40, 64))
    s1, c1 = share(x1, 14, PRG())
    s2, c2 = share(x2, 16, PRG())

    async def server(p):
        return (await run_linear(p, "a", p14, s1, w1), await run_linear(p, "b", p16, s2, w2))

    async def client(p):
        return (await run_linear(p, "a", p14, c1), await run_linear(p, "b", p16, c2)), p.channel.stats()

    (ya, yb), ((za, zb), stats) = await run_local(server, client)
    assert np.array_equal(to_signed(reconstruct(ya, za, 14), 14), to_signed(matmul_ref(x1, w1, 14), 14))
    assert np.array_equal(to_signed(reconstruct(yb, zb, 16), 16), to_signed(matmul_ref(x2, w2, 16), 16))
    union = tuple(sorted(set(layout_elements(p14.layout)) | set(layout_elements(p16.layout))))
    galois = stats.select("he-galois")
    assert len(galois.labels) == len(union) and galois.messages == len(union)
    assert galois.bytes_sent == galois_key_bytes(p16.he, union) == galois_key_bytes(p14.he, union)
    keys = stats.select("he-keys")
    assert len(keys.labels) == 1 and keys.bytes_sent == key_bytes(p14.he) == key_bytes(p16.he)
    for label, plan in (("a", p14), ("b", p16)):  # the layers themselves: the byte model
        cost = plan_cost(plan, label)
        assert (stats.select(label).bytes_sent, stats.select(label).bytes_recv) == (cost.upload, cost.download)
