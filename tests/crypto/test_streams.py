import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from aiompc.crypto.streams import StreamMatrix
from aiompc.errors import InputError


def test_rows_are_aes_ctr_keystreams_read_in_order() -> None:
    seeds = [bytes([i]) * 16 for i in range(5)]
    sm = StreamMatrix(seeds)
    parts = [sm.next(n) for n in (0, 3, 16, 37, 1)]
    got = np.concatenate(parts, axis=1)
    for row, seed in zip(got, seeds):
        ref = Cipher(algorithms.AES(seed), modes.CTR(bytes(16))).encryptor().update(bytes(57))
        assert row.tobytes() == ref
    assert len({r.tobytes() for r in got}) == 5


def test_bad_seed_length() -> None:
    with pytest.raises(InputError):
        StreamMatrix([b"short"])
    assert "secret" in repr(StreamMatrix([bytes(16)]))
