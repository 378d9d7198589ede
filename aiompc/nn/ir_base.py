"""The base of the integer model IR: edges (:class:`TensorSpec`), the node base classes (:class:`Node`,
:class:`WeightedNode`) and their plain-dict serialization.

:mod:`aiompc.nn.ir_cnn` (the CNN layers) and :mod:`aiompc.nn.ir_transformer` (the transformer layers) build on it;
:mod:`aiompc.nn.ir` (the graph, :class:`~aiompc.nn.ir.QGraph`) re-exports everything here and holds the one registry
of node kinds, :data:`aiompc.nn.ir.NODE_TYPES` (:func:`aiompc.nn.ir.node_from_dict` builds a node of any kind).  See
:mod:`aiompc.nn.ir` for the IR's conventions.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Container, Sequence

import numpy as np

from aiompc.errors import InputError, ProtocolError, UnsupportedModel
from aiompc.nn.bounds import MAX_BITS, range_of_width, width_for_range

__all__ = ["TensorSpec", "Inferred", "fresh_name", "Node", "WeightedNode", "PRIVATE", "params_field"]

PRIVATE = {"private": True}
"""Field metadata of a node's secret arrays (weights, biases): left out of the metadata view."""


def params_field(codec: type) -> Any:
    """A public field holding a frozen dataclass of public constants (e.g. :class:`aiompc.qmath.SoftmaxParams`):
    :meth:`Node.to_dict` writes it as a dict of its fields, :meth:`Node.from_dict` rebuilds it with ``codec``."""
    return field(metadata={"codec": codec})

# --------------------------------------------------------------------------- edges


@dataclass(frozen=True)
class TensorSpec:
    """One edge of the graph.

    ``shape``: per-sample shape (``(C, H, W)`` or ``(F,)``); ``bits``/``signed``: the representation
    (``bits`` <= 62); ``lo``/``hi``: proven bounds of every value, inside the representation's range;
    ``scale``: positive floats, length 1 (per tensor) or ``shape[0]`` (per channel), or None when the
    graph is metadata that leaves it out.
    """

    name: str
    shape: tuple[int, ...]
    bits: int
    signed: bool
    lo: int
    hi: int
    scale: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        object.__setattr__(self, "lo", int(self.lo))
        object.__setattr__(self, "hi", int(self.hi))
        if self.scale is not None:
            object.__setattr__(self, "scale", tuple(float(s) for s in self.scale))
        if not 1 <= self.bits <= MAX_BITS:
            raise UnsupportedModel(f"tensor {self.name!r}: width {self.bits} bits is outside 1..{MAX_BITS}")
        rlo, rhi = range_of_width(self.bits, self.signed)
        if not rlo <= self.lo <= self.hi <= rhi:
            raise InputError(
                f"tensor {self.name!r}: bounds [{self.lo}, {self.hi}] do not fit "
                f"{'signed' if self.signed else 'unsigned'} {self.bits} bits"
            )
        if self.scale is not None:
            if len(self.scale) not in (1, self.shape[0] if self.shape else 1):
                raise InputError(f"tensor {self.name!r}: {len(self.scale)} scales for shape {self.shape}")
            if not all(s > 0 and np.isfinite(s) for s in self.scale):
                raise InputError(f"tensor {self.name!r}: scales must be positive and finite")

    @classmethod
    def for_range(
        cls, name: str, shape: Sequence[int], lo: int, hi: int, scale: Sequence[float] | None
    ) -> TensorSpec:
        """The narrowest spec holding ``[lo, hi]`` (see :func:`aiompc.nn.bounds.width_for_range`)."""
        bits, signed = width_for_range(lo, hi)
        return cls(name, tuple(shape), bits, signed, lo, hi, None if scale is None else tuple(scale))

    @property
    def size(self) -> int:
        """Number of values per sample."""
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def per_tensor(self) -> bool:
        """True when one scale covers the whole tensor."""
        return self.scale is not None and len(self.scale) == 1

    def channel_scales(self) -> np.ndarray:
        """Scales broadcast to one per index of the first axis, ``float64[shape[0]]``."""
        if self.scale is None:
            raise InputError(f"tensor {self.name!r} carries no scale (metadata-only graph)")
        return np.broadcast_to(np.asarray(self.scale, dtype=np.float64), (self.shape[0],)).copy()

    def to_dict(self, include_scale: bool = True, include_bounds: bool = True) -> dict[str, Any]:
        """Plain dict (lists, ints, floats, strings, bools); without bounds, :meth:`from_dict` gives the
        whole range of the width."""
        d: dict[str, Any] = {"name": self.name, "shape": list(self.shape), "bits": self.bits, "signed": self.signed}
        if include_bounds:
            d["lo"], d["hi"] = self.lo, self.hi
        if include_scale and self.scale is not None:
            d["scale"] = list(self.scale)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TensorSpec:
        """Inverse of :meth:`to_dict`."""
        scale = d.get("scale")
        bits, signed = int(d["bits"]), bool(d["signed"])
        lo, hi = range_of_width(bits, signed)
        return cls(str(d["name"]), tuple(d["shape"]), bits, signed, int(d.get("lo", lo)), int(d.get("hi", hi)),
                   None if scale is None else tuple(scale))


# --------------------------------------------------------------------------- nodes


@dataclass(frozen=True)
class Inferred:
    """What a node's inputs imply for its output: shape and bounds (None when weights are absent)."""

    shape: tuple[int, ...]
    lo: int | None
    hi: int | None


