"""aiompc.nn.ir_base: TensorSpec's invariants, narrowest width and plain-dict form; fresh_name; the Node and
WeightedNode bases (arity, private fields, the dict form with nested tuples and params codecs, the weight checks).

(``tests/nn/test_nn_ir.py`` covers whole graphs; this module the base classes on their own.)"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar, Sequence

import numpy as np
import pytest

from aiompc import wire
from aiompc.errors import InputError, ProtocolError, UnsupportedModel
from aiompc.nn.bounds import MAX_BITS, range_of_width
from aiompc.nn.ir_base import PRIVATE, Inferred, Node, TensorSpec, WeightedNode, fresh_name, params_field
from aiompc.nn.ir_transformer import SoftmaxQ, Transpose
from aiompc.qtables import softmax_params

# --------------------------------------------------------------------------- TensorSpec


def test_tensor_spec_normalises_its_fields() -> None:
    t = TensorSpec("t", [np.int64(2), 3], 8, True, np.int64(-5), np.int32(7), [np.float32(0.5)])
    assert t.shape == (2, 3) and type(t.shape[0]) is int
    assert (t.lo, t.hi) == (-5, 7) and type(t.lo) is int and type(t.hi) is int
    assert t.scale == (0.5,) and type(t.scale[0]) is float
    assert t.size == 6 and t.per_tensor
    assert TensorSpec("s", (), 1, False, 0, 1).size == 1  # a scalar sample


@pytest.mark.parametrize("bits", [0, MAX_BITS + 1, -3])
def test_tensor_spec_width_outside_the_range_is_unsupported(bits: int) -> None:
    with pytest.raises(UnsupportedModel, match=f"tensor 't': width {bits} bits is outside 1..{MAX_BITS}"):
        TensorSpec("t", (2,), bits, True, 0, 0)


@pytest.mark.parametrize("bits,signed,lo,hi", [(4, False, -1, 3), (4, False, 0, 16), (4, True, -9, 0),
                                               (4, True, 0, 8), (8, True, 3, 2), (1, False, 0, 2)])
def test_tensor_spec_bounds_must_fit_the_width(bits: int, signed: bool, lo: int, hi: int) -> None:
    kind = "signed" if signed else "unsigned"
    with pytest.raises(InputError, match=rf"bounds \[{lo}, {hi}\] do not fit {kind} {bits} bits"):
        TensorSpec("t", (2,), bits, signed, lo, hi)


@pytest.mark.parametrize("bits,signed", [(1, False), (1, True), (8, True), (MAX_BITS, True), (MAX_BITS, False)])
def test_tensor_spec_accepts_the_whole_range_of_a_width(bits: int, signed: bool) -> None:
    lo, hi = range_of_width(bits, signed)
    assert (lo, hi) == ((-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1))
    assert TensorSpec("t", (1,), bits, signed, lo, hi).hi == hi


@pytest.mark.parametrize("scale,match", [
    ((1.0, 2.0), "2 scales for shape"), ((0.0,), "positive and finite"), ((-1.0,), "positive and finite"),
    ((float("nan"),), "positive and finite"), ((float("inf"),), "positive and finite"),
])
def test_tensor_spec_checks_its_scales(scale: tuple[float, ...], match: str) -> None:
    with pytest.raises(InputError, match=match):
        TensorSpec("t", (3, 4), 8, True, 0, 1, scale)


def test_channel_scales_broadcast_and_need_a_scale() -> None:
    per_channel = TensorSpec("t", (3, 2), 8, True, 0, 1, (1.0, 2.0, 4.0))
    assert per_channel.channel_scales().tolist() == [1.0, 2.0, 4.0] and not per_channel.per_tensor
    one = TensorSpec("t", (3, 2), 8, True, 0, 1, (0.25,))
    got = one.channel_scales()
    assert got.tolist() == [0.25] * 3 and got.flags.writeable  # a copy, not a read-only broadcast view
    meta = TensorSpec("t", (3,), 8, True, 0, 1)
    assert not meta.per_tensor
    with pytest.raises(InputError, match="tensor 't' carries no scale"):
        meta.channel_scales()


def test_for_range_is_the_narrowest_spec(nprng: np.random.Generator) -> None:
    """Against a brute-force search of the (bits, signed) that hold [lo, hi], unsigned preferred at equal bits."""
    pairs = [(0, 0), (0, 1), (-1, 0), (-128, 127), (-129, 0), (0, 255), (0, 256), (-1, 255), (5, 5),
             (-(1 << 61), (1 << 61) - 1)] + [tuple(sorted(int(v) for v in nprng.integers(-3000, 3000, 2)))
                                              for _ in range(50)]
    for lo, hi in pairs:
        t = TensorSpec.for_range("t", (2,), lo, hi, None)
        fits = [(b, s) for b in range(1, MAX_BITS + 1) for s in (False, True)
                if range_of_width(b, s)[0] <= lo and hi <= range_of_width(b, s)[1]]
        assert (t.bits, t.signed) == fits[0], (lo, hi)
        assert (t.lo, t.hi, t.scale) == (lo, hi, None)


def test_for_range_refuses_empty_and_too_wide_ranges() -> None:
    with pytest.raises(InputError, match=r"empty range \[5, 3\]"):
        TensorSpec.for_range("t", (1,), 5, 3, None)
    for lo, hi in ((-(1 << 61) - 1, 0), (0, 1 << 62)):  # 63 bits: past MAX_BITS
        with pytest.raises(UnsupportedModel, match=f"width 63 bits is outside 1..{MAX_BITS}"):
            TensorSpec.for_range("t", (1,), lo, hi, None)
    with pytest.raises(InputError, match=r"0 scales for shape \(2,\)"):
        TensorSpec("t", (2,), 8, True, 0, 1, ())


@pytest.mark.parametrize("scale", [None, (0.5,), (1.0, 2.0)])
@pytest.mark.parametrize("bounds", [True, False])
def test_tensor_spec_dict_round_trip(scale: tuple[float, ...] | None, bounds: bool) -> None:
    t = TensorSpec("t", (2, 5), 6, True, -7, 20, scale)
    d = t.to_dict(include_bounds=bounds)
    assert wire.decode(wire.encode(d)) == d  # plain values only
    back = TensorSpec.from_dict(wire.decode(wire.encode(d)))
    want = t if bounds else dataclasses.replace(t, lo=-32, hi=31)  # without bounds: the whole width
    assert back == want
    assert "scale" not in t.to_dict(include_scale=False)
    assert TensorSpec.from_dict(t.to_dict(include_scale=False)).scale is None


# --------------------------------------------------------------------------- fresh_name


def test_fresh_name_counts_from_2() -> None:
    assert fresh_name("x", set()) == "x"
    assert fresh_name("x", {"x"}) == "x#2"
    assert fresh_name("x", {"x", "x#2", "x#3"}) == "x#4"
    assert fresh_name("x", {"x#2"}) == "x"
    assert fresh_name("x", ["x", "x#3"]) == "x#2"  # any container


# --------------------------------------------------------------------------- Node


@dataclass(frozen=True, eq=False, kw_only=True)
class _Unary(Node):
    op: ClassVar[str] = "test_unary"


@dataclass(frozen=True, eq=False, kw_only=True)
class _Many(Node):
    op: ClassVar[str] = "test_many"
    arity: ClassVar[int | None] = None


@dataclass(frozen=True, eq=False, kw_only=True)
class _Weighted(WeightedNode):
    op: ClassVar[str] = "test_weighted"
    rows: int = 2
    cols: int = 3

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_weights((self.rows, self.cols), self.rows)

    def infer(self, inputs: Sequence[TensorSpec]) -> Inferred:
        (x,) = inputs
        self._need_input(x, 1, self.cols, "features")
        return Inferred((self.rows,), None, None)


def test_node_arity() -> None:
    assert _Unary(name="u", inputs=["a"], output="b").inputs == ("a",)  # a list becomes a tuple
    with pytest.raises(InputError, match="test_unary node 'u' takes 1 input\\(s\\), got 2"):
        _Unary(name="u", inputs=("a", "b"), output="c")
    with pytest.raises(InputError, match="test_unary node 'u' takes 1 input\\(s\\), got 0"):
        _Unary(name="u", inputs=(), output="c")
    assert _Many(name="m", inputs=("a", "b", "c"), output="d").inputs == ("a", "b", "c")
    with pytest.raises(InputError, match="test_many node 'm' needs at least two inputs"):
        _Many(name="m", inputs=("a",), output="d")


def test_node_base_infer_is_abstract_and_rank_check_names_the_input() -> None:
    u = _Unary(name="u", inputs=("a",), output="b")
    with pytest.raises(NotImplementedError):
        u.infer([TensorSpec("a", (1,), 1, False, 0, 1)])
    with pytest.raises(UnsupportedModel, match=r"test_unary node 'u': input 'a' has shape \(2, 3\), expected rank "
                                               r"1 or 3 per sample"):
        u._need_rank(TensorSpec("a", (2, 3), 1, False, 0, 1), (1, 3))


def test_weighted_node_checks_and_private_fields() -> None:
    w, b = np.array([[1, -2, 3], [4, 5, -6]]), np.array([7, -8])
    n = _Weighted(name="w", inputs=("x",), output="y", weight=w.astype(np.int32), bias=b, weight_bits=4)
    assert n.loaded and n.weight.dtype == np.int64 and n.private_fields == ("weight", "bias")
    assert not _Weighted(name="w", inputs=("x",), output="y").loaded
    with pytest.raises(InputError, match="give both weight and bias, or neither"):
        _Weighted(name="w", inputs=("x",), output="y", bias=b)
    with pytest.raises(InputError, match=r"weight \(3, 2\) / bias \(2,\) do not match \(2, 3\) / \(2,\)"):
        _Weighted(name="w", inputs=("x",), output="y", weight=w.T, bias=b)
    with pytest.raises(InputError, match="weights exceed signed 3 bits"):
        _Weighted(name="w", inputs=("x",), output="y", weight=w, bias=b, weight_bits=3)
    with pytest.raises(InputError, match="weight_bits 0 outside 1..32"):
        _Weighted(name="w", inputs=("x",), output="y", weight_bits=0)
    with pytest.raises(UnsupportedModel, match="test_weighted 'w': input has 4 features, weights expect 3"):
        n.infer([TensorSpec("x", (4,), 4, False, 0, 1)])
    with pytest.raises(UnsupportedModel, match="expected rank 1"):
        n.infer([TensorSpec("x", (3, 1), 4, False, 0, 1)])
    meta = {f.name: f.metadata for f in dataclasses.fields(n)}
    assert meta["weight"] == meta["bias"] == PRIVATE and not meta["weight_bits"]


def test_to_dict_leaves_secrets_out_unless_asked() -> None:
    w, b = np.array([[1, -2, 3], [4, 5, -6]]), np.array([7, -8])
    n = _Weighted(name="w", inputs=("x",), output="y", weight=w, bias=b, weight_bits=4)
    meta = n.to_dict()
    assert meta == {"op": "test_weighted", "name": "w", "inputs": ["x"], "output": "y", "weight_bits": 4,
                    "rows": 2, "cols": 3}
    full = n.to_dict(include_weights=True)
    assert full["weight"].dtype == np.int64 and np.array_equal(full["weight"], w) and full["weight"].flags.c_contiguous
    assert np.array_equal(full["bias"], b)
    assert "weight" not in _Weighted(name="w", inputs=("x",), output="y").to_dict(include_weights=True)


def test_from_dict_rebuilds_nodes_with_tuples_and_codecs() -> None:
    t = Transpose(name="t", inputs=("a",), output="b", perm=(2, 0, 1))
    d = wire.decode(wire.encode(t.to_dict()))
    assert d["perm"] == [2, 0, 1]  # lists on the wire
    back = Transpose.from_dict(d)
    assert type(back) is Transpose and back.perm == (2, 0, 1) and back.inputs == ("a",)
    p, _ = softmax_params(1 / 8, 8)
    s = SoftmaxQ(name="s", inputs=("a",), output="b", params=p)
    d = wire.decode(wire.encode(s.to_dict()))
    assert isinstance(d["params"], dict) and isinstance(d["params"]["exp_table"], list)
    back = SoftmaxQ.from_dict(d)
    assert back.params == p and isinstance(back.params.exp_table, tuple)  # rebuilt by the codec, tuples again
    u = _Unary(name="u", inputs=("a",), output="b")  # no registry needed: the class rebuilds its own kind
    assert vars(_Unary.from_dict(wire.decode(wire.encode(u.to_dict())))) == vars(u)


def test_from_dict_weights_come_back_as_int64_or_stay_out() -> None:
    w, b = np.array([[1, -2, 3], [4, 5, -6]]), np.array([7, -8])
    n = _Weighted(name="w", inputs=("x",), output="y", weight=w, bias=b, weight_bits=4)
    full = _Weighted.from_dict(n.to_dict(include_weights=True))
    assert full.weight.dtype == np.int64 and np.array_equal(full.weight, w) and np.array_equal(full.bias, b)
    meta = _Weighted.from_dict(n.to_dict())
    assert not meta.loaded and (meta.rows, meta.cols, meta.weight_bits) == (2, 3, 4)


def test_from_dict_refuses_another_kind_and_malformed_params() -> None:
    with pytest.raises(ProtocolError, match="IR node kind 'softmax_q' is not 'transpose'"):
        Transpose.from_dict({"op": "softmax_q", "name": "n"})
    with pytest.raises(ProtocolError, match="IR node kind None is not 'test_unary'"):
        _Unary.from_dict({"name": "n", "inputs": ["a"], "output": "b"})
    d = SoftmaxQ(name="s", inputs=("a",), output="b", params=softmax_params(1 / 8, 8)[0]).to_dict()
    with pytest.raises(ProtocolError, match="softmax_q node: field 'params' must be a dict of constants"):
        SoftmaxQ.from_dict({**d, "params": [1, 2]})


def test_params_field_marks_the_codec() -> None:
    f = params_field(dict)
    assert f.metadata["codec"] is dict
    (params,) = [x for x in dataclasses.fields(SoftmaxQ) if x.name == "params"]
    assert "codec" in params.metadata and not params.metadata.get("private")
