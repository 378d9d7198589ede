import numpy as np
import pytest

from aiompc import ring
from aiompc.crypto.prg import PRG
from aiompc.errors import InputError


@pytest.mark.parametrize("l", [1, 4, 8, 37, 63, 64])
def test_share_reconstruct_signed_roundtrip(l: int) -> None:
    lo, hi = -(1 << (l - 1)), (1 << (l - 1)) - 1
    x = np.array([0, 1, -1, lo, hi, lo + 1, hi - 1], dtype=np.int64)
    x = np.clip(x, lo, hi)
    a, b = ring.share(x, l, PRG())
    assert np.array_equal(ring.to_signed(ring.reconstruct(a, b, l), l), x)
    assert int(a.max()) <= (1 << l) - 1 and int(b.max()) <= (1 << l) - 1


def test_check_width() -> None:
    with pytest.raises(InputError):
        ring.check_width(0)
    with pytest.raises(InputError):
        ring.check_width(65)
