"""ONNX import of transformer layers: BERT-style blocks written with onnx.helper (always run) and PyTorch's own
exports of nn.TransformerEncoderLayer, a ViT patch embedding and a BERT block (skipped without torch)."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

from aiompc.errors import UnsupportedModel
from aiompc.nn.graph import FloatGraph, FloatNode
from aiompc.nn.interpret import run_float
from aiompc.nn.onnx_build import OnnxBuilder
from aiompc.nn.onnx_import import load_onnx
from aiompc.nn.onnx_transformer import simplify_layout
from transformer_onnx import bert_block, qdq_bert_block

TOL = 1e-5  # float64 import against float32 ONNX evaluation


def _reference(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return ReferenceEvaluator(model).run(None, {model.graph.input[0].name: x.astype(np.float32)})[0]


@pytest.mark.parametrize("kw", [
    {},
    {"layernorm": "decomposed"},
    {"layernorm": "decomposed", "opset": 18, "gelu": "relu", "layers": 2},
    {"gelu": "tanh"},
    {"gelu": "op"},
    {"qkv": "split", "mask": True, "position": True, "head": 3},
])
def test_bert_block_imports_and_equals_the_onnx_reference(kw: dict) -> None:
    model = bert_block(**kw)
    fg = load_onnx(model)
    ops = [n.op for n in fg.nodes]
    x = np.random.default_rng(1).standard_normal((3, *fg.input_shape))
    np.testing.assert_allclose(run_float(fg, x), _reference(model, x), atol=TOL, rtol=TOL)
    layers = kw.get("layers", 1)
    assert ops.count("layernorm") == 2 * layers  # the decomposed form is fused
    assert ops.count("softmax") == layers and ops.count("matmul2") == 2 * layers
    assert ops.count("gelu") == (0 if kw.get("gelu") == "relu" else layers)
    assert not {"batchnorm", "flatten"} & set(ops)
    if "head" in kw:  # the bias Adds are fused into the matmuls; the mask and the position are add_const
        assert ops.count("add_const") == 2 and ops[-1] == "gemm" and fg.output_shape == (3,)
        assert "slice" in ops
    else:
        assert "add_const" not in ops and fg.output_shape == fg.input_shape


def test_constant_mask_is_folded_into_an_add_const_of_the_scores() -> None:
    fg = load_onnx(bert_block(mask=True))
    (mask,) = [n for n in fg.nodes if n.op == "add_const"]
    want = np.where(np.tril(np.ones((6, 6), dtype=bool)), 0.0, -1e4)
    np.testing.assert_array_equal(mask.params["value"][0], want.astype(np.float32))
    assert fg.shapes[mask.inputs[0]] == (2, 6, 6)


def test_scalar_scales_fold_into_the_matmul_they_follow() -> None:
    b = OnnxBuilder((4, 8))
    y = b.node("Mul", [b.node("Add", [b.matmul(b.input, np.ones((8, 3))), b.const(np.arange(3.0))]),
                       b.const(np.float32(0.5))])
    fg = load_onnx(b.build(y))
    (n,) = fg.nodes
    assert n.op == "matmul"
    np.testing.assert_allclose(n.params["bias"], 0.5 * np.arange(3.0))
    np.testing.assert_allclose(n.params["weight"], 0.5 * np.ones((8, 3)))


def test_layout_operators_follow_onnx() -> None:
    b = OnnxBuilder((4, 6), opset=18)
    u = b.node("Unsqueeze", [b.input, b.const(np.array([1]), "ax", TensorProto.INT64)])      # (N, 1, 4, 6)
    t = b.node("Transpose", [u], perm=[0, 3, 1, 2])                                          # (N, 6, 1, 4)
    s = b.node("Squeeze", [t, b.const(np.array([2]), "ax", TensorProto.INT64)])              # (N, 6, 4)
    sl = b.node("Slice", [s, *(b.const(np.array(v), "s", TensorProto.INT64) for v in ([1, -3], [5, 4], [1, 2]))])
    g = b.node("Gather", [sl, b.const(np.array([2]), "i", TensorProto.INT64)], axis=2)       # (N, 4, 1)
    f = b.node("Flatten", [b.node("Softmax", [b.node("Relu", [sl])], axis=-1)], axis=1)
    y = b.node("Concat", [b.node("ReduceMean", [g, b.const(np.array([1]), "a", TensorProto.INT64)], keepdims=0),
                          f], axis=1)
    x = np.random.default_rng(2).standard_normal((2, 4, 6))
    for out in (y, f, g):  # the flattened (N, F) results join the CNN concat
        model = b.build(out)
        np.testing.assert_allclose(run_float(load_onnx(model), x), _reference(model, x), atol=TOL)


def test_split_with_num_outputs_and_reduce_mean_of_tokens() -> None:
    b = OnnxBuilder((4, 6), opset=18)
    p, q = b.node("Split", [b.input], axis=2, num_outputs=2), None
    b.nodes[-1].output.append(b._name("split"))
    q = b.nodes[-1].output[1]
    y = b.node("Add", [b.node("MatMul", [p, b.node("Transpose", [q], perm=[0, 2, 1])]),
                       b.const(np.float32(1.0))])
    m = b.node("ReduceMean", [y, b.const(np.array([1]), "a", TensorProto.INT64)], keepdims=1)
    model = b.build(m)
    fg = load_onnx(model)
    assert [n.op for n in fg.nodes] == ["slice", "slice", "transpose", "matmul2", "add_const", "reduce_mean"]
    x = np.random.default_rng(3).standard_normal((2, 4, 6))
    np.testing.assert_allclose(run_float(fg, x), _reference(model, x), atol=TOL)


@pytest.mark.parametrize("build,match", [
    (lambda b: b.node("MatMul", [b.const(np.ones((3, 4))), b.input]), "constant left operand"),
    (lambda b: b.node("Softmax", [b.input], axis=1), "only the last axis"),
    (lambda b: b.node("Transpose", [b.input], perm=[1, 0, 2]), "dynamic batch"),
    (lambda b: b.node("Mul", [b.input, b.const(np.ones((4, 6)))]), "constant of shape"),
    (lambda b: b.node("Gather", [b.input, b.const(np.array([0, 1]), "i", TensorProto.INT64)], axis=1), "one constant"),
])
def test_unsupported_transformer_graphs_name_the_node(build, match: str) -> None:
    b = OnnxBuilder((4, 6), opset=18)
    model = b.build(build(b))
    with pytest.raises(UnsupportedModel, match=match):
        load_onnx(model)


def test_where_on_an_activation_is_refused() -> None:
    b = OnnxBuilder((4, 6), opset=18)
    y = b.node("Where", [b.const(np.tril(np.ones((4, 6), bool)), "m", TensorProto.BOOL), b.node("Relu", [b.input]),
                         b.const(np.float32(-1e4))])
    with pytest.raises(UnsupportedModel, match=r"op Where\).*constants"):
        load_onnx(b.build(y))


def test_simplify_layout_merges_reshape_chains_and_drops_identities() -> None:
    nodes = [FloatNode("reshape", "r1", ("x",), "a", {"shape": (1, 4, 6)}),
             FloatNode("transpose", "t", ("a",), "b", {"perm": (1, 0, 2)}),
             FloatNode("reshape", "r2", ("b",), "c", {"shape": (4, 6)}),
             FloatNode("relu", "r", ("c",), "d")]
    g = FloatGraph("x", "d", {"x": (4, 6), "a": (1, 4, 6), "b": (4, 1, 6), "c": (4, 6), "d": (4, 6)}, nodes)
    out = simplify_layout(g.copy())
    assert [n.op for n in out.nodes] == ["relu"] and out.nodes[0].inputs == ("x",)
    x = np.random.default_rng(0).standard_normal((2, 4, 6))
    np.testing.assert_array_equal(run_float(out, x), run_float(g, x))


# --------------------------------------------------------------------------- PyTorch's exports


def _export(module, x, path: Path) -> onnx.ModelProto:
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxscript")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (x,), str(path), dynamo=True, verbose=False)
    return onnx.load(str(path))


def _check_torch(module, x, tmp_path: Path) -> FloatGraph:
    torch = pytest.importorskip("torch")
    model = _export(module, x, tmp_path / "m.onnx")
    fg = load_onnx(model)
    with torch.no_grad():
        want = module(x).numpy()
    got = run_float(fg, x.numpy().astype(np.float64)).reshape(want.shape)
    np.testing.assert_allclose(got, want, atol=TOL, rtol=TOL)
    ort = pytest.importorskip("onnxruntime")
    sess = ort.InferenceSession(model.SerializeToString())
    np.testing.assert_allclose(got, sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0].reshape(want.shape),
                               atol=TOL, rtol=TOL)
    return fg


@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("norm_first", [False, True])
def test_torch_transformer_encoder_layer(activation: str, norm_first: bool, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, activation=activation, batch_first=True,
                                             norm_first=norm_first)
    fg = _check_torch(layer, torch.randn(1, 5, 16), tmp_path)
    ops = [n.op for n in fg.nodes]
    assert ops.count("matmul2") == 2 and ops.count("softmax") == 1 and ops.count("layernorm") == 2
    assert ops.count("gelu") == (activation == "gelu")


def test_torch_vit_patch_embedding(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class PatchEmbed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = nn.Conv2d(1, 16, kernel_size=4, stride=4)
            self.pos = nn.Parameter(0.1 * torch.randn(4, 16))
            self.norm = nn.LayerNorm(16)
            self.head = nn.Linear(16, 10)

        def forward(self, x):  # (B, 1, 8, 8) -> (B, 4, 16) tokens -> mean pool -> logits
            t = self.proj(x).flatten(2).transpose(1, 2) + self.pos
            return self.head(self.norm(t).mean(dim=1))

    torch.manual_seed(0)
    fg = _check_torch(PatchEmbed(), torch.randn(1, 1, 8, 8), tmp_path)
    ops = [n.op for n in fg.nodes]
    assert ops[0] == "conv" and "transpose" in ops and "add_const" in ops and "reduce_mean" in ops


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript-13", "torchscript-17"])
@pytest.mark.parametrize("approximate", ["tanh", "none"])
def test_torch_bert_style_block_with_split_heads(exporter: str, approximate: str, tmp_path: Path) -> None:
    """A hand-written BERT block: the dynamo exporter (LayerNormalization, Erf / tanh written out) and the
    TorchScript one with a dynamic batch (opset 13: the decomposed LayerNorm; 17: LayerNormalization)."""
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self, h: int = 16, heads: int = 2) -> None:
            super().__init__()
            self.h, self.heads = h, heads
            self.qkv, self.out = nn.Linear(h, 3 * h), nn.Linear(h, h)
            self.ln1, self.ln2 = nn.LayerNorm(h), nn.LayerNorm(h)
            self.ff1, self.ff2 = nn.Linear(h, 4 * h), nn.Linear(4 * h, h)

        def forward(self, x):
            b, s, h = x.shape
            q, k, v = self.qkv(x).split(h, dim=-1)
            q, k, v = (t.view(b, s, self.heads, h // self.heads).transpose(1, 2) for t in (q, k, v))
            p = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(h // self.heads), dim=-1)
            ctx = (p @ v).transpose(1, 2).reshape(b, s, h)
            x = self.ln1(x + self.out(ctx))
            return self.ln2(x + self.ff2(nn.functional.gelu(self.ff1(x), approximate=approximate)))

    torch.manual_seed(0)
    block, x = Block().eval(), torch.randn(1, 6, 16)
    if exporter == "dynamo":
        fg = _check_torch(block, x, tmp_path)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(block, (x,), str(tmp_path / "m.onnx"), dynamo=False, input_names=["x"],
                              opset_version=int(exporter.split("-")[1]), dynamic_axes={"x": {0: "N"}})
        model = onnx.load(str(tmp_path / "m.onnx"))
        assert ("LayerNormalization" in {n.op_type for n in model.graph.node}) == exporter.endswith("17")
        fg = load_onnx(model)
        xs = torch.randn(3, 6, 16)
        with torch.no_grad():
            np.testing.assert_allclose(run_float(fg, xs.numpy().astype(np.float64)), block(xs).numpy(), atol=TOL,
                                       rtol=TOL)
    ops = [n.op for n in fg.nodes]
    assert ops.count("gelu") == 1 and ops.count("layernorm") == 2 and ops.count("matmul2") == 2
    assert next(n for n in fg.nodes if n.op == "gelu").attrs["approximate"] == approximate


def test_qdq_bert_block_from_onnxruntime_quantize_static(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxruntime.quantization")
    x = np.random.default_rng(0).standard_normal((8, 6, 16)).astype(np.float32)
    path = qdq_bert_block(str(tmp_path), x, gelu="op")
    fg = load_onnx(path)
    ops = [n.op for n in fg.nodes]
    assert fg.is_qdq and ops.count("fakequant") > 10 and ops.count("softmax") == 1 and ops.count("matmul2") == 2
    options = ort.SessionOptions()  # the QDQ graph's own float semantics (no fused integer kernels)
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    want = ort.InferenceSession(path, options).run(None, {"tokens": x})[0]
    np.testing.assert_allclose(run_float(fg, x), want, atol=TOL, rtol=TOL)
