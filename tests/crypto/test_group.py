import pytest
from nacl import bindings

from aiompc.crypto import group
from aiompc.crypto.prg import PRG
from aiompc.errors import ProtocolError

L = 2**252 + 27742317777372353535851937790883648493


def scalar(v: int) -> bytes:
    return (v % L).to_bytes(32, "little")


def test_scalar_multiplication_is_a_group_action() -> None:
    rng = PRG(bytes(32))
    a, b = group.random_scalar(rng), group.random_scalar(rng)
    assert int.from_bytes(a, "little") < L and a != b
    A, B = group.base_mul(a), group.base_mul(b)
    assert group.is_valid(A) and group.is_valid(B)
    assert group.mul(a, B) == group.mul(b, A)  # Diffie-Hellman
    ai, bi = int.from_bytes(a, "little"), int.from_bytes(b, "little")
    assert group.add(A, B) == group.base_mul(scalar(ai + bi))
    assert group.sub(A, B) == group.base_mul(scalar(ai - bi))
    assert group.mul(scalar(3), A) == group.add(group.add(A, A), A)


def test_invalid_points_are_rejected() -> None:
    identity = (1).to_bytes(32, "little")
    small_order = bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a")  # order 8
    G = group.base_mul(scalar(1))
    p = 2**255 - 19
    non_canonical = [(p + 1).to_bytes(32, "little"), (2**255 - 1).to_bytes(32, "little")]  # y >= p
    mixed = bindings.crypto_core_ed25519_add(G, small_order)  # order 8·ℓ: off the prime-order subgroup
    for bad in (identity, small_order, *non_canonical, mixed, b"\x00" * 31, b"not a point but 32 bytes long!!!"):
        assert not group.is_valid(bad)
        with pytest.raises(ProtocolError):
            group.check_point(bad, "test point")
    with pytest.raises(ProtocolError):
        group.mul(scalar(5), small_order)
    assert group.check_point(G, "G") == G
    with pytest.raises(ProtocolError):
        group.check_point(12, "not bytes")
