"""Ferret parameter sets: the published 128-bit sets and small test-only sets.

One *extension* of Ferret (Yang, Weng, Lan, Zhang, Wang, CCS 2020) turns ``reserved = k + t·h`` random
correlated OTs into ``n`` new ones:

* ``t`` single-point COTs, one per *bin* of ``2**h`` positions (``n = t · 2**h``), each from a GGM tree
  of depth ``h`` whose punctured path the receiver learns through ``h`` reserved COTs;
* the LPN step ``y = A·u + e`` with a public local linear code ``A`` (``d`` non-zeros per row) over the
  ``k``-long reserved vector ``u``, the regular noise ``e`` being the t-sparse vector of the bins.

The published sets are the ones of the reference implementation (emp-ot, ``emp-ot/ferret/constants.h``:
``N_REG, T_REG, K_REG, BIN_SZ_REG`` and the ``*_PRE_REG`` bootstrap set), chosen there for 128-bit
computational security of the primal LPN problem with regular noise and a local code of 10 non-zeros per
row.  Anything else is refused with :class:`~aiompc.errors.InsecureParameters` unless built with
``force=True``, which is meant for tests only (such sets carry no security claim at all).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiompc.errors import InsecureParameters, ParameterError

__all__ = ["FerretParams", "MAIN", "BOOTSTRAP", "PUBLISHED", "LPN_ROW_WEIGHT", "toy_params"]

LPN_ROW_WEIGHT = 10
"""Non-zeros per row of the local linear code (``d``), as in the reference implementation."""

_SOURCE = "Ferret (Yang, Weng, Lan, Zhang, Wang, CCS 2020); emp-ot ferret/constants.h"
_PUBLISHED_TUPLES = frozenset(
    {
        # (n, t, k, h, d)
        (10_608_640, 1_295, 589_824, 13, LPN_ROW_WEIGHT),  # N_REG, T_REG, K_REG, BIN_SZ_REG
        (649_728, 1_269, 36_288, 9, LPN_ROW_WEIGHT),  # N_PRE_REG, T_PRE_REG, K_PRE_REG, BIN_SZ_PRE_REG
    }
)


@dataclass(frozen=True)
class FerretParams:
    """One Ferret parameter set.

    Attributes:
        name: a short identifier (``"main"``, ``"bootstrap"``, or a test name).
        n: outputs of one extension, ``n == t * 2**log_bin``.
        t: noise weight = number of bins = number of GGM trees.
        k: length of the LPN secret (reserved COTs consumed by the LPN step).
        log_bin: ``h``, each bin holds ``2**h`` positions (GGM tree depth).
        d: non-zeros per row of the local linear code.
        source: where the set comes from (or ``"forced: ..."`` for unvetted sets).
        forced: True when the set was accepted only because ``force=True`` was given.
    """

    name: str
    n: int
    t: int
    k: int
    log_bin: int
    d: int = LPN_ROW_WEIGHT
    source: str = ""
    forced: bool = field(default=False, compare=False)

    def __post_init__(self) -> None:
        for attr in ("n", "t", "k", "log_bin", "d"):
            value = getattr(self, attr)
            if not isinstance(value, int) or value < 1:
                raise ParameterError(f"Ferret parameter {attr} must be a positive integer, got {value!r}")
        if self.n != self.t << self.log_bin:
            raise ParameterError(
                f"Ferret set {self.name!r}: n = {self.n} must equal t·2^h = {self.t}·2^{self.log_bin} = "
                f"{self.t << self.log_bin}"
            )
        if self.log_bin > 20:
            raise ParameterError(f"Ferret set {self.name!r}: bins of 2^{self.log_bin} are too large (at most 2^20)")
        if self.k >= 2**31 or self.n >= 2**40:
            raise ParameterError(f"Ferret set {self.name!r}: k or n out of range")
        if self.d > self.k:
            raise ParameterError(f"Ferret set {self.name!r}: row weight d = {self.d} exceeds k = {self.k}")
        if self.n <= self.reserved:
            raise ParameterError(
                f"Ferret set {self.name!r} produces n = {self.n} COTs but consumes {self.reserved}: it cannot grow"
            )
        if not self.forced and (self.n, self.t, self.k, self.log_bin, self.d) not in _PUBLISHED_TUPLES:
            raise InsecureParameters(
                f"Ferret set (n={self.n}, t={self.t}, k={self.k}, h={self.log_bin}, d={self.d}) is not a "
                "published 128-bit set; use FerretParams.main() or FerretParams.bootstrap(), or pass "
                "force=True (tests only: a forced set carries no security claim)"
            )

    @classmethod
    def custom(cls, name: str, *, t: int, k: int, log_bin: int, d: int = LPN_ROW_WEIGHT, force: bool = False) -> "FerretParams":
        """A set given by ``(t, k, h, d)``; raises :class:`InsecureParameters` unless published or forced."""
        if not (isinstance(t, int) and isinstance(log_bin, int) and t >= 1 and 1 <= log_bin <= 20):
            raise ParameterError(f"Ferret set {name!r}: t must be >= 1 and h in 1..20, got t={t!r}, h={log_bin!r}")
        n = t << log_bin
        published = (n, t, k, log_bin, d) in _PUBLISHED_TUPLES
        source = _SOURCE if published else f"forced: {name} (no security claim)"
        return cls(name, n, t, k, log_bin, d, source, forced=force and not published)

    @classmethod
    def main(cls) -> "FerretParams":
        """The regular extension set: n = 10,608,640, t = 1,295, k = 589,824, bins of 2^13."""
        return MAIN

    @classmethod
    def bootstrap(cls) -> "FerretParams":
        """The bootstrap set: n = 649,728, t = 1,269, k = 36,288, bins of 2^9."""
        return BOOTSTRAP

    @property
    def bin_size(self) -> int:
        """Positions per bin, ``2**h``."""
        return 1 << self.log_bin

    @property
    def tree_cots(self) -> int:
        """Reserved COTs spent on the GGM trees: ``t·h`` (one per tree level)."""
        return self.t * self.log_bin

    @property
    def reserved(self) -> int:
        """Reserved COTs one extension consumes: ``k + t·h`` (semi-honest, no consistency check)."""
        return self.k + self.tree_cots

    @property
    def gain(self) -> int:
        """Net COTs one extension adds to the pool: ``n - reserved``."""
        return self.n - self.reserved

    @property
    def message_bytes(self) -> int:
        """Bytes the sender sends per extension: two 16-byte OT pads per tree level plus one correction per tree."""
        return 16 * (2 * self.tree_cots + self.t)


MAIN = FerretParams("main", 10_608_640, 1_295, 589_824, 13, LPN_ROW_WEIGHT, _SOURCE)
BOOTSTRAP = FerretParams("bootstrap", 649_728, 1_269, 36_288, 9, LPN_ROW_WEIGHT, _SOURCE)
PUBLISHED: dict[str, FerretParams] = {"main": MAIN, "bootstrap": BOOTSTRAP}


def toy_params(name: str = "toy", *, t: int = 16, k: int = 256, log_bin: int = 6, d: int = LPN_ROW_WEIGHT) -> FerretParams:
    """A small forced set for tests only (default n = 1,024, k = 256, 16 bins of 64; no security claim)."""
    return FerretParams.custom(name, t=t, k=k, log_bin=log_bin, d=d, force=True)
