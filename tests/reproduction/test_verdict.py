"""The verdict logic of ``bioplastic reproduce`` on planted numbers (issue 13: "a test checks the logic")."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from bioplastic.reproduction.verdict import VERDICTS, Criterion, confidence_interval, summarize, verdict

AT_LEAST = Criterion("at_least", 1.0, "pp")
AT_MOST = Criterion("at_most", 1.0, "pp")


def _half_width(sd: float, n: int) -> float:
    return stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)


def test_interval_is_scipys_student_t_interval():
    v = np.array([0.3, 1.7, 0.9, 1.2])
    lo, hi = confidence_interval(v)
    ref = stats.t.interval(0.95, len(v) - 1, loc=v.mean(), scale=stats.sem(v))
    assert (lo, hi) == pytest.approx(ref, rel=1e-12)


def test_summarize_mean_sd_n():
    assert summarize([1.0, 2.0, 3.0]) == pytest.approx((2.0, 1.0, 3))
    mean, sd, n = summarize([4.0])
    assert (mean, n) == (4.0, 1) and math.isnan(sd)
    mean, sd, n = summarize([])
    assert n == 0 and math.isnan(mean) and math.isnan(sd)


@pytest.mark.parametrize("criterion, values, expected", [
    (AT_LEAST, [2.0, 2.1, 1.9], "reproduced"),        # interval far above 1
    (AT_LEAST, [0.1, 0.2, 0.15], "not reproduced"),   # interval far below 1
    (AT_LEAST, [0.5, 1.5, 1.0], "partly"),            # mean on the threshold: the interval contains it
    (AT_MOST, [0.1, 0.2, 0.15], "reproduced"),
    (AT_MOST, [2.0, 2.1, 1.9], "not reproduced"),
    (AT_MOST, [0.5, 1.5, 1.0], "partly"),
    (AT_LEAST, [1.0, 1.0], "reproduced"),             # no spread, exactly on the threshold: it counts
    (AT_MOST, [1.0, 1.0], "reproduced"),
    (AT_LEAST, [0.999, 0.999, 0.999], "not reproduced"),
])
def test_verdict_on_planted_numbers(criterion, values, expected):
    v, reason = verdict(criterion, values)
    assert v == expected, reason
    assert v in VERDICTS


@pytest.mark.parametrize("direction", ["at_least", "at_most"])
def test_borderline_just_inside_and_just_outside_the_interval(direction):
    """Three seeds with s.d. 1: the verdict flips exactly where the interval's edge crosses the threshold."""
    c = Criterion(direction, 0.0)
    half = _half_width(1.0, 3)
    sign = 1 if direction == "at_least" else -1
    for eps, expected in ((1e-6, "reproduced"), (-1e-6, "partly")):
        centre = sign * (half + eps)  # the interval's near edge sits eps beyond (or before) the threshold
        assert verdict(c, [centre - 1, centre, centre + 1])[0] == expected
    for eps, expected in ((1e-6, "not reproduced"), (-1e-6, "partly")):
        centre = -sign * (half + eps)  # the far edge crosses to the wrong side
        assert verdict(c, [centre - 1, centre, centre + 1])[0] == expected


def test_one_seed_never_reproduces_but_can_fail():
    v, reason = verdict(AT_LEAST, [5.0])
    assert v == "partly" and "one seed" in reason
    v, reason = verdict(AT_LEAST, [0.5])
    assert v == "not reproduced" and "one seed" in reason


def test_nothing_measured_is_not_run():
    assert verdict(AT_LEAST, [])[0] == "not run at this budget"
    assert verdict(AT_LEAST, None)[0] == "not run at this budget"


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_non_finite_seed_is_not_reproduced(bad):
    # even where the other seeds pass and inf would "pass" an at_least criterion
    v, reason = verdict(AT_LEAST, [2.0, 2.1, bad])
    assert v == "not reproduced" and "1 of 3" in reason


def test_deterministic_quantity_is_judged_without_an_interval():
    c = Criterion("at_most", 0.7)
    assert verdict(c, [0.69], deterministic=True)[0] == "reproduced"
    assert verdict(c, [0.7], deterministic=True)[0] == "reproduced"
    assert verdict(c, [0.71], deterministic=True)[0] == "not reproduced"
    assert verdict(c, [0.69, 0.69], deterministic=True)[0] == "reproduced"
    # a "seed-independent" quantity that varies is not judged
    assert verdict(c, [0.5, 0.9], deterministic=True)[0] == "partly"


def test_reason_cites_the_numbers():
    _, reason = verdict(AT_MOST, [0.2, 0.4, 0.3])
    assert "mean 0.3 pp" in reason and "3 seeds" in reason and "<= 1 pp" in reason


def test_bad_criteria_are_refused():
    with pytest.raises(ValueError, match="at_least"):
        Criterion("above", 1.0)
    with pytest.raises(ValueError, match="finite"):
        Criterion("at_least", math.nan)
    with pytest.raises(ValueError, match="at least 2"):
        confidence_interval([1.0])
