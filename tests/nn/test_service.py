"""serve/infer over real TCP and WebSocket connections; the digits demo model end to end."""

import asyncio

import numpy as np
import pytest

import aiompc
from aiompc.errors import HandshakeError, InputError, UnsupportedModel
from aiompc.nn.interpret import predict, run_int
from aiompc.nn.modes import mode_named
from aiompc.nn.onnx_build import OnnxBuilder
from aiompc.nn.service import load_model
from aiompc.nn.testing import random_qgraph
from aiompc.nn.zoo import DIGITS_ONNX, digits_data, digits_fixed_point, digits_model, digits_report
from aiompc.wire import encode


@pytest.fixture(scope="module")
def digits():
    return digits_model(), digits_data()


@pytest.mark.parametrize("scheme", ["tcp", "ws"])
async def test_server_handles_four_concurrent_clients(scheme: str) -> None:
    graph, net = random_qgraph(1)
    path = "/infer" if scheme == "ws" else ""
    async with await aiompc.serve(graph, f"{scheme}://127.0.0.1:0{path}") as server:
        xs = [net.inputs[i : i + 1] for i in range(4)]
        outs = await asyncio.gather(*(aiompc.infer(x, server.url) for x in xs))
    for x, y in zip(xs, outs):
        want = graph.dequantize_output(run_int(graph, graph.quantize_input(x)))
        assert np.array_equal(y, want)


@pytest.mark.parametrize("prepare", [True, False])
async def test_sessions_share_the_prepared_weights(prepare: bool) -> None:
    """Prepared before the server listens (the default), every session finds the weight plaintexts ready;
    otherwise the first session prepares them and the others reuse them (same results either way)."""
    from aiompc.protocols.linear.weight_cache import WeightCache

    graph, net = random_qgraph(1)
    cache = WeightCache()
    async with await aiompc.serve(graph, "tcp://127.0.0.1:0", weight_cache=cache, prepare=prepare) as server:
        assert (len(cache) > 0) == prepare and cache.misses == 0
        first = await aiompc.infer(net.inputs[:1], server.url)
        prepared, misses = len(cache), cache.misses
        assert prepared > 0 and misses == (0 if prepare else prepared)
        assert cache.hits == (prepared if prepare else 0)
        more = await asyncio.gather(*(aiompc.infer(net.inputs[i : i + 1], server.url) for i in (1, 2)))
    assert cache.misses == misses and len(cache) == prepared  # nothing prepared again
    assert cache.hits >= 2 * prepared
    for x, y in zip((net.inputs[:1], net.inputs[1:2], net.inputs[2:3]), (first, *more)):
        assert np.array_equal(y, graph.dequantize_output(run_int(graph, graph.quantize_input(x))))


async def test_bad_clients_get_clear_errors_and_the_server_keeps_serving(digits) -> None:
    graph, data = digits
    async with await aiompc.serve(graph, "tcp://127.0.0.1:0") as server:
        with pytest.raises(InputError, match="expects"):
            await aiompc.infer(np.zeros((3, 3)), server.url)
        with pytest.raises(InputError, match="numeric"):
            await aiompc.infer(np.full((1, 8, 8), "x"), server.url)
        with pytest.raises(HandshakeError, match="mode"):
            await aiompc.infer(data.x_test[:1], server.url, mode="cheetah")
        y = await aiompc.infer(data.x_test[0], server.url)  # one sample, no batch axis
        assert int(np.argmax(y)) == int(predict(graph, data.x_test[:1])[0])
        await asyncio.sleep(0.05)
        assert server.sessions_ok >= 1 and server.sessions_failed >= 1


async def test_argmax_server_reveals_only_the_class(digits) -> None:
    graph, data = digits
    async with await aiompc.serve(graph, "tcp://127.0.0.1:0", output="argmax") as server:
        y = await aiompc.infer(data.x_test[:5], server.url)
    assert y.tolist() == predict(graph, data.x_test[:5]).tolist()


@pytest.mark.slow
async def test_secure_accuracy_on_the_digits_test_set_equals_the_quantized_accuracy(digits) -> None:
    graph, data = digits
    async with await aiompc.serve(DIGITS_ONNX, "tcp://127.0.0.1:0", max_samples=len(data.x_test)) as server:
        logits = await aiompc.infer(data.x_test, server.url)
    secure_acc = float(np.mean(np.argmax(logits, axis=1) == data.y_test))
    plain_pred = predict(graph, data.x_test)
    assert np.array_equal(np.argmax(logits, axis=1), plain_pred)
    assert secure_acc == pytest.approx(digits_report()["quantized_accuracy"], abs=1e-12)


