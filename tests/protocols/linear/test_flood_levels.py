"""aiompc.protocols.linear.plan.FloodLevels and its plumbing: pipeline_for's fail_bits (default unchanged), the
Cheetah rule and the quantized planner at per-flood levels (two uniforms tried first where their level is
lower, fail_bits handed down), and the per-ciphertext default identical to a single stat_bits."""

from __future__ import annotations

import pytest

from aiompc.errors import InputError
from aiompc.protocols.linear.layouts import ConvLayout
from aiompc.protocols.linear.plan import CheetahPlanner, FloodLevels, pipeline_for
from aiompc.protocols.linear.quantized import QuantizedPlanner, _refinements
from aiompc.protocols.linear.tiling import ConvShape, MatmulShape, cheetah_conv_tiling

SHAPE = ConvShape.make(64, 8, 8, 64, 3, padding=1)
INFERENCE = FloodLevels(54, 45, 54)  # ResNet-18's ~550 results (aiompc.nn.stat_budget.inference_levels)


def test_levels_validate_and_describe() -> None:
    assert FloodLevels() == FloodLevels.per_ciphertext(40) == FloodLevels(40, 40, 40)
    assert FloodLevels.per_ciphertext(52) == FloodLevels(52, 52, 52)
    assert FloodLevels.per_ciphertext(20) == FloodLevels(20, 20, 40)  # fail never below 40, as stat_bits had it
    assert INFERENCE.level(1) == 54 and INFERENCE.level(2) == 45 and INFERENCE.lowest == 45
    assert INFERENCE.first_terms == 2 and FloodLevels().first_terms == 1
    assert FloodLevels(50, 44, 50).at_least(FloodLevels(45, 46, 52)) == FloodLevels(50, 46, 52)
    assert "45" in INFERENCE.describe()
    with pytest.raises(InputError):
        INFERENCE.level(3)
    with pytest.raises(InputError):
        FloodLevels(40, 0, 40)
    with pytest.raises(InputError, match="tail"):
        FloodLevels(54, 45, 45)  # the tail would eat the one-uniform level


def test_pipeline_fail_bits_default_and_explicit() -> None:
    layout = ConvLayout(cheetah_conv_tiling(SHAPE, 4096))
    assert pipeline_for(layout, 4).fail_bits == 40
    assert pipeline_for(layout, 4, 52).fail_bits == 52  # max(40, stat_bits), as before
    explicit = pipeline_for(layout, 4, 45, 2, fail_bits=54)
    assert (explicit.stat_bits, explicit.flood_terms, explicit.fail_bits) == (45, 2, 54)


def test_cheetah_rule_at_levels() -> None:
    plain = CheetahPlanner(he="smallest")(SHAPE, 18, 4)
    assert CheetahPlanner(he="smallest", levels=FloodLevels()).__call__(SHAPE, 18, 4) == plain
    assert plain.pipeline.fail_bits == 40 and plain.pipeline.stat_bits == 40 and plain.output.flood_terms == 1
    leveled = CheetahPlanner(he="smallest", levels=INFERENCE)(SHAPE, 18, 4)
    assert leveled.output.flood_terms == 1  # Cheetah's rule: one uniform where it decrypts, at its level
    assert leveled.pipeline.stat_bits == 54 and leveled.pipeline.fail_bits == 54 and leveled.stat_security >= 54


@pytest.mark.parametrize("shape", [SHAPE, MatmulShape(1, 512, 10)], ids=["conv", "fc"])
def test_quantized_planner_floods_with_two_uniforms_at_their_level(shape) -> None:
    leveled = QuantizedPlanner(levels=INFERENCE).search(shape, 18, 4)
    best = leveled.best.plan
    assert best.output.flood_terms == 2 and best.pipeline.stat_bits == 45 and best.pipeline.fail_bits == 54
    assert best.stat_security >= 45
    # against the linear sum's level for the same results (every result at 50 bits): fewer bytes
    old = QuantizedPlanner(stat_bits=50).search(shape, 18, 4).best
    assert leveled.best.cost.total < old.cost.total
    # and the Cheetah candidate is planned at the levels too
    assert leveled.cheetah is not None and leveled.cheetah.plan.pipeline.fail_bits == 54


def test_the_first_pass_tries_the_cheaper_flood() -> None:
    per_ct, inference = QuantizedPlanner(), QuantizedPlanner(levels=INFERENCE)
    assert (2.0, 1) not in _refinements(per_ct) and (2.0, 2) in _refinements(per_ct)
    assert (2.0, 2) not in _refinements(inference) and (2.0, 1) in _refinements(inference)
    layout = ConvLayout(cheetah_conv_tiling(SHAPE, 4096))
    first = inference.evaluate(layout, 18, 4)
    assert first is not None and first.plan.output.flood_terms == 2 and first.plan.pipeline.fail_bits == 54
    assert per_ct.evaluate(layout, 18, 4).plan.output.flood_terms == 1


def test_per_ciphertext_levels_are_the_default_planner() -> None:
    explicit = QuantizedPlanner(levels=FloodLevels()).search(SHAPE, 18, 4).best.plan
    assert explicit == QuantizedPlanner().search(SHAPE, 18, 4).best.plan
    assert explicit.pipeline.fail_bits == 40 and explicit.pipeline.stat_bits == 40
