"""Iron's fixed-point program (the cheetah baseline) of transformer layers: BERT-style blocks (onnx.helper) and
PyTorch's TransformerEncoderLayer (skipped without torch), run by run_int, against run_float."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest

from aiompc.errors import UnsupportedModel
from aiompc.nn.fixed_point import CHEETAH_FRAC_BITS, CHEETAH_RING_BITS, fixed_point
from aiompc.nn.graph import FloatGraph
from aiompc.nn.interpret import run_float, run_int
from aiompc.nn.ir import QGraph
from aiompc.nn.onnx_import import load_onnx
from transformer_onnx import bert_block

# |fixed point - float| / max|y|: measured 0.15-0.3% on these blocks at f = 12 (Iron's fxmath error bounds:
# softmax ~5 LSB, GELU 2 LSB + the tanh form against erf, LayerNorm 16 LSB + relative, then the matmuls' sums).
TOL = 0.01


def _error(fg: FloatGraph, n: int = 8) -> tuple[QGraph, float]:
    x = np.random.default_rng(1).standard_normal((n, *fg.input_shape))
    g = fixed_point(fg)
    want = run_float(fg, x)
    got = g.dequantize_output(run_int(g, g.quantize_input(x)))
    return g, float(np.abs(got - want).max() / np.abs(want).max())


@pytest.mark.parametrize("kw", [
    {"gelu": "tanh"},
    {"gelu": "erf", "layernorm": "decomposed", "qkv": "split", "mask": True, "position": True, "head": 3},
    {"gelu": "relu", "layers": 2},
])
def test_bert_block_fixed_point_matches_float(kw: dict) -> None:
    fg = load_onnx(bert_block(**kw))
    g, err = _error(fg)
    assert err < TOL
    ops = [n.op for n in g.nodes]
    layers = kw.get("layers", 1)
    assert ops.count("softmax_fx") == layers and ops.count("layernorm_fx") == 2 * layers
    assert ops.count("gelu_fx") == (0 if kw["gelu"] == "relu" else layers)
    assert ops.count("matmul_shared") == 2 * layers
    for n in g.nodes:  # Iron's widths: every fixed-point non-linearity at f = 12 in the 37-bit ring
        if n.op.endswith("_fx"):
            assert (n.f, n.l) == (CHEETAH_FRAC_BITS, CHEETAH_RING_BITS)
            assert g.tensors[n.inputs[0]].scale == (2.0 ** -CHEETAH_FRAC_BITS,)
    # the products' truncations: every MatMulShared reads f-bit inputs and writes a 2f accumulator
    for n in g.nodes:
        if n.op == "matmul_shared":
            assert all(g.tensors[i].scale == (2.0 ** -12,) for i in n.inputs)
            assert g.tensors[n.output].scale == (2.0 ** -24,)
    assert [n.op for n in g.without_weights().nodes] == ops


def test_layernorm_epsilon_is_the_models() -> None:
    fg = load_onnx(bert_block())
    next(n for n in fg.nodes if n.op == "layernorm").attrs["eps"] = 1e-3
    g, err = _error(fg)
    assert [n.eps for n in g.nodes if n.op == "layernorm_fx"] == pytest.approx([1e-3, 1e-5]) and err < TOL
    next(n for n in fg.nodes if n.op == "mul_const").attrs["value"] = -0.5
    with pytest.raises(UnsupportedModel, match="positive"):
        fixed_point(fg)


@pytest.mark.parametrize("norm_first", [False, True])
def test_torch_transformer_encoder_layer_fixed_point(norm_first: bool, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxscript")
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, activation="gelu", batch_first=True,
                                             norm_first=norm_first).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(layer, (torch.randn(1, 5, 16),), str(tmp_path / "m.onnx"), dynamo=True, verbose=False)
    _, err = _error(load_onnx(onnx.load(str(tmp_path / "m.onnx"))))
    assert err < TOL


def test_attention_mask_on_a_2f_accumulator_is_added_after_the_truncation() -> None:
    from aiompc.nn.graph import FloatNode

    causal = np.where(np.tril(np.ones((6, 6), dtype=bool)), 0.0, -1e4)
    nodes = [FloatNode("transpose", "kt", ("x",), "t", {"perm": (1, 0)}),
             FloatNode("matmul2", "qk", ("x", "t"), "s"),
             FloatNode("add_const", "mask", ("s",), "m", params={"value": causal}),
             FloatNode("softmax", "sm", ("m",), "p", {"axis": -1})]
    fg = FloatGraph("x", "p", {"x": (6, 4), "t": (4, 6), "s": (6, 6), "m": (6, 6), "p": (6, 6)}, nodes)
    g, err = _error(fg)
    assert [n.op for n in g.nodes] == ["transpose", "matmul_shared", "requantize", "add_const", "softmax_fx"]
    add = g.nodes[3]
    assert g.tensors[add.inputs[0]].scale == (2.0 ** -12,)  # -1e4 at 2f = 24 bits would leave the 37-bit ring
    assert err < TOL
    nodes[2].params["value"] = causal * 1e8
    with pytest.raises(UnsupportedModel, match="does not fit"):
        fixed_point(fg)


async def test_lowered_bert_block_runs_securely_in_cheetah_mode() -> None:
    """Iron's program of the block through the engine's cheetah mode, exact truncations: bit for bit run_int."""
    import aiompc
    from aiompc.nn.modes import engine_config
    from aiompc.nn.secure import run_secure

    fg = load_onnx(bert_block(seq=4, hidden=8, heads=2, ffn=16, mask=True, head=3))
    x = np.random.default_rng(0).standard_normal((2, *fg.input_shape))
    g = fixed_point(fg)
    xq = g.quantize_input(x)
    config = engine_config("cheetah", exact=True)
    _, client = await aiompc.run_local(lambda p: run_secure(p, g, batch=len(xq), config=config),
                                       lambda p: run_secure(p, g.without_weights(), xq, config=config))
    assert np.array_equal(client.output, run_int(g, xq))
