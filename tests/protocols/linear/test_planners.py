"""Every registered planner declares what the network-level planning reads of it (the :class:`Planner` protocol):
its flooding (``stat_bits``, ``flood_levels``), a copy flooding at other levels (``flooding_at``) and whether key
sets are shared for it (``shares_key_sets``)."""

from __future__ import annotations

import inspect
from dataclasses import replace

import pytest

from aiompc.errors import InputError
from aiompc.protocols.linear.key_sets import KeySet
from aiompc.protocols.linear.plan import CheetahBaselinePlanner, CheetahPlanner, FloodLevels, Planner
from aiompc.protocols.linear.planners import PLANNERS, planner_named
from aiompc.protocols.linear.quantized import QuantizedPlanner

PROTOCOL_MEMBERS = {"name", "stat_bits", "flood_levels", "shares_key_sets", "flooding_at", "__call__"}


def test_the_protocol_declares_what_the_network_planning_reads() -> None:
    declared = {n for n in vars(Planner) if not n.startswith("_")} | {"__call__"}
    assert declared == PROTOCOL_MEMBERS


@pytest.mark.parametrize("name", sorted(PLANNERS))
def test_every_registered_planner_has_the_protocols_members(name: str) -> None:
    planner = planner_named(name)
    for member in PROTOCOL_MEMBERS:  # defined on the class (a field, property or method), not probed at run time
        assert inspect.getattr_static(planner, member, None) is not None, (name, member)
    assert planner.name == name
    assert isinstance(planner.stat_bits, int) and planner.stat_bits == 40
    assert planner.flood_levels == FloodLevels.per_ciphertext(40)
    assert isinstance(planner.shares_key_sets, bool)
    assert planner.shares_key_sets == isinstance(planner, QuantizedPlanner)


@pytest.mark.parametrize("name", sorted(PLANNERS))
def test_flooding_at_its_own_levels_is_the_planner_itself(name: str) -> None:
    planner = planner_named(name)
    assert planner.flooding_at(planner.flood_levels) is planner
    assert planner.flooding_at(FloodLevels.per_ciphertext(planner.stat_bits)) is planner


@pytest.mark.parametrize("name", sorted(PLANNERS))
@pytest.mark.parametrize("levels", [FloodLevels(54, 45, 54), FloodLevels(48, 48, 48), FloodLevels(41, 44, 46)])
def test_flooding_at_other_levels_is_never_less_secure(name: str, levels: FloodLevels) -> None:
    planner = planner_named(name)
    flooding = planner.flooding_at(levels)
    assert type(flooding) is type(planner) and flooding.name == planner.name and flooding is not planner
    assert flooding.flood_levels.at_least(levels) == flooding.flood_levels  # every flood at least as strong
    assert flooding.flooding_at(flooding.flood_levels) is flooding


def test_per_flood_levels_are_kept_where_the_planner_has_them() -> None:
    levels = FloodLevels(54, 45, 54)
    for planner in (CheetahPlanner(), QuantizedPlanner()):
        assert planner.flooding_at(levels).flood_levels == levels
        assert planner.flooding_at(levels).flooding_at(FloodLevels.per_ciphertext(40)) == planner
        assert planner.flooding_at(FloodLevels.per_ciphertext(47)) == replace(planner, stat_bits=47)
    # a single level: the highest of the three (Cheetah's baseline has one flood level)
    assert CheetahBaselinePlanner().flooding_at(levels) == CheetahBaselinePlanner(stat_bits=54)
    assert CheetahBaselinePlanner().flooding_at(FloodLevels(41, 44, 46)).stat_bits == 46


def test_is_per_ciphertext() -> None:
    assert FloodLevels.per_ciphertext(40).is_per_ciphertext and FloodLevels.per_ciphertext(52).is_per_ciphertext
    assert not FloodLevels(54, 45, 54).is_per_ciphertext and not FloodLevels(45, 45, 46).is_per_ciphertext
    with pytest.raises(InputError):
        FloodLevels(60, 40, 40)  # fail below a level: refused, whatever a planner would do with it


def test_key_sets_are_shared_only_for_a_packing_byte_minimising_planner_without_sets() -> None:
    base = QuantizedPlanner()
    assert base.shares_key_sets
    assert not replace(base, output_packing=False).shares_key_sets
    assert not replace(base, bandwidth=1e9).shares_key_sets
    assert not replace(base, key_sets=(KeySet(4096, (12289,), ()),)).shares_key_sets
    assert not CheetahPlanner().shares_key_sets and not CheetahBaselinePlanner().shares_key_sets
