"""layernorm_q and gelu_q on shares against aiompc.qmath's integer programs, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from aiompc.errors import InputError
from aiompc.party import Party
from aiompc.protocols.nonlinear.layernorm import LayerNormRings, gelu_q, layernorm_q
from aiompc.qmath import layernorm_int, lookup_int
from aiompc.qtables import gelu_table, layernorm_params
from aiompc.ring import from_signed
from nonlinear_helpers import Shared, opened, run_both, run_over_tcp


def _rows(gen: np.random.Generator, shape: tuple[int, ...], bits: int) -> np.ndarray:
    """Signed ``bits``-bit rows with deviations from 0 to the full range, plus edge rows."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    std = 2.0 ** (bits - 1) * 2.0 ** gen.uniform(-6, 0.5, shape[:-1] + (1,))
    x = np.clip(np.round(gen.normal(0, std, shape)), lo, hi).astype(np.int64)
    flat = x.reshape(-1, shape[-1])
    if flat.shape[0] >= 4:
        flat[0] = 7  # zero variance
        flat[1] = lo
        flat[2, ::2], flat[2, 1::2] = lo, hi  # the widest row
        flat[3] = 0
        flat[3, 0] = hi  # one outlier
    return x


@pytest.mark.parametrize("shape,l_in,kwargs", [
    ((6, 16), 8, {}), ((2, 3, 33), 8, {"octaves": 0}), ((5, 128), 8, {"std_max": 3.0, "octaves": 0}), ((4, 1), 8, {}),
    ((1, 24), 6, {}),
    ((3, 20), 12, {"center_bits": 10, "out_bits": 6}), ((3, 64), 8, {"rsqrt_bits": 6, "rsqrt_out_bits": 9}),
    ((8, 48), 8, {"octaves": 4}), ((2, 4, 128), 8, {"octaves": 2}), ((4, 1), 8, {"octaves": 3}),
    ((6, 16), 6, {"octaves": 1, "rsqrt_bits": 5}),
])
async def test_layernorm_q_equals_layernorm_int(shape: tuple, l_in: int, kwargs: dict,
                                                 gen: np.random.Generator) -> None:
    params, _ = layernorm_params(0.1, shape[-1], in_bits=l_in, **kwargs)
    x = _rows(gen, shape, l_in)
    xs = Shared(from_signed(x, l_in), l_in)
    l_out = params.out_bits + 2

    async def job(p: Party):
        return await layernorm_q(p, "ln", xs.mine(p), params=params, l_in=l_in, l_out=l_out)

    s, c = await run_both(job)
    assert s.shape == c.shape == shape
    want = layernorm_int(x, params)
    np.testing.assert_array_equal(opened(s, c, l_out), want)
    if shape[-1] > 1:
        assert len(np.unique(want)) > 2  # not a degenerate case


async def test_layernorm_q_over_tcp_and_empty(gen: np.random.Generator) -> None:
    params, _ = layernorm_params(0.05, 32)
    x = _rows(gen, (4, 32), 8)
    xs = Shared(from_signed(x, 8), 8)

    async def job(p: Party):
        y = await layernorm_q(p, "ln", xs.mine(p), params=params, l_in=8, l_out=8)
        y2 = await layernorm_q(p, "ln2", xs.mine(p), params=params, l_in=8, l_out=8)  # same input again
        e = await layernorm_q(p, "empty", np.zeros((0, 32), np.uint64), params=params, l_in=8, l_out=8)
        return y, y2, e

    (s, s2, se), (c, c2, ce) = await run_over_tcp(job)
    np.testing.assert_array_equal(opened(s, c, 8), layernorm_int(x, params))
    np.testing.assert_array_equal(opened(s2, c2, 8), layernorm_int(x, params))
    assert np.mean(c == c2) < 0.05  # fresh output masks: the client's 8-bit shares of equal outputs differ
    assert se.shape == ce.shape == (0, 32)


