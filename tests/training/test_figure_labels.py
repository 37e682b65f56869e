"""What the comparison's table and figure say about each run (issue 11 case 8, issue 16 item 7): rules named
in words, which rules read the forward weights (weight transport), what the error bars are, the seed count."""
from __future__ import annotations

import numpy as np
import pytest

from bioplastic.training import comparison as compare_mod
from bioplastic.training import plot_comparison
from bioplastic.training import results as R
from bioplastic.training.plots import display_name
from tests.training.test_compare import digits_spec, engine, small  # noqa: F401  (fixtures)


def test_default_comparison_includes_the_synapse_local_rule():
    assert compare_mod.DEFAULT_FEEDBACK_LEARNING == ("normative", "local", "fixed")
    assert compare_mod.DEFAULT_RANKS == (1, 3, 10)


@pytest.mark.parametrize("label, reads", [
    ("bp", "yes"), ("fa", "no"), ("dfa", "no"), ("sign_symmetry", "sign"), ("kolen_pollack", "no"),
    ("ldfa_normative", "yes"), ("ldfa_local", "no"), ("ldfa_fixed", "no"), ("ldfa_oja", "no"),
    ("ldfa_q_only", "no"), ("direct_ldfa_normative", "yes"), ("direct_ldfa_local", "no"), ("mystery", "?")])
def test_weight_transport_of_every_rule(label, reads):
    assert R.weight_transport(label) == reads


def test_display_names_are_words_with_weight_transport():
    assert display_name("ldfa_normative") == "LDFA adaptive (normative), reads W"
    assert display_name("ldfa_normative", "10") == "LDFA adaptive (normative) r=10, reads W"
    assert display_name("ldfa_local", "3") == "LDFA adaptive (local) r=3"
    assert display_name("ldfa_fixed") == "LDFA fixed"
    assert display_name("direct_ldfa_oja") == "direct LDFA adaptive (Oja)"
    assert display_name("bp") == "backprop, reads W"
    assert display_name("sign_symmetry") == "sign symmetry, reads sign W"
    assert display_name("fa") == "FA" and display_name("dfa") == "DFA"


def _legend_texts(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


@pytest.mark.parametrize("seeds, count", [([0], "1 seed"), ([0, 1, 2], "3 seeds")])
def test_figure_legends_title_and_error_bars(engine, digits_spec, seeds, count):
    ds = small(digits_spec, None, seeds=seeds, feedback_learning=["normative", "local", "fixed"])
    fig = plot_comparison(ds)
    curves, vs_rank, align = fig.axes[:3]
    texts = _legend_texts(curves) + _legend_texts(vs_rank) + _legend_texts(align)
    assert not any("ldfa_" in t or t in ("bp", "fa") for t in texts)  # no raw labels
    assert "LDFA adaptive (normative), reads W" in _legend_texts(vs_rank)
    assert "LDFA adaptive (local)" in _legend_texts(vs_rank)
    assert "LDFA fixed" in _legend_texts(vs_rank)
    assert "backprop, reads W" in _legend_texts(vs_rank)
    title = fig._suptitle.get_text()
    assert f"{count};" in title and "seed(s)" not in title and "reads W" in title
    assert ("2 seeds" not in title) and (count == "1 seed") != ("3 seeds" in title)
    # panel (b): points with s.d. error bars over seeds, or no bars (and the title says so) with one seed
    ldfa = [c for c in vs_rank.containers if c.get_label() == "LDFA adaptive (local)"][0]
    final = ds.test_accuracy.sel(rule="ldfa_local", rank=[1, 4]).isel(epoch=-1) * 100
    np.testing.assert_allclose(np.asarray(ldfa.lines[0].get_ydata(), float), final.mean("seed"))
    if len(seeds) == 1:
        assert ldfa.has_yerr is False
        assert "1 seed, no error bars" in vs_rank.get_title()
    else:
        assert ldfa.has_yerr
        (bars,) = ldfa.lines[2]
        segments = bars.get_segments()
        half = np.array([(seg[1][1] - seg[0][1]) / 2 for seg in segments])
        np.testing.assert_allclose(half, final.std("seed", ddof=1), rtol=1e-10)
        assert "mean \u00b1 s.d. over 3 seeds" in vs_rank.get_title()


def test_table_says_which_rules_read_w(engine, digits_spec):
    ds = small(digits_spec, None, feedback_learning=["normative", "local", "fixed"])
    lines = R.format_table(ds).splitlines()
    assert lines[0].split()[:7] == ["rule", "rank", "test", "acc", "(%)", "n", "status"]
    assert "reads W" in lines[0]
    reads = {(ln.split()[0], ln.split()[1]): ln for ln in lines[2:] if ln and ln.split()[0] in
             ("bp", "fa", "ldfa_normative", "ldfa_local", "ldfa_fixed")}
    column = lines[0].index("reads W")
    assert {k: v[column:column + 4].strip() for k, v in reads.items()} == {
        ("bp", "-"): "yes", ("fa", "-"): "no", **{(f"ldfa_{m}", r): ("yes" if m == "normative" else "no")
                                                 for m in ("normative", "local", "fixed") for r in ("1", "4")}}
    assert any(line.startswith("reads W = weight transport") for line in lines)


def test_every_registered_rule_has_words_and_a_weight_transport_answer():
    # The rules answer for themselves (Rule.display_name, Rule.transport_of): a new rule needs no table entry.
    from bioplastic.rules import RULE_NAMES, rule_class

    footnote = R.transport_footnote()
    for name in RULE_NAMES:
        cls = rule_class(name)
        modes = cls.feedback_learning_modes if cls.low_rank else (None,)
        for mode in modes:
            label = R.run_label(name, mode)
            assert R.split_label(label) == (name, mode)
            assert R.weight_transport(label) in ("yes", "sign", "no")
            assert label in footnote
            assert display_name(label) != label  # in words, not the raw label
    assert display_name("drtp") == "DRTP"
    assert R.weight_transport("direct_ldfa_normative") == "yes"  # what normative would mean, though direct_ldfa refuses it
    assert "direct_ldfa_normative" not in footnote  # the footnote lists only runs that can exist


def test_a_label_without_mode_takes_the_rules_default_mode():
    from bioplastic.rules import make

    for name in ("ldfa", "direct_ldfa"):
        default_mode = make(name, rank=2).feedback_learning
        assert R.weight_transport(name) == R.weight_transport(R.run_label(name, default_mode))
