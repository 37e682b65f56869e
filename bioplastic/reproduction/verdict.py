"""Numeric criteria and the verdict logic of ``bioplastic reproduce``.

A claim's criterion is fixed in code before anything runs: one measured quantity (one value per seed) must be
``at_least`` or ``at_most`` a threshold. The verdict follows from the criterion and the numbers only:

- ``reproduced``: the 95 % confidence interval of the seed mean (Student t, ``n - 1`` degrees of freedom) lies
  entirely on the criterion's side of the threshold (the threshold itself counts as on its side);
- ``not reproduced``: the interval lies entirely on the other side, or a seed gave a non-finite value (a
  diverged run), or a single seed misses the threshold;
- ``partly``: the interval contains the threshold (borderline: more seeds would decide), or a single seed
  meets the threshold (no spread to judge it by);
- ``not run at this budget``: nothing was measured (the budget excludes the claim, its data are missing, or its
  experiment failed; the reason says which).

A quantity that does not depend on the seed (``deterministic``: e.g. a FLOP count) is judged from its value
alone, with no interval.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Literal

import numpy as np

from bioplastic._checks import check_choice

__all__ = ["VERDICTS", "DIRECTIONS", "Criterion", "verdict", "summarize", "confidence_interval"]

VERDICTS = ("reproduced", "not reproduced", "partly", "not run at this budget")
"""Every verdict a claim can get."""

DIRECTIONS = ("at_least", "at_most")
"""Sides of a criterion: the measured quantity must be at least / at most the threshold."""

CONFIDENCE = 0.95
"""Two-sided confidence level of the interval of the seed mean."""


@dataclasses.dataclass(frozen=True)
class Criterion:
    """A one-sided numeric criterion on a measured quantity, fixed before running.

    Parameters
    ----------
    direction : {"at_least", "at_most"}
        The claim holds where the quantity is >= (``at_least``) or <= (``at_most``) ``threshold``.
    threshold : float
        In the quantity's unit.
    unit : str
        Unit of the quantity and threshold, for the text (e.g. ``"pp"`` for percentage points).

    Raises
    ------
    ValueError
        Unknown direction or a non-finite threshold.
    """

    direction: Literal["at_least", "at_most"]
    threshold: float
    unit: str = ""

    def __post_init__(self):
        check_choice("criterion direction", self.direction, DIRECTIONS)
        if not math.isfinite(float(self.threshold)):
            raise ValueError(f"criterion threshold must be finite, got {self.threshold!r}")

    @property
    def symbol(self) -> str:
        return ">=" if self.direction == "at_least" else "<="

    def describe(self, quantity: str) -> str:
        """The criterion as one sentence, e.g. ``"BP - LDFA <= 1 pp (95 % interval of the seed mean)"``."""
        unit = f" {self.unit}" if self.unit else ""
        return (f"{quantity} {self.symbol} {self.threshold:g}{unit}: reproduced where the 95 % confidence "
                f"interval of the seed mean lies on that side of {self.threshold:g}{unit}")

    def holds(self, value: float) -> bool:
        """Whether a single value meets the criterion (the threshold itself does)."""
        return value >= self.threshold if self.direction == "at_least" else value <= self.threshold


def summarize(values: Sequence[float]) -> tuple[float, float, int]:
    """(mean, sample standard deviation with ``ddof=1`` (NaN for fewer than 2 values), n) of per-seed values."""
    v = np.asarray(values, dtype=float).ravel()
    n = int(v.size)
    if n == 0:
        return math.nan, math.nan, 0
    mean = float(np.mean(v))
    sd = float(np.std(v, ddof=1)) if n >= 2 else math.nan
    return mean, sd, n


def confidence_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Two-sided Student-t confidence interval of the mean of ``values`` (at least 2 finite values).

    Raises
    ------
    ValueError
        Fewer than 2 values, or a confidence outside (0, 1).
    """
    from scipy import stats

    v = np.asarray(values, dtype=float).ravel()
    if v.size < 2:
        raise ValueError(f"a confidence interval needs at least 2 values, got {v.size}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    mean, sd, n = summarize(v)
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    return mean - half, mean + half


def verdict(criterion: Criterion, values: Sequence[float] | None, *, deterministic: bool = False,
            unit_format: str = "{:.3g}") -> tuple[str, str]:
    """The verdict of a claim from its criterion and its per-seed measured values.

    Parameters
    ----------
    criterion : Criterion
    values : sequence of float or None
        The measured quantity, one value per seed (None or empty: nothing measured).
    deterministic : bool
        The quantity does not depend on the seed (e.g. a FLOP count): judged from its mean, no interval.
    unit_format : str
        Format of the numbers in the reason.

    Returns
    -------
    (str, str)
        The verdict (one of :data:`VERDICTS`) and a one-line reason citing the numbers.
    """
    f = unit_format.format
    v = np.asarray([] if values is None else values, dtype=float).ravel()
    unit = f" {criterion.unit}" if criterion.unit else ""
    thr = f"{criterion.symbol} {criterion.threshold:g}{unit}"
    if v.size == 0:
        return "not run at this budget", "nothing was measured"
    bad = int(np.sum(~np.isfinite(v)))
    if bad:
        return "not reproduced", (f"{bad} of {v.size} seeds gave a non-finite value (a diverged run, or a target "
                                  "never reached)")
    mean, sd, n = summarize(v)
    if deterministic:
        spread = np.ptp(v) if n > 1 else 0.0
        if spread > 1e-9 * max(1.0, abs(mean)):
            return "partly", (f"a seed-independent quantity varied across {n} evaluations "
                              f"({f(v.min())} to {f(v.max())}{unit}); not judged")
        ok = criterion.holds(mean)
        return ("reproduced" if ok else "not reproduced"), (
            f"{f(mean)}{unit} {'meets' if ok else 'misses'} {thr} (seed-independent quantity)")
    if n == 1:
        if criterion.holds(mean):
            return "partly", f"one seed: {f(mean)}{unit} meets {thr}, but there is no spread to judge it by"
        return "not reproduced", f"one seed: {f(mean)}{unit} misses {thr}"
    lo, hi = confidence_interval(v)
    interval = f"mean {f(mean)}{unit}, 95 % interval [{f(lo)}, {f(hi)}] over {n} seeds"
    if criterion.direction == "at_least":
        inside, outside = lo >= criterion.threshold, hi < criterion.threshold
    else:
        inside, outside = hi <= criterion.threshold, lo > criterion.threshold
    if inside:
        return "reproduced", f"{interval} meets {thr}"
    if outside:
        return "not reproduced", f"{interval} misses {thr}"
    return "partly", f"{interval} contains the threshold ({thr}): borderline, more seeds would decide"