@pytest.mark.parametrize("H,octaves", [(128, 0), (768, 0), (128, 4), (768, 4)])
async def test_layernorm_cost_per_element(H: int, octaves: int, gen: np.random.Generator) -> None:
    """Online bits per element from the channel, and the share of each step (printed with -s)."""
    rows = 4
    params, _ = layernorm_params(0.05, H, octaves=octaves)
    x = _rows(gen, (rows, H), 8)
    xs = Shared(from_signed(x, 8), 8)

    async def job(p: Party):
        y = await layernorm_q(p, "ln", xs.mine(p), params=params, l_in=8, l_out=8)
        st = p.channel.stats().select("ln", phase="online")
        steps = {k: p.channel.stats().select(f"ln/{k}", phase="online") for k in
                 ("ext", "center", "sq", "var", "mul", "out")}
        return y, st.bytes_sent + st.bytes_recv, {k: (v.bytes_sent + v.bytes_recv) * 8 / x.size for k, v in steps.items()}

    (s, total, steps), (c, _, _) = await run_both(job)
    np.testing.assert_array_equal(opened(s, c, 8), layernorm_int(x, params))
    bits = total * 8 / x.size
    print(f"layernorm H={H} octaves={octaves}: {bits:.0f} bits/element online; " + ", ".join(f"{k} {v:.0f}" for k, v in steps.items()))
    rings = LayerNormRings(params, H, 8, 8)
    assert rings.l_v <= 30 and rings.l_p <= 26  # tight rings
    assert 300 < bits < 1450  # 1143 / 1161 (octaves 0), 1182 / 1168 (octaves 4) with silent OT


@pytest.mark.parametrize("bad,match", [
    ({"x": np.zeros((2, 0), np.uint64)}, "non-empty last axis"), ({"x": np.array([[256]], np.uint64)}, "below 2"),
    ({"x": np.array([[-1]])}, "unsigned"), ({"l_out": 4}, "cannot hold"), ({"params": "p"}, "LayerNormParams"),
    ({"l_in": 0}, "ring width"), ({"l_in": 60, "x": np.zeros((1, 1024), np.uint64)}, "> 62"),
])
async def test_layernorm_q_bad_inputs(bad: dict, match: str) -> None:
    params, _ = layernorm_params(0.1, 4)
    args = {"x": np.zeros((2, 4), np.uint64), "params": params, "l_in": 8, "l_out": 8} | bad

    async def job(p: Party):
        if p.is_server:
            await layernorm_q(p, "bad", args["x"], params=args["params"], l_in=args["l_in"], l_out=args["l_out"])

    with pytest.raises(InputError, match=match):
        await run_both(job)


@pytest.mark.parametrize("k,l_in,l_out", [(8, 8, 10), (6, 16, 8), (8, 5, 12), (4, 4, 64)])
async def test_gelu_q_equals_the_table(k: int, l_in: int, l_out: int, gen: np.random.Generator) -> None:
    table = gelu_table(k, 4.0 / (1 << (k - 1)), 1 / 64, min(l_out, 10))
    bits = min(k, l_in)
    x = np.concatenate([np.arange(-(1 << (bits - 1)), 1 << (bits - 1)), gen.integers(-(1 << (bits - 1)),
                                                                                      1 << (bits - 1), 100)])
    xs = Shared(from_signed(x, l_in), l_in)

    async def job(p: Party):
        return await gelu_q(p, "gelu", xs.mine(p), table=table, l_in=l_in, l_out=l_out)

    s, c = await run_both(job)
    np.testing.assert_array_equal(opened(s, c, l_out), lookup_int(x, table))


async def test_gelu_q_bad_table() -> None:
    async def job(p: Party):
        await gelu_q(p, "g", np.zeros(3, np.uint64), table=(0, 1, 2), l_in=8, l_out=8)

    with pytest.raises(InputError, match="2\\^k entries"):
        await run_both(job)
