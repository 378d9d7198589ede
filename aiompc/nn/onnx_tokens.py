"""The edges of the transformer import: which float edges are token tensors, where their batch axis is, and
the reshapes that move a batch-1 tensor between its ONNX layout and its per-sample one (the "batch axis"
paragraph of :mod:`aiompc.nn.onnx_transformer`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
import onnx

if TYPE_CHECKING:
    from aiompc.nn.onnx_import import _Importer

__all__ = ["BATCH1_HINT", "is_token", "full_shape", "emit", "lift", "settle", "reshape_full", "sample_axis"]

BATCH1_HINT = ("export with a static batch of 1 (torch.onnx.export(..., dynamo=True) without dynamic_shapes) "
                "so the importer can follow the batch axis")


def is_token(imp: _Importer, edge: str) -> bool:
    """True if float edge ``edge`` is a token tensor (module docstring)."""
    return edge in imp.token or not imp.batched.get(edge, True) or len(imp.shapes[edge]) in (2,) or \
        len(imp.shapes[edge]) > 3


def full_shape(imp: _Importer, edge: str) -> tuple[int, ...]:
    """The ONNX shape of float edge ``edge`` (the batch axis first when it is batched)."""
    ps = imp.shapes[edge]
    return (imp.batch, *ps) if imp.batched.get(edge, True) else ps


def emit(imp: _Importer, op: str, inputs: Sequence[str], out: str, attrs: dict | None = None,
          params: dict | None = None, *, batched: bool = True, suffix: str = "") -> str:
    edge = imp.emit(op, inputs, out, attrs, params, suffix=suffix)
    imp.batched[edge] = batched
    imp.token.add(edge)
    return edge


def lift(imp: _Importer, node: onnx.NodeProto, x: str) -> str:
    """``x`` as an unbatched edge whose per-sample shape is its ONNX shape (batch 1 only)."""
    if not imp.batched.get(x, True):
        return x
    if imp.batch != 1:
        raise imp.fail(node, "the operator moves or reads the batch axis of a model with a dynamic batch",
                       BATCH1_HINT)
    return emit(imp, "reshape", [x], f"{x}:lift", {"shape": (1, *imp.shapes[x])}, batched=False,
                 suffix=f":lift:{x}")


def settle(imp: _Importer, node: onnx.NodeProto, edge: str, onnx_out: str) -> None:
    """Bind ONNX tensor ``onnx_out`` to ``edge``, dropping a leading axis of 1 of an unbatched edge."""
    ps = imp.shapes[edge]
    if not imp.batched.get(edge, True) and ps and ps[0] == 1 and imp.batch == 1:
        edge = emit(imp, "reshape", [edge], f"{onnx_out}:settled", {"shape": ps[1:]}, suffix=":settle")
    imp.alias[onnx_out] = edge


def reshape_full(imp: _Importer, node: onnx.NodeProto, x: str, out_full: tuple[int, ...], onnx_out: str) -> None:
    """``onnx_out`` = ``x`` reshaped to the ONNX shape ``out_full`` (per sample)."""
    size = int(np.prod(full_shape(imp, x)))
    if int(np.prod(out_full)) != size:
        raise imp.fail(node, f"reshape of {full_shape(imp, x)} to {out_full} changes the size")
    if imp.batch == 1:
        batched = bool(out_full) and out_full[0] == 1
        ps = tuple(out_full[1:]) if batched else tuple(out_full)
    else:
        if not imp.batched.get(x, True) or not out_full or out_full[0] != imp.batch:
            raise imp.fail(node, f"reshape of (N, {', '.join(map(str, imp.shapes[x]))}) to {out_full} moves the "
                                 "batch axis", "the batch axis must stay first; only flattening to (N, C*H*W) "
                                 "or reshapes of the per-sample axes are supported; " + BATCH1_HINT)
        batched, ps = True, tuple(out_full[1:])
    if batched and ps == imp.shapes[x] and imp.batched.get(x, True):
        imp.alias[onnx_out] = x
        return
    if batched and ps == (int(np.prod(ps)),) and not is_token(imp, x) and len(imp.shapes[x]) != 1:
        imp.flatten(x, onnx_out)  # the CNN flatten, (N, C, H, W) -> (N, C*H*W)
        return
    emit(imp, "reshape", [x], onnx_out, {"shape": ps}, batched=batched)


def sample_axis(imp: _Importer, node: onnx.NodeProto, x: str, axis: int) -> tuple[str, int]:
    """``(edge, per-sample axis)`` for ONNX axis ``axis`` of ``x`` (lifting ``x`` if the axis is its batch)."""
    rank = len(full_shape(imp, x))
    if not -rank <= axis < rank:
        raise imp.fail(node, f"axis {axis} outside a rank-{rank} tensor")
    axis %= rank
    if imp.batched.get(x, True):
        if axis > 0:
            return x, axis - 1
        x = lift(imp, node, x)
    return x, axis


