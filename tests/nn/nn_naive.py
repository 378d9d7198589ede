"""A deliberately naive integer interpreter: Python ints and loops, one output at a time.

It shares no code with aiompc.nn.interpret (no numpy kernels, no aiompc.quant): it is the independent
"straightforward computation" the vectorised reference is checked against.  Small inputs only.
"""

from __future__ import annotations

from typing import Any

from aiompc.nn.ir import QGraph


def _requant(v: int, m: int, s: int, lo: int, hi: int, rounding: str) -> int:
    r = (1 << (s - 1)) if (rounding == "nearest" and s > 0) else 0
    return min(max((v * m + r) // (1 << s), lo), hi)


def _zeros(c: int, h: int, w: int) -> list:
    return [[[0] * w for _ in range(h)] for _ in range(c)]


def _window(x: list, c: int, i: int, j: int, kh: int, kw: int, stride: tuple, pads: tuple, fill: int) -> list[int]:
    h, w = len(x[0]), len(x[0][0])
    out = []
    for a in range(kh):
        for b in range(kw):
            r, q = i * stride[0] + a - pads[0], j * stride[1] + b - pads[1]
            out.append(x[c][r][q] if 0 <= r < h and 0 <= q < w else fill)
    return out


def _out_hw(x: list, kh: int, kw: int, stride: tuple, pads: tuple) -> tuple[int, int]:
    h, w = len(x[0]), len(x[0][0])
    return (h + pads[0] + pads[2] - kh) // stride[0] + 1, (w + pads[1] + pads[3] - kw) // stride[1] + 1


def _flat(x: Any) -> list[int]:
    if isinstance(x, list):
        return [v for e in x for v in _flat(e)]
    return [x]


def _per_channel(x: list, fs: list) -> list:
    """Apply ``fs[c]`` to every value of channel ``c`` (a ``(C, H, W)`` or ``(F,)`` nested list)."""
    if isinstance(x[0], list):
        return [[[fs[c](v) for v in row] for row in ch] for c, ch in enumerate(x)]
    return [fs[c](v) for c, v in enumerate(x)]


def _combine(mults: list[list[int]], vals: list[int], c: int) -> int:
    return sum(m[c] * v for m, v in zip(mults, vals, strict=True))


def run_naive(g: QGraph, sample: Any) -> Any:
    """Evaluate one sample (nested lists of Python ints, per-sample shape) and return nested lists."""
    env = {g.input: sample}
    for n in g.nodes:
        xs = [env[i] for i in n.inputs]
        x = xs[0]
        if n.op == "conv":
            w, bias = n.weight.tolist(), n.bias.tolist()
            o_all, cg, kh, kw = n.weight_shape
            og = o_all // n.groups
            ho, wo = _out_hw(x, kh, kw, n.stride, n.pads)
            y = _zeros(o_all, ho, wo)
            for o in range(o_all):
                grp = o // og
                for i in range(ho):
                    for j in range(wo):
                        acc = bias[o]
                        for c in range(cg):
                            win = _window(x, grp * cg + c, i, j, kh, kw, n.stride, n.pads, 0)
                            acc += sum(a * b for a, b in zip(win, _flat(w[o][c]), strict=True))
                        y[o][i][j] = acc
        elif n.op == "linear":
            y = [sum(a * b for a, b in zip(row, x, strict=True)) + bb
                 for row, bb in zip(n.weight.tolist(), n.bias.tolist(), strict=True)]
        elif n.op == "affine":
            a, b = n.weight.tolist(), n.bias.tolist()
            y = [[[a[c] * v + b[c] for v in row] for row in ch] for c, ch in enumerate(x)] if isinstance(x[0], list) \
                else [a[c] * v + b[c] for c, v in enumerate(x)]
        elif n.op == "requantize":
            ms = list(n.multiplier) * (len(x) if len(n.multiplier) == 1 else 1)
            y = _per_channel(x, [(lambda v, m=m, n=n: _requant(v, m, n.shift, n.lo, n.hi, n.rounding)) for m in ms])
        elif n.op in ("relu", "clip"):
            lo, hi = (0, None) if n.op == "relu" else (n.lo, n.hi)
            y = _per_channel(x, [lambda v, lo=lo, hi=hi: max(v, lo) if hi is None else min(max(v, lo), hi)] * len(x))
        elif n.op in ("maxpool", "sumpool"):
            kh, kw = n.kernel
            ho, wo = _out_hw(x, kh, kw, n.stride, n.pads)
            fill = min(_flat(x)) if n.op == "maxpool" else 0
            agg = max if n.op == "maxpool" else sum
            y = [[[agg(_window(x, c, i, j, kh, kw, n.stride, n.pads, fill)) for j in range(wo)] for i in range(ho)]
                 for c in range(len(x))]
        elif n.op == "add":
            chans = len(x)
            mults = [list(m) * (chans if len(m) == 1 else 1) for m in n.multipliers]
            if isinstance(x[0], list):
                y = [[[_combine(mults, [t[c][i][j] for t in xs], c) for j in range(len(x[0][0]))]
                      for i in range(len(x[0]))] for c in range(chans)]
            else:
                y = [_combine(mults, [t[c] for t in xs], c) for c in range(chans)]
        elif n.op == "concat":
            y = [ch for t in xs for ch in t]
        elif n.op == "flatten":
            y = _flat(x)
        else:
            raise AssertionError(f"naive interpreter lacks {n.op}")
        env[n.output] = y
    return env[g.output]
