"""The rule objects: names, options, validation, config round trip."""
import dataclasses
import json

import pytest

import bioplastic
from bioplastic.rules import FEEDBACK_LEARNING, RULE_NAMES, from_dict, make


def test_names_are_the_contract():
    assert RULE_NAMES == ("bp", "fa", "dfa", "sign_symmetry", "kolen_pollack", "ldfa", "direct_ldfa", "drtp")
    assert FEEDBACK_LEARNING == ("fixed", "q_only", "normative", "local", "oja")
    assert bioplastic.rules.make is make


@pytest.mark.parametrize("name", RULE_NAMES)
def test_every_rule_round_trips_through_json(name):
    rule = make(name)
    assert rule.name == name
    config = json.loads(json.dumps(rule.to_dict()))
    assert from_dict(config) == rule
    with pytest.raises(dataclasses.FrozenInstanceError):
        rule.name = "x"  # noqa: the rule is frozen


@pytest.mark.parametrize("mode", FEEDBACK_LEARNING)
def test_ldfa_modes_and_learnable_factors(mode):
    rule = make("ldfa", rank=3, feedback_learning=mode)
    assert rule.learns_q == (mode != "fixed")
    assert rule.learns_p == (mode in ("normative", "local", "oja"))


def test_mode_dependent_defaults_are_the_authors():
    assert make("ldfa", feedback_learning="normative").feedback_lr == 0.01
    assert make("ldfa", feedback_learning="local").feedback_weight_decay == 0.1
    assert make("ldfa", feedback_learning="local", feedback_weight_decay=0.0).feedback_weight_decay == 0.0
    assert make("ldfa").rank == 10 and make("ldfa").rank_fraction is None


def test_rank_fraction():
    rule = make("ldfa", rank_fraction=0.25)
    assert rule.rank is None
    assert rule.rank_for(512) == 128
    assert rule.rank_for(3) == 1  # max(1, ceil(0.75))
    assert make("ldfa", rank=7).rank_for(512) == 7


@pytest.mark.parametrize(
    "name, options, match",
    [
        ("foo", {}, "unknown rule 'foo'; allowed: 'bp', 'fa', 'dfa', 'sign_symmetry', 'kolen_pollack', 'ldfa', "
                    "'direct_ldfa'"),
        ("ldfa", {"rnk": 3}, "unknown option 'rnk' for rule 'ldfa'; allowed: 'rank'"),
        ("fa", {"rank": 3}, "unknown option 'rank' for rule 'fa'; allowed: \\(none\\)"),
        ("ldfa", {"feedback_learning": "hebb"}, "allowed: 'fixed', 'q_only', 'normative', 'local', 'oja'"),
        ("ldfa", {"rank": 0}, "rank must be an integer >= 1"),
        ("ldfa", {"rank": -2}, "rank must be an integer >= 1"),
        ("ldfa", {"rank": 2.5}, "rank must be an integer"),
        ("ldfa", {"rank": 2, "rank_fraction": 0.5}, "not both"),
        ("ldfa", {"rank_fraction": 1.5}, "rank_fraction must be in \\(0, 1\\]"),
        ("ldfa", {"rank_fraction": 0.0}, "rank_fraction must be > 0"),
        ("ldfa", {"feedback_lr": float("nan")}, "feedback_lr must be finite"),
        ("ldfa", {"feedback_weight_decay": float("inf")}, "feedback_weight_decay must be finite"),
        ("ldfa", {"feedback_weight_decay": -1.0}, "feedback_weight_decay must be >= 0"),
        ("ldfa", {"error_clamp": 0.0}, "error_clamp must be > 0"),
        ("ldfa", {"error_clamp": float("nan")}, "error_clamp must be finite"),
        ("ldfa", {"feedback_learning": "local", "reinit_every": 5}, "reinit_every applies only"),
        ("ldfa", {"reinit_every": 0}, "reinit_every must be an integer >= 1"),
        ("direct_ldfa", {"feedback_learning": "normative"}, "allowed: 'fixed', 'q_only', 'local', 'oja'"),
        ("sign_symmetry", {"scale": "max"}, "allowed: 'mean_abs', 'unit'"),
    ],
)
def test_bad_options_raise_naming_the_problem(name, options, match):
    with pytest.raises(ValueError, match=match):
        make(name, **options)


def test_make_passes_rules_through_and_overrides():
    rule = make("ldfa", rank=4)
    assert make(rule) is rule
    assert make(rule, error_clamp=1.0) == make("ldfa", rank=4, error_clamp=1.0)
    with pytest.raises(ValueError, match="no 'name'"):
        from_dict({"rank": 3})


def test_override_resets_partner_options():
    rule = make("ldfa", rank=4, feedback_learning="normative")
    assert make(rule, rank_fraction=0.5).rank is None
    local = make(rule, feedback_learning="local")
    assert local.feedback_lr is None and local.feedback_weight_decay == 0.1
