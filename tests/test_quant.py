import numpy as np

from aiompc.quant import requantize, truncate


def test_requantize_matches_python_integers(nprng: np.random.Generator) -> None:
    x = nprng.integers(-(1 << 20), 1 << 20, 2000)
    for m, s, lo, hi, rnd in [(3, 2, 0, 15, "nearest"), (12345, 17, -8, 7, "floor"), (1, 0, -128, 127, "nearest")]:
        got = requantize(x, m, s, lo, hi, rnd)
        r = (1 << (s - 1)) if (rnd == "nearest" and s) else 0
        want = [min(max((int(v) * m + r) // (1 << s), lo), hi) for v in x]
        assert got.tolist() == want


def test_truncate_is_floor() -> None:
    assert truncate(np.array([-3, -1, 0, 1, 5]), 1).tolist() == [-2, -1, 0, 0, 2]
