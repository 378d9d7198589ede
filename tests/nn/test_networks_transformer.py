"""The built-in transformer networks as ONNX: valid, the stated shapes and parameter counts, the operators
PyTorch exports, and the BERT computation (an independent numpy forward pass of the same weights, against
onnxruntime where it is installed)."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from aiompc.errors import InputError
from aiompc.nn.networks import NETWORKS, network_inputs, network_onnx, network_spec
from aiompc.nn.networks_transformer import BERT_SHAPES, DEFAULT_SEQ, LN_EPS, BertShape

# name: (layers, hidden, heads, ffn, parameters as published for the encoder without embeddings, + our 2-class head)
PUBLISHED = {"bert-tiny": (2, 128, 2, 512, 396_544 + 258), "bert-base": (12, 768, 12, 3072, 85_054_464 + 1_538)}


def _weights(model: onnx.ModelProto) -> list[np.ndarray]:
    """The model's tensors with at least one axis (weights, biases, LayerNorm parameters), in graph order."""
    return [numpy_helper.to_array(t) for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT
            and len(t.dims) >= 1]


def _ort(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    ort = pytest.importorskip("onnxruntime")
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"input": x.astype(np.float32)})[0]


def _layernorm(x: np.ndarray, g: np.ndarray, b: np.ndarray) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + LN_EPS) * g + b


def _gelu(x: np.ndarray) -> np.ndarray:
    from math import erf

    return 0.5 * x * (1.0 + np.vectorize(erf)(x / math.sqrt(2.0)))


def _bert_reference(x: np.ndarray, weights: list[np.ndarray], shape: BertShape) -> np.ndarray:
    """BERT in numpy from the weights in the order the network draws them: per layer Wq bq Wk bk Wv bv Wo bo
    ln1 (scale, offset) W1 b1 W2 b2 ln2, then the head."""
    w = iter(np.asarray(a, np.float64) for a in weights)
    n, s, h = x.shape
    d = shape.head_dim
    for _ in range(shape.layers):
        q, k, v = (x @ next(w) + next(w) for _ in range(3))
        split = [t.reshape(n, s, shape.heads, d).transpose(0, 2, 1, 3) for t in (q, k, v)]
        scores = split[0] @ split[1].transpose(0, 1, 3, 2) / math.sqrt(d)
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        ctx = (probs @ split[2]).transpose(0, 2, 1, 3).reshape(n, s, h)
        x = _layernorm(x + ctx @ next(w) + next(w), next(w), next(w))
        f = _gelu(x @ next(w) + next(w)) @ next(w) + next(w)
        x = _layernorm(x + f, next(w), next(w))
    out = x[:, 0] @ next(w) + next(w)
    assert next(w, None) is None
    return out


def test_the_shapes_are_the_published_ones() -> None:
    for name, (layers, hidden, heads, ffn, params) in PUBLISHED.items():
        shape = BERT_SHAPES[name]
        assert (shape.layers, shape.hidden, shape.heads, shape.ffn) == (layers, hidden, heads, ffn)
        assert shape.parameters == params
        spec = network_spec(name)
        assert spec.sequence and spec.input_shape == (DEFAULT_SEQ, hidden) and spec.classes == 2


def test_bert_tiny_is_valid_onnx_with_the_exported_operators() -> None:
    model = network_onnx("bert-tiny")
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == 17
    ops = Counter(n.op_type for n in model.graph.node)
    layers = 2
    assert ops["MatMul"] == layers * (6 + 2) + 1  # 6 constant-weight + QK^T and PV per layer, the head
    assert ops["Softmax"] == ops["Erf"] == layers and ops["LayerNormalization"] == 2 * layers
    assert ops["Transpose"] == 4 * layers and ops["Slice"] == 1
    assert set(ops) == {"MatMul", "Add", "Div", "Mul", "Erf", "Reshape", "Transpose", "Softmax",
                        "LayerNormalization", "Slice"}
    assert sum(w.size for w in _weights(model)) == BERT_SHAPES["bert-tiny"].parameters
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["N", DEFAULT_SEQ, 128]


