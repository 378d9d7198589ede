"""The built-in transformer benchmark networks: BERT-shaped encoders as float ONNX with seeded random weights.

==============  ======  ======  =====  =====  ===========  ========================================================
name            layers  hidden  heads  FFN    parameters   structure
==============  ======  ======  =====  =====  ===========  ========================================================
``bert-tiny``   2       128     2      512    396,802      post-LN BERT encoder layers, classifier on the first
``bert-base``   12      768     12     3072   85,056,002   token (hidden -> 2 classes)
==============  ======  ======  =====  =====  ===========  ========================================================

**Input: token embeddings.**  A network's input is one sample's token embeddings ``(S, H)`` — the output of
BERT's embedding block (word + position + segment embeddings, then LayerNorm), which the *client* computes
locally from its own tokens: the word-embedding table is a public lookup indexed by the client's private
token ids, so embedding on the server's side would reveal the tokens or need a private lookup.  The
sequence length ``S`` is a parameter (``aiompc bench --seq S``, default :data:`DEFAULT_SEQ`); the network's
weights do not depend on it (no position embedding inside the network).  Benchmark inputs are standard
normal, as the embedding LayerNorm makes them.

**Operators** — what PyTorch's exporter writes for a Hugging Face ``BertLayer`` (opset 17), per layer::

    q, k, v   = MatMul(x, W) + b                       (S, H) each; W (H, H) constant, bias an Add
    heads     = Transpose(Reshape(q, [0, S, h, d]), perm=[0, 2, 1, 3])         (h, S, d); d = H / h
    kT        = Transpose(Reshape(k, [0, S, h, d]), perm=[0, 2, 3, 1])         (h, d, S)
    scores    = Div(MatMul(q_heads, kT), sqrt(d))        two activations     (h, S, S)
    probs     = Softmax(scores, axis=-1)
    context   = Reshape(Transpose(MatMul(probs, v_heads), [0, 2, 1, 3]), [0, S, H])
    x         = LayerNormalization(x + MatMul(context, Wo) + bo)              post-LN (BERT)
    f         = GELU(MatMul(x, W1) + b1)                 (S, FFN); Erf form  0.5 * f * (1 + Erf(f / sqrt 2))
    x         = LayerNormalization(x + MatMul(f, W2) + b2)

then the classifier: ``Slice`` of token 0 (axis 1), ``Reshape`` to ``(N, H)``, ``MatMul`` ``(H, 2)`` + bias.
BERT's pooler (dense + tanh) is left out: a plain linear head on the first token keeps the network to the
operators of the transformer itself.  ``gelu="gelu"`` writes the opset-20 ``Gelu`` operator instead of the
Erf form.  Reshape targets start with ``0`` (copy the batch axis), so the batch axis stays dynamic.

Weights: LeCun-normal matrices (standard deviation ``1/sqrt(fan_in)``, which keeps activations near unit
variance through the random network), small normal biases, LayerNorm scales uniform in [0.8, 1.2] and
offsets normal(0, 0.05), from ``numpy.random`` with a fixed seed — benchmark data, never a secret.  As for
the CNNs, costs follow from the shapes and bit widths, not from the weight values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
from onnx import TensorProto

from aiompc.errors import InputError
from aiompc.nn.onnx_build import OnnxBuilder

__all__ = ["DEFAULT_SEQ", "LN_EPS", "BertShape", "BERT_SHAPES", "TokenNet", "bert_body"]

DEFAULT_SEQ = 32
"""The sequence length of a transformer benchmark when none is given (the issue's 32 and 128)."""
LN_EPS = 1e-12
"""BERT's LayerNorm epsilon."""
GELU_FORMS = ("erf", "gelu")


@dataclass(frozen=True)
class BertShape:
    """A BERT encoder's shape: ``layers`` post-LN layers of width ``hidden`` with ``heads`` attention heads and
    an ``ffn``-wide feed-forward block, and a ``classes``-way head on the first token."""

    layers: int
    hidden: int
    heads: int
    ffn: int
    classes: int = 2

    def __post_init__(self) -> None:
        if min(self.layers, self.hidden, self.heads, self.ffn, self.classes) < 1 or self.hidden % self.heads:
            raise InputError(f"bad transformer shape {self}: sizes must be positive and heads must divide hidden")

    @property
    def head_dim(self) -> int:
        """``d = hidden / heads``."""
        return self.hidden // self.heads

    @property
    def parameters(self) -> int:
        """Weights and biases of the network: per layer four ``H x H`` projections, the two FFN matrices and
        two LayerNorms (scale and offset), plus the head ``H x classes``."""
        h, f = self.hidden, self.ffn
        per_layer = 4 * (h * h + h) + (h * f + f) + (f * h + h) + 2 * 2 * h
        return self.layers * per_layer + h * self.classes + self.classes

    def macs(self, seq: int) -> int:
        """Multiply-accumulates of one inference at sequence length ``seq``: the constant-weight matmuls
        (``4 S H^2 + 2 S H F`` per layer) and the two attention products (``2 S^2 H``), plus the head."""
        h, f = self.hidden, self.ffn
        return self.layers * (4 * seq * h * h + 2 * seq * h * f + 2 * seq * seq * h) + h * self.classes


BERT_SHAPES: dict[str, BertShape] = {
    "bert-tiny": BertShape(layers=2, hidden=128, heads=2, ffn=512),
    "bert-base": BertShape(layers=12, hidden=768, heads=12, ffn=3072),
}
"""The transformer benchmark shapes by network name (BERT-tiny of Turc et al. 2019; BERT-base of Devlin et al.)."""


class TokenNet:
    """An :class:`OnnxBuilder` over token tensors ``(N, S, H)`` that draws random layer parameters.

    ``input_shape`` is one sample's ``(S, H)``; ``gelu`` the GELU form (``erf``: opset 17, the Erf
    decomposition PyTorch exports; ``gelu``: the opset-20 ``Gelu`` operator)."""

    def __init__(self, rng: np.random.Generator, input_shape: tuple[int, ...], name: str, *,
                 gelu: str = "erf") -> None:
        if len(input_shape) != 2:
            raise InputError(f"a token network takes (sequence, hidden) inputs, got {input_shape}")
        if gelu not in GELU_FORMS:
            raise InputError(f"gelu must be one of {', '.join(GELU_FORMS)}, got {gelu!r}")
        self.rng = rng
        self.seq, self.hidden = (int(d) for d in input_shape)
        self.gelu_form = gelu
        self.b = OnnxBuilder(input_shape, graph_name=name, opset=20 if gelu == "gelu" else 17)

    # ---- layers

    def linear(self, x: str, k: int, o: int) -> str:
        """``MatMul(x, W) + b`` with ``W`` ``(k, o)`` (LeCun normal) and ``b`` ``(o,)``: a PyTorch ``nn.Linear`` on
        a 3-d input as exported."""
        w = self.rng.normal(0.0, 1.0 / math.sqrt(k), (k, o)).astype(np.float32)
        y = self.b.matmul(x, w)
        return self.b.node("Add", [y, self.b.const(self.rng.normal(0.0, 0.02, o), "bias")])

    def layernorm(self, x: str) -> str:
        """``LayerNormalization`` over the last axis with a random scale and offset (epsilon :data:`LN_EPS`)."""
        h = self.hidden
        scale = self.b.const(self.rng.uniform(0.8, 1.2, h), "ln_scale")
        bias = self.b.const(self.rng.normal(0.0, 0.05, h), "ln_bias")
        return self.b.node("LayerNormalization", [x, scale, bias], "layernorm", axis=-1, epsilon=LN_EPS)

    def gelu(self, x: str) -> str:
        """Exact GELU: ``Gelu`` (opset 20) or the Erf form ``x * 0.5 * (1 + Erf(x / sqrt 2))`` as exported."""
        b = self.b
        if self.gelu_form == "gelu":
            return b.node("Gelu", [x], approximate="none")
        erf = b.node("Erf", [b.node("Div", [x, b.const(math.sqrt(2.0), "sqrt2")])])
        half = b.node("Mul", [b.node("Mul", [x, b.node("Add", [erf, b.const(1.0, "one")])]), b.const(0.5, "half")])
        return half

    def _heads(self, x: str, heads: int, perm: list[int]) -> str:
        """``(N, S, H)`` -> ``Reshape [0, S, heads, d]`` -> ``Transpose perm``."""
        shape = [0, self.seq, heads, self.hidden // heads]
        return self.b.node("Transpose", [self.b.reshape(x, shape)], perm=perm)

    def attention(self, x: str, heads: int) -> str:
        """Multi-head self-attention (no mask): Q, K, V projections, per-head ``softmax(Q K^T / sqrt d) V``, the
        heads joined and the output projection."""
        b, h = self.b, self.hidden
        q, k, v = (self.linear(x, h, h) for _ in range(3))
        qh = self._heads(q, heads, [0, 2, 1, 3])   # (N, heads, S, d)
        kt = self._heads(k, heads, [0, 2, 3, 1])   # (N, heads, d, S)
        vh = self._heads(v, heads, [0, 2, 1, 3])   # (N, heads, S, d)
        scores = b.node("Div", [b.node("MatMul", [qh, kt]), b.const(math.sqrt(h // heads), "sqrt_d")])
        probs = b.node("Softmax", [scores], axis=-1)
        ctx = b.node("Transpose", [b.node("MatMul", [probs, vh])], perm=[0, 2, 1, 3])  # (N, S, heads, d)
        return self.linear(b.reshape(ctx, [0, self.seq, h]), h, h)

    def bert_layer(self, x: str, heads: int, ffn: int) -> str:
        """One post-LN BERT layer: ``LN(x + attention(x))``, then ``LN(y + W2 GELU(W1 y))``."""
        y = self.layernorm(self.b.add(x, self.attention(x, heads)))
        f = self.linear(self.gelu(self.linear(y, self.hidden, ffn)), ffn, self.hidden)
        return self.layernorm(self.b.add(y, f))

    def first_token_head(self, x: str, classes: int) -> str:
        """Logits ``(N, classes)`` from the first token: ``Slice`` (axis 1, ``[0:1]``), ``Reshape [0, H]``, linear."""
        b = self.b
        i64 = TensorProto.INT64
        first = b.node("Slice", [x, b.const(np.array([0]), "start", i64), b.const(np.array([1]), "end", i64),
                                 b.const(np.array([1]), "axes", i64)])
        return self.linear(b.reshape(first, [0, self.hidden]), self.hidden, classes)


def bert_body(shape: BertShape) -> Callable[[TokenNet], str]:
    """The function that emits a BERT encoder of ``shape`` on a :class:`TokenNet` (whose hidden width must be
    ``shape.hidden``) and returns its logits' name."""

    def body(net: TokenNet) -> str:
        if net.hidden != shape.hidden:
            raise InputError(f"token embeddings of width {net.hidden}; the network needs {shape.hidden}")
        x = net.b.input
        for _ in range(shape.layers):
            x = net.bert_layer(x, shape.heads, shape.ffn)
        return net.first_token_head(x, shape.classes)

    return body