def fresh_name(name: str, taken: Container[str]) -> str:
    """``name``, or ``name#2``, ``name#3``, … — the first one not in ``taken`` (graph builders use it to give
    every edge a unique name when one float edge becomes several integer edges)."""
    out, i = name, 1
    while out in taken:
        i += 1
        out = f"{name}#{i}"
    return out


def _tuplify(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return tuple(_tuplify(x) for x in v)
    return v


def _listify(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_listify(x) for x in v]
    return v


@dataclass(frozen=True, eq=False, kw_only=True)
class Node:
    """Base class: a named layer reading ``inputs`` (edge names) and writing one ``output`` edge."""

    op: ClassVar[str] = ""
    arity: ClassVar[int | None] = 1  # None: two or more inputs
    name: str
    inputs: tuple[str, ...]
    output: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))
        if self.arity is not None and len(self.inputs) != self.arity:
            raise InputError(f"{self.op} node {self.name!r} takes {self.arity} input(s), got {len(self.inputs)}")
        if self.arity is None and len(self.inputs) < 2:
            raise InputError(f"{self.op} node {self.name!r} needs at least two inputs")

    @property
    def private_fields(self) -> tuple[str, ...]:
        """Names of the fields that hold the server's secrets (weights, biases)."""
        return tuple(f.name for f in dataclasses.fields(self) if f.metadata.get("private"))

    def infer(self, inputs: Sequence[TensorSpec]) -> Inferred:
        """Output shape and value bounds given the input specs.  Overridden by each layer."""
        raise NotImplementedError

    def to_dict(self, include_weights: bool = False) -> dict[str, Any]:
        """Plain dict with ``"op"``; private arrays are int64 ndarrays or left out."""
        d: dict[str, Any] = {"op": self.op}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.metadata.get("private"):
                if include_weights and v is not None:
                    d[f.name] = np.ascontiguousarray(v, dtype=np.int64)
                continue
            if "codec" in f.metadata:
                v = {k.name: getattr(v, k.name) for k in dataclasses.fields(v)}
                d[f.name] = {k: _listify(x) for k, x in v.items()}
                continue
            d[f.name] = _listify(v)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Node:
        """Build a node of this class from :meth:`to_dict` output (:class:`ProtocolError` if ``d`` is of another
        kind); :func:`aiompc.nn.ir.node_from_dict` picks the class by ``d["op"]``."""
        op = d.get("op")
        if op != cls.op:
            raise ProtocolError(f"IR node kind {op!r} is not {cls.op!r}")
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name not in d:
                continue
            v = d[f.name]
            if f.metadata.get("private"):
                kwargs[f.name] = None if v is None else np.asarray(v, dtype=np.int64)
            elif "codec" in f.metadata:
                if not isinstance(v, dict):
                    raise ProtocolError(f"{op} node: field {f.name!r} must be a dict of constants")
                kwargs[f.name] = f.metadata["codec"](**{k: _tuplify(x) for k, x in v.items()})
            else:
                kwargs[f.name] = _tuplify(v)
        return cls(**kwargs)

    # helpers for subclasses
    def _need_rank(self, spec: TensorSpec, ranks: tuple[int, ...]) -> None:
        if len(spec.shape) not in ranks:
            raise UnsupportedModel(
                f"{self.op} node {self.name!r}: input {spec.name!r} has shape {spec.shape}, "
                f"expected rank {' or '.join(map(str, ranks))} per sample"
            )


@dataclass(frozen=True, eq=False, kw_only=True)
class WeightedNode(Node):
    """A layer holding the server's integer ``weight`` and ``bias`` (both int64, or both None in
    metadata); weights lie within signed ``weight_bits`` bits."""

    weight_bits: int = 8
    weight: np.ndarray | None = field(default=None, metadata=PRIVATE, repr=False)
    bias: np.ndarray | None = field(default=None, metadata=PRIVATE, repr=False)

    @property
    def loaded(self) -> bool:
        """True when the node holds its secret arrays (the server's graph), False in metadata."""
        return self.weight is not None

    def _check_weights(self, shape: tuple[int, ...], outputs: int) -> None:
        if not 1 <= self.weight_bits <= 32:
            raise InputError(f"{self.op} {self.name!r}: weight_bits {self.weight_bits} outside 1..32")
        if (self.weight is None) != (self.bias is None):
            raise InputError(f"{self.op} {self.name!r}: give both weight and bias, or neither")
        if self.weight is None or self.bias is None:
            return
        w, b = np.asarray(self.weight, dtype=np.int64), np.asarray(self.bias, dtype=np.int64)
        object.__setattr__(self, "weight", w)
        object.__setattr__(self, "bias", b)
        if w.shape != tuple(shape) or b.shape != (outputs,):
            raise InputError(f"{self.op} {self.name!r}: weight {w.shape} / bias {b.shape} "
                             f"do not match {tuple(shape)} / ({outputs},)")
        lo, hi = range_of_width(self.weight_bits, True)
        if w.size and (w.min() < lo or w.max() > hi):
            raise InputError(f"{self.op} {self.name!r}: weights exceed signed {self.weight_bits} bits")

    def _need_input(self, x: TensorSpec, rank: int, size: int, what: str) -> None:
        """Raise :class:`UnsupportedModel` unless ``x`` has rank ``rank`` per sample and ``size`` ``what`` on axis 0."""
        self._need_rank(x, (rank,))
        if x.shape[0] != size:
            raise UnsupportedModel(f"{self.op} {self.name!r}: input has {x.shape[0]} {what}, weights expect {size}")