@pytest.mark.parametrize("seq", [1, 5, 32])
def test_bert_tiny_computes_bert(seq: int) -> None:
    """onnxruntime's output equals a numpy BERT of the same weights, at several sequence lengths (one token
    included) and a batch of 3 (the batch axis is dynamic)."""
    model = network_onnx("bert-tiny", seq=seq)
    x = network_inputs("bert-tiny", 3, seq=seq)
    assert x.shape == (3, seq, 128)
    want = _bert_reference(x, _weights(model), BERT_SHAPES["bert-tiny"])
    got = _ort(model, x)
    assert got.shape == (3, 2)
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)
    assert np.abs(want).max() > 0.05  # not a degenerate network


def test_the_gelu_operator_form_computes_the_same() -> None:
    """``gelu="gelu"`` writes opset-20 ``Gelu`` nodes instead of the Erf form; same weights, same logits."""
    from aiompc.nn.networks_transformer import TokenNet, bert_body

    def build(form: str) -> onnx.ModelProto:
        net = TokenNet(np.random.default_rng(0), (8, 128), "bert-tiny", gelu=form)
        return net.b.build(bert_body(BERT_SHAPES["bert-tiny"])(net))

    erf, op = build("erf"), build("gelu")
    assert op.opset_import[0].version == 20 and Counter(n.op_type for n in op.graph.node)["Gelu"] == 2
    assert "Erf" not in {n.op_type for n in op.graph.node}
    x = network_inputs("bert-tiny", 2, seq=8)
    np.testing.assert_allclose(_ort(op, x), _ort(erf, x), rtol=1e-4, atol=1e-4)


def test_weights_are_seeded_and_do_not_depend_on_the_sequence_length() -> None:
    a, b, c = (_weights(network_onnx("bert-tiny", seed=s)) for s in (0, 0, 1))
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    assert not np.array_equal(a[0], c[0])
    longer = _weights(network_onnx("bert-tiny", seq=128))
    assert all(np.array_equal(u, v) for u, v in zip(a, longer))


def test_seq_is_only_for_token_networks() -> None:
    assert network_spec("bert-tiny").label(128) == "bert-tiny:seq128"
    assert network_spec("bert-tiny").label() == f"bert-tiny:seq{DEFAULT_SEQ}"
    assert network_spec("minionn").label() == "minionn"
    with pytest.raises(InputError, match="--seq"):
        network_onnx("minionn", seq=16)
    with pytest.raises(InputError, match="at least 1"):
        network_inputs("bert-tiny", 1, seq=0)
    with pytest.raises(InputError, match="heads must divide"):
        BertShape(layers=1, hidden=10, heads=3, ffn=8)


@pytest.mark.slow
def test_bert_base_builds_with_its_parameter_count() -> None:
    """BERT-base (340 MB of float weights): valid, 85.06 M parameters, 12 layers of the stated operators and
    the output shape onnxruntime computes (one sample of 8 tokens)."""
    model = network_onnx("bert-base", seq=8)
    onnx.checker.check_model(model)
    assert sum(w.size for w in _weights(model)) == BERT_SHAPES["bert-base"].parameters == PUBLISHED["bert-base"][4]
    ops = Counter(n.op_type for n in model.graph.node)
    assert ops["Softmax"] == 12 and ops["LayerNormalization"] == 24 and ops["MatMul"] == 12 * 8 + 1
    reshapes = [numpy_helper.to_array(t).tolist() for t in model.graph.initializer if t.name.startswith("shape")]
    assert [0, 8, 12, 64] in reshapes and [0, 8, 768] in reshapes
    assert _ort(model, network_inputs("bert-base", 1, seq=8)).shape == (1, 2)


def test_every_transformer_is_registered() -> None:
    assert [n for n, s in NETWORKS.items() if s.sequence] == list(BERT_SHAPES)
