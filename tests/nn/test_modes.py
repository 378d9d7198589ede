"""aiompc.nn.modes: each mode's program and engine settings, the handshake options that name a mode, the
check against the integer reference, and the metadata view of a fixed-point graph (what a client gets)."""

from __future__ import annotations

import numpy as np
import pytest

from aiompc.errors import InputError, ProtocolError
from aiompc.nn.interpret import run_int
from aiompc.nn.ir import QGraph
from aiompc.errors import HandshakeError
from aiompc.nn.modes import (MODES, EngineConfig, check_output, describe_check, engine_config, mode_named,
                             mode_options)
from aiompc.nn.testing import random_qgraph
from aiompc.nn.zoo import digits_data, digits_fixed_point
from aiompc.protocols.linear import PLANNERS
from aiompc.wire import decode, encode


def test_engine_settings_of_each_mode() -> None:
    settings = {name: (m.program, m.rings, m.planner, m.exact) for name, m in MODES.items()}
    assert settings == {
        "cheetah": ("fixed-point", "cheetah", PLANNERS["cheetah-baseline"], False),  # Cheetah's own truncation
        "quantized": ("quantized", "tight", PLANNERS["quantized"], True),
        "cheetah-int": ("quantized", "cheetah", PLANNERS["cheetah-baseline"], True),
    }
    assert list(MODES) == ["cheetah", "quantized", "cheetah-int"]  # the baseline first
    assert engine_config("cheetah").exact is False and engine_config("cheetah", exact=True).exact is True
    assert engine_config("cheetah", exact=True).mode == MODES["cheetah"].with_exact(True) != MODES["cheetah"]
    assert engine_config("quantized") == EngineConfig(MODES["quantized"], "logits")
    approx = engine_config("quantized", exact=False, output="argmax")
    assert (approx.mode.name, approx.exact, approx.output) == ("quantized", False, "argmax")
    assert engine_config(MODES["cheetah-int"]) == EngineConfig(MODES["cheetah-int"])  # a value is taken as it is
    assert mode_named("quantized", exact=None) is MODES["quantized"]
    with pytest.raises(InputError, match="unknown mode 'fast'.*cheetah, quantized, cheetah-int"):
        engine_config("fast")
    with pytest.raises(InputError, match="Mode"):
        EngineConfig("quantized")  # type: ignore[arg-type]  # a name is not a mode: decide it once, at the top


def test_mode_options_tell_every_mode_apart() -> None:
    options = [mode_options(m) for m in MODES]
    assert len({tuple(sorted(o.items())) for o in options}) == len(MODES)
    for mode, opt in zip(MODES, options):
        assert EngineConfig.from_options({**engine_config(mode).to_options(), **opt}).mode == MODES[mode]


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("exact", [True, False])
def test_handshake_options_round_trip(mode: str, exact: bool) -> None:
    config = engine_config(mode, exact=exact, output="argmax")
    assert EngineConfig.from_options(decode(encode(config.to_options()))) == config


def test_flooding_scope_of_each_mode_and_in_the_handshake() -> None:
    assert {name: m.stat_scope for name, m in MODES.items()} == {
        "cheetah": "ciphertext", "quantized": "inference", "cheetah-int": "ciphertext"}  # Cheetah's q holds no more
    per_ct = engine_config("quantized", stat_scope="ciphertext")
    assert per_ct.mode.stat_scope == "ciphertext" and per_ct.mode.planner == MODES["quantized"].planner
    assert per_ct.to_options()["stat"] == "ciphertext" and EngineConfig.from_options(per_ct.to_options()) == per_ct
    assert EngineConfig.from_options({"mode": "quantized"}).mode.stat_scope == "inference"  # the mode's default
    assert mode_named("quantized", stat_scope="inference") is MODES["quantized"]
    with pytest.raises(InputError, match="stat_scope"):
        mode_named("quantized", stat_scope="session")  # type: ignore[arg-type]


@pytest.mark.parametrize("options", [{"mode": "fast"}, {"mode": ["quantized"]}, {"mode": "quantized", "exact": 1},
                                     {"mode": "quantized", "output": "probabilities"},
                                     {"mode": "quantized", "stat": "session"}, {"mode": "quantized", "stat": 40}])
def test_malformed_handshake_options_are_typed_errors(options: dict) -> None:
    with pytest.raises(HandshakeError):
        EngineConfig.from_options(options)


def test_check_catches_a_wrong_output() -> None:
    graph, net = random_qgraph(5, blocks=("stride2",), input_shape=(1, 6, 6), classes=3)
    x = graph.quantize_input(net.inputs[:2])
    y = run_int(graph, x)
    top = int(np.max(np.abs(y)))
    assert check_output(graph, x, y, EngineConfig()) == {"max_abs_diff_lsb": 0, "max_abs_logit_lsb": top,
                                                         "argmax_agree": 1.0}
    assert describe_check(check_output(graph, x, y, EngineConfig())) == "equal"
    assert check_output(graph, x, y + 7, EngineConfig(), reference=y + 7)["max_abs_diff_lsb"] == 0  # given reference
    y[1, 2] += 3
    with pytest.raises(ProtocolError, match="3 LSB"):
        check_output(graph, x, y, EngineConfig())
    assert check_output(graph, x, y, engine_config("quantized", exact=False))["max_abs_diff_lsb"] == 3  # approximate: recorded
    y[0] = 0
    y[0, (int(np.argmax(run_int(graph, x)[0])) + 1) % y.shape[1]] = 1  # sample 0's top class moves
    check = check_output(graph, x, y, engine_config("quantized", exact=False))
    assert check["argmax_agree"] == 0.5
    assert describe_check(check).endswith("top-1 50%")


def test_check_of_class_indices() -> None:
    graph, net = random_qgraph(6, input_shape=(1, 6, 6), classes=4)
    x = graph.quantize_input(net.inputs[:4])
    classes = np.argmax(run_int(graph, x), axis=1)
    config = engine_config("quantized", output="argmax")
    assert check_output(graph, x, classes, config)["argmax_agree"] == 1.0
    wrong = classes.copy()
    wrong[0] = (wrong[0] + 1) % 4
    with pytest.raises(ProtocolError, match="25%"):
        check_output(graph, x, wrong, config)
    assert check_output(graph, x, wrong, engine_config("quantized", exact=False, output="argmax"))["argmax_agree"] == 0.75


def test_fixed_point_metadata_round_trips() -> None:
    """The client rebuilds the fixed-point graph from the handshake's metadata: same structure, widths,
    input and output scales, hence the same quantized input and dequantized output."""
    graph = digits_fixed_point()
    meta = QGraph.from_dict(decode(encode(graph.to_dict(include_weights=False))))
    assert not meta.has_weights
    assert [type(n) for n in meta.nodes] == [type(n) for n in graph.nodes]
    assert [n.to_dict() for n in meta.nodes] == [n.to_dict() for n in graph.nodes]
    assert {k: (t.shape, t.bits, t.signed) for k, t in meta.tensors.items()} == \
        {k: (t.shape, t.bits, t.signed) for k, t in graph.tensors.items()}
    assert meta.input_spec.scale == graph.input_spec.scale == (2.0 ** -12,)
    assert meta.output_spec.scale == graph.output_spec.scale == (2.0 ** -24,)
    x = digits_data().x_test[:3]
    assert np.array_equal(meta.quantize_input(x), graph.quantize_input(x))
    y = run_int(graph, graph.quantize_input(x))
    assert np.array_equal(meta.dequantize_output(y), graph.dequantize_output(y))
    assert meta.to_dict() == graph.without_weights().to_dict()