def test_unsupported_onnx_op_names_the_node(tmp_path) -> None:
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("Sigmoid", ["x"], ["y"], name="the_sigmoid")
    model = helper.make_model(helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])]))
    path = tmp_path / "sigmoid.onnx"
    onnx.save(model, path)
    with pytest.raises(UnsupportedModel, match="the_sigmoid.*Sigmoid|Sigmoid.*the_sigmoid"):
        load_model(path, calibration=np.zeros((2, 4)))


def test_float_model_without_calibration_is_calibrated_on_random_inputs_loudly(tmp_path) -> None:
    from aiompc.nn.quant_choices import RandomCalibrationWarning

    b = OnnxBuilder((1, 4, 4))
    x = b.flatten(b.input)
    model = b.build(b.gemm(b.relu(x), np.ones((2, 16)), np.zeros(2)))
    import onnx

    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    with pytest.warns(RandomCalibrationWarning, match="random normal inputs.*--calibration"):
        graph = load_model(path)
    assert graph.has_weights
    with pytest.raises(InputError, match="not found"):
        load_model(tmp_path / "missing.onnx")


async def test_cheetah_mode_serves_the_fixed_point_program() -> None:
    """A cheetah server runs the float model in fixed point (the client only has the handshake's
    metadata); exact truncation equals the plaintext fixed-point program, Cheetah's approximate one keeps
    its top-1; a client insisting on another mode is refused."""
    fixed, x = digits_fixed_point(), digits_data().x_test[:3]
    want = fixed.dequantize_output(run_int(fixed, fixed.quantize_input(x)))
    async with await aiompc.serve(DIGITS_ONNX, "tcp://127.0.0.1:0", mode=mode_named("cheetah", exact=True),
                                  ) as server:  # the mode decides the program: fixed point
        assert np.array_equal(await aiompc.infer(x, server.url, mode="cheetah"), want)
        for other in ("quantized", "cheetah-int"):
            with pytest.raises(HandshakeError, match="option 'mode' differs"):
                await aiompc.infer(x, server.url, mode=other)
    async with await aiompc.serve(DIGITS_ONNX, "tcp://127.0.0.1:0", mode="cheetah") as server:
        y = await aiompc.infer(x, server.url)
    assert np.argmax(y, axis=1).tolist() == np.argmax(want, axis=1).tolist()
    assert 0 < np.max(np.abs(y - want)) < 0.05  # Cheetah's truncation: one LSB (2^-12) low here and there


async def test_cheetah_int_serves_the_quantized_graph_on_37_bit_rings(digits) -> None:
    graph, data = digits
    x = data.x_test[:2]
    async with await aiompc.serve(DIGITS_ONNX, "tcp://127.0.0.1:0", mode="cheetah-int") as server:
        y = await aiompc.infer(x, server.url, mode="cheetah-int")
        with pytest.raises(HandshakeError, match="option 'mode' differs"):
            await aiompc.infer(x, server.url, mode="cheetah")
    assert np.array_equal(y, graph.dequantize_output(run_int(graph, graph.quantize_input(x))))


def test_load_model_builds_each_program(digits) -> None:
    graph, _ = digits
    fixed = load_model(DIGITS_ONNX, graph="fixed-point")
    same = lambda a, b: encode(a.to_dict(include_weights=True)) == encode(b.to_dict(include_weights=True))  # noqa: E731
    assert same(fixed, digits_fixed_point())
    assert load_model(fixed, graph="fixed-point") is fixed  # widths declared, not proven: the metadata is checked
    with pytest.raises(UnsupportedModel, match="bounds"):
        load_model(fixed)  # as a quantized graph its bounds must hold
    assert same(load_model(DIGITS_ONNX), graph) and not same(fixed, graph)
    with pytest.raises(InputError, match="graph must be"):
        load_model(DIGITS_ONNX, graph="float")  # type: ignore[arg-type]


async def test_infer_shows_layer_progress_when_asked(digits, capsys) -> None:
    graph, data = digits
    async with await aiompc.serve(graph, "tcp://127.0.0.1:0") as server:
        y = await aiompc.infer(data.x_test[:1], server.url, progress=True)
        assert "layers:" in capsys.readouterr().err
        again = await aiompc.infer(data.x_test[:1], server.url, progress=False)
        assert "layers:" not in capsys.readouterr().err
    assert np.array_equal(np.argmax(again, axis=1), np.argmax(y, axis=1))

