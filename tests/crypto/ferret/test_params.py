import pytest

from aiompc.crypto.ferret import BOOTSTRAP, MAIN, PUBLISHED, FerretParams, toy_params
from aiompc.errors import InsecureParameters, ParameterError


def test_published_sets_match_the_reference_implementation_and_name_it() -> None:
    assert (MAIN.n, MAIN.t, MAIN.k, MAIN.log_bin, MAIN.d) == (10_608_640, 1_295, 589_824, 13, 10)
    assert (BOOTSTRAP.n, BOOTSTRAP.t, BOOTSTRAP.k, BOOTSTRAP.log_bin, BOOTSTRAP.d) == (649_728, 1_269, 36_288, 9, 10)
    for p in PUBLISHED.values():
        assert "Ferret" in p.source and "emp-ot" in p.source
        assert not p.forced
        assert p.n == p.t * p.bin_size
        assert p.reserved == p.k + p.t * p.log_bin
        assert p.gain == p.n - p.reserved > 0
    assert FerretParams.main() is MAIN and FerretParams.bootstrap() is BOOTSTRAP
    # the bootstrap output covers what the main extension reserves
    assert BOOTSTRAP.n >= MAIN.reserved


def test_custom_published_set_is_accepted_without_force() -> None:
    p = FerretParams.custom("again", t=1_295, k=589_824, log_bin=13)
    assert (p.n, p.t, p.k, p.log_bin, p.d) == (MAIN.n, MAIN.t, MAIN.k, MAIN.log_bin, MAIN.d)
    assert not p.forced and p.source == MAIN.source


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(t=1_295, k=589_823, log_bin=13),  # k off by one
        dict(t=1_294, k=589_824, log_bin=13),
        dict(t=1_295, k=589_824, log_bin=13, d=9),
        dict(t=16, k=256, log_bin=6),
    ],
)
def test_unknown_sets_are_refused_unless_forced(kwargs: dict) -> None:
    with pytest.raises(InsecureParameters, match="force=True"):
        FerretParams.custom("x", **kwargs)
    p = FerretParams.custom("x", force=True, **kwargs)
    assert p.forced and p.source.startswith("forced")


def test_direct_construction_is_checked_too() -> None:
    with pytest.raises(InsecureParameters):
        FerretParams("x", 1024, 16, 256, 6)
    with pytest.raises(ParameterError, match="t·2\\^h"):
        FerretParams("x", 1000, 16, 256, 6, forced=True)
    with pytest.raises(ParameterError, match="cannot grow"):
        toy_params(t=4, k=1000, log_bin=6)
    with pytest.raises(ParameterError):
        toy_params(t=0)
    with pytest.raises(ParameterError):
        toy_params(log_bin=21)


def test_toy_params_are_forced_and_consistent() -> None:
    p = toy_params()
    assert p.forced and p.n == p.t << p.log_bin and p.gain > 0
    assert p.message_bytes == 16 * p.t * (2 * p.log_bin + 1)
