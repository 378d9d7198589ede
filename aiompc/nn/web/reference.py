"""The plaintext model the page shows beside the secure result, for comparison.

The demo app has the bundled digits model (package data), so it can evaluate it in the clear: the float
ONNX model's class probabilities and the plaintext integer program (:func:`aiompc.nn.interpret.run_int`)
that the secure inference must equal bit for bit.  A real client would not hold the model; the page says
so.  Against a ``--server`` that serves another model (its handshake metadata differs) there is nothing to
compare with, and :meth:`PlaintextReference.matches` says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from aiompc.nn.graph import FloatGraph
from aiompc.nn.interpret import run_float, run_int
from aiompc.nn.ir import QGraph

__all__ = ["PlaintextReference", "softmax"]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis (float64, numerically stable)."""
    z = np.asarray(logits, dtype=np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    out: np.ndarray = e / e.sum(axis=-1, keepdims=True)
    return out


def _canonical(meta: dict[str, Any]) -> str:
    """Graph metadata as one canonical JSON string (msgpack turns tuples into lists; JSON does not care)."""
    return json.dumps(meta, sort_keys=True, default=str)


@dataclass(frozen=True)
class PlaintextReference:
    """The float model and its quantized integer program (with weights), evaluated in the clear."""

    float_graph: FloatGraph
    graph: QGraph

    def matches(self, meta: dict[str, Any]) -> bool:
        """Whether a server's model metadata (``QGraph.to_dict()`` without weights) is this model's."""
        return _canonical(meta) == _canonical(self.graph.to_dict(include_weights=False))

    def evaluate(self, x: np.ndarray) -> dict[str, Any]:
        """For one float image batch ``(1, 1, 8, 8)``: the float model's probabilities and prediction, and
        the integer program's logits (int) and prediction on the quantized input."""
        probs = softmax(run_float(self.float_graph, x).reshape(len(x), -1))[0]
        ref_int = run_int(self.graph, self.graph.quantize_input(x)).reshape(len(x), -1)[0]
        return {
            "probabilities": [float(p) for p in probs],
            "prediction": int(np.argmax(probs)),
            "int_logits": [int(v) for v in ref_int],
            "int_prediction": int(np.argmax(ref_int)),
        }
