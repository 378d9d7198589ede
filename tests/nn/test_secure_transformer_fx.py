"""Iron's fixed-point nodes (SoftmaxFx, GeluFx, LayerNormFx) in the IR and the engine: run_int is aiompc.fxmath's
programs, and secure evaluation in the cheetah mode equals it bit for bit with exact truncation (within the
protocols' stated LSB bounds, node by node, with Cheetah's approximate one)."""

from __future__ import annotations

import numpy as np
from transformer_graphs import Builder

import aiompc
from aiompc import fxmath, ring
from aiompc.nn.interpret import run_int
from aiompc.nn.ir import GeluFx, LayerNormFx, QGraph, SoftmaxFx
from aiompc.nn.modes import engine_config
from aiompc.nn.rings import ring_widths
from aiompc.nn.secure import run_secure

F = 12


def fixed_point_chain(seq: int = 4, hidden: int = 8) -> QGraph:
    """``(seq, hidden)`` values of ±8 at scale ``2^-12`` → LayerNormFx → GeluFx → SoftmaxFx."""
    b = Builder.start((seq, hidden), F + 4)
    y = b.add(LayerNormFx, "x", "ln", f=F, eps=1e-5)
    y = b.add(GeluFx, y, "gelu", f=F)
    return b.graph(b.add(SoftmaxFx, y, "softmax", f=F))


def tokens(graph: QGraph, batch: int, seed: int) -> np.ndarray:
    spec = graph.input_spec
    rng = np.random.default_rng(seed)
    x = rng.integers(spec.lo, spec.hi + 1, (batch, *spec.shape))
    x[0, 0] = 123  # a constant row: zero variance
    return x.astype(np.int64)


def test_run_int_is_the_fixed_point_programs() -> None:
    graph = fixed_point_chain()
    x = tokens(graph, 3, 0)
    want = fxmath.softmax_fixed(fxmath.gelu_fixed(fxmath.layernorm_fixed(x, f=F, l=37, eps=1e-5), f=F, l=37),
                                f=F, l=37)
    assert np.array_equal(run_int(graph, x), want)
    assert set(ring_widths(graph, engine_config("cheetah").mode).values()) == {37}


async def test_secure_fixed_point_nodes_equal_the_programs_in_exact_mode() -> None:
    graph = fixed_point_chain()
    x = tokens(graph, 2, 1)
    config = engine_config("cheetah", exact=True)
    _, client = await aiompc.run_local(lambda p: run_secure(p, graph, batch=2, config=config),
                                       lambda p: run_secure(p, graph.without_weights(), x, config=config))
    assert np.array_equal(client.output, run_int(graph, x))
    assert [r.category for r in client.layers[:3]] == ["layernorm", "gelu", "softmax"]


async def test_approximate_mode_stays_within_each_protocols_stated_bound() -> None:
    # Cheetah's approximate truncation (the cheetah mode's default): node by node, each secure output against
    # the fixed-point program applied to the secure input, within the LSB bound its protocol states
    # (aiompc.protocols.nonlinear.iron: LayerNorm 4 + |y|/64, GELU 4 + |x|/2^f, Softmax 6 + y(4n + 4)/2^f)
    graph = fixed_point_chain()
    x = tokens(graph, 2, 2)
    config = engine_config("cheetah")
    server, client = await aiompc.run_local(
        lambda p: run_secure(p, graph, batch=2, config=config, keep_shares=True),
        lambda p: run_secure(p, graph.without_weights(), x, config=config, keep_shares=True))
    assert server.shares is not None and client.shares is not None
    got = {e: ring.to_signed(ring.reconstruct(server.shares[e], client.shares[e], 37), 37) for e in graph.tensors}
    ln = fxmath.layernorm_fixed(got["x"], f=F, l=37, eps=1e-5)
    assert np.all(np.abs(got["ln"] - ln) <= 4 + np.abs(ln) / 64)
    gelu = fxmath.gelu_fixed(got["ln"], f=F, l=37)
    assert np.all(np.abs(got["gelu"] - gelu) <= 4 + np.abs(got["ln"]) / 2**F)
    soft = fxmath.softmax_fixed(got["gelu"], f=F, l=37)
    n = soft.shape[-1]
    assert np.all(np.abs(got["softmax"] - soft) <= 6 + soft * (4 * n + 4) / 2**F)
