"""The rate network speaks the rules' vocabulary: rule objects, one table of rate forms, no import circle."""
from __future__ import annotations

import ast
import json
import warnings
from pathlib import Path

import pytest
import torch

import bioplastic.rate
from bioplastic import rules
from bioplastic.rate import FeedbackPopulation, Population, RateNetwork
from bioplastic.rate.plasticity import RATE_FORMS, kolen_pollack_increment, local_p_increment, oja_increment
from bioplastic.rate.populations import FEEDBACK_LEARNING
from bioplastic.rules.low_rank import oja_subspace_gradient

SIZES = [6, 5, 4, 3]
OLD_TO_NEW = [("direct", "fixed", "direct_ldfa", "fixed"), ("direct", "kolen_pollack", "direct_ldfa", "q_only"),
              ("layerwise", "local", "ldfa", "local"), ("layerwise", "oja", "ldfa", "oja"),
              ("direct", "oja", "direct_ldfa", "oja"), ("layerwise", "kolen_pollack", "ldfa", "q_only")]


def _data(n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, SIZES[0], generator=g, dtype=torch.float64), torch.arange(n) % SIZES[-1]


@pytest.mark.parametrize("wiring, learning, name, mode", OLD_TO_NEW)
def test_the_deprecated_spelling_warns_and_means_the_rule(wiring, learning, name, mode):
    """``wiring="direct"`` is ``direct_ldfa``, ``learning="kolen_pollack"`` the rules' ``q_only``: the old spelling
    warns with its replacement and builds the same network, which learns exactly the same."""
    kw = dict(learning_rate=20.0, feedback_learning_rate=20.0, dtype=torch.float64, seed=4, weight_decay=0.1)
    with pytest.warns(DeprecationWarning, match=rf"rule=bioplastic.rules.make\('{name}', rank=2, "
                                                rf"feedback_learning='{mode}', feedback_weight_decay=0.1\)"):
        old = RateNetwork.from_sizes(SIZES, feedback_rank=2, wiring=wiring, feedback_learning=learning,
                                     feedback_weight_decay=0.1, **kw)
    # feedback_weight_decay: the rules' default (None: the forward decay, 0.1; local: 0.1; fixed: 0.0, set here)
    rule = rules.make(name, rank=2, feedback_learning=mode, **({"feedback_weight_decay": 0.1} if mode == "fixed" else {}))
    new = RateNetwork.from_sizes(SIZES, rule=rule, **kw)
    assert new.feedback.wiring == wiring and new.feedback.feedback_learning == mode
    assert old.synaptic_learning_rates() == new.synaptic_learning_rates()
    assert old.projections == new.projections and old.feedback_weight_decay == new.feedback_weight_decay == 0.1
    x, y = _data()
    old.run(x, y, presentation=0.01, dt=0.001, record=())
    new.run(x, y, presentation=0.01, dt=0.001, record=())
    for k, v in old.weights.items():
        assert torch.equal(v, new.weights[k]), k


def test_feedback_population_old_positional_form_and_the_learning_alias():
    with pytest.warns(DeprecationWarning, match=r"FeedbackPopulation\(bioplastic.rules.make\('ldfa', rank=2, "
                                                r"feedback_learning='q_only'"):
        fb = FeedbackPopulation(2, "layerwise", "kolen_pollack")
    assert fb.rule == rules.make("ldfa", rank=2, feedback_learning="q_only", feedback_weight_decay=0.0)
    with pytest.warns(DeprecationWarning, match="feedback_learning"):
        assert fb.learning == "kolen_pollack"
    assert fb == FeedbackPopulation(rules.make("ldfa", rank=2, feedback_learning="q_only",
                                               feedback_weight_decay=0.0))


def test_a_bare_rule_is_a_feedback_population_with_default_units():
    pops = [Population("input", 4), Population("hidden", 3), Population("output", 2, activation="linear")]
    net = RateNetwork(pops, rules.make("direct_ldfa", rank=2, feedback_learning="local"))
    assert net.feedback == FeedbackPopulation(rules.make("direct_ldfa", rank=2, feedback_learning="local"))
    assert net.feedback.tau == 0.005 and net.feedback.learning_rate == 1.0
    # the rules' default feedback weight decay of the local mode (0.1) is the rate network's lambda
    assert net.feedback_weight_decay == 0.1


@pytest.mark.parametrize("rule, message", [
    (rules.make("fa"), r"unknown rate-network rule 'fa'; allowed: 'direct_ldfa', 'ldfa'"),
    (rules.make("ldfa", rank=2, feedback_learning="normative"), r"'normative' has no rate-network form"),
    (rules.make("ldfa", rank_fraction=0.5, feedback_learning="oja"), "needs an absolute rank"),
    (rules.make("ldfa", rank=2, feedback_learning="oja", feedback_lr=0.1), r"FeedbackPopulation\(learning_rate"),
    (rules.make("direct_ldfa", rank=2, feedback_learning="oja", oja_covariance="targets"), "not implemented"),
    (rules.make("ldfa", rank=2, feedback_learning="oja", oja_centre=True), "no batch to centre over"),
    (rules.make("ldfa", rank=2, feedback_learning="oja", error_clamp=1.0), "error_clamp"),
    ("kolen_pollack", r"unknown rate-network rule 'kolen_pollack'"),
])
def test_rules_without_a_rate_form_are_refused(rule, message):
    with pytest.raises(ValueError, match=message):
        RateNetwork.from_sizes(SIZES, rule=rule)


def test_rule_and_deprecated_keywords_together_are_refused():
    with pytest.raises(ValueError, match="not both"):
        RateNetwork.from_sizes(SIZES, rule=rules.make("ldfa", rank=2, feedback_learning="oja"), wiring="direct")
    with pytest.raises(ValueError, match="not both"):
        FeedbackPopulation(rules.make("ldfa", rank=2, feedback_learning="oja"), learning="oja")


def test_configuration_round_trip_and_older_configurations():
    net = RateNetwork.from_sizes(SIZES, rule=rules.make("ldfa", rank=2, feedback_learning="local"), seed=2,
                                 dtype=torch.float64)
    cfg = json.loads(json.dumps(net.to_dict()))
    assert cfg["feedback"]["rule"]["name"] == "ldfa"
    assert RateNetwork.from_dict(cfg).to_dict() == net.to_dict()
    # a configuration written by an earlier release (recordings carry it) still loads, without a warning
    old = dict(cfg, feedback={"rank": 2, "wiring": "layerwise", "learning": "kolen_pollack", "tau": 0.005,
                              "learning_rate": 1.0, "weight_decay": 0.0})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = RateNetwork.from_dict(old)
    assert again.feedback.rule == rules.make("ldfa", rank=2, feedback_learning="q_only", feedback_weight_decay=0.0)


def test_spec_feedback_table_in_the_rules_vocabulary(tmp_path):
    base = 'architecture = "rate_network"\nsizes = [4, 3, 2]\n[feedback]\n'
    path = tmp_path / "new.toml"
    path.write_text(base + 'rule = "ldfa"\nrank = 1\nfeedback_learning = "q_only"\ntau = 0.002\n')
    net = RateNetwork.from_spec(path)
    assert net.feedback.rule == rules.make("ldfa", rank=1, feedback_learning="q_only") and net.feedback.tau == 0.002
    path.write_text(base + 'rank = 1\nwiring = "layerwise"\nlearning = "kolen_pollack"\n')
    with pytest.warns(DeprecationWarning, match="'rule': 'ldfa'.*'feedback_learning': 'q_only'"):
        assert RateNetwork.from_spec(path).feedback.rule == net.feedback.rule.__class__(
            rank=1, feedback_learning="q_only", feedback_weight_decay=0.0)
    path.write_text(base + 'rule = "ldfa"\nrank = 1\nlearning = "oja"\n')
    with pytest.raises(ValueError, match="mixes the deprecated keys"):
        RateNetwork.from_spec(path)
    path.write_text(base + 'rule = "ldfa"\nrank = 1\nbogus = 3\n')
    with pytest.raises(ValueError, match="unknown option 'bogus' for rule 'ldfa'"):
        RateNetwork.from_spec(path)


def test_the_table_has_a_form_exactly_where_the_rule_learns():
    """Which factor learns is the rule's decision; the table only writes the forms."""
    assert tuple(RATE_FORMS) == FEEDBACK_LEARNING
    for mode, form in RATE_FORMS.items():
        rule = rules.make("ldfa", rank=2, feedback_learning=mode)
        assert (form.p_increment is not None) == rule.learns_p, mode
        assert (form.q_increment is not None) == rule.learns_q, mode
        assert (form.brian2_p != "p : 1") == rule.learns_p and (form.brian2_q != "q : 1") == rule.learns_q


def _moments(seed=0, n=7, d=5, r=2):
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(n, d, generator=g, dtype=torch.float64)
    p = torch.linalg.qr(torch.randn(d, r, generator=g, dtype=torch.float64))[0] + 0.1
    return t, p


def test_oja_rate_form_is_the_trace_normalised_rule_times_the_trace():
    """The rate form of Oja's rule is the rules' ``oja_subspace_gradient`` with trace 1 (the feedback units carry
    ``z = t P``), i.e. exactly ``tr C`` times the descent direction of the trace-normalised rule of the autograd
    executor, and the classic form ``<(t - z P^T)^T z>`` of Oja (1989)."""
    t, p = _moments()
    z = t @ p
    n = t.shape[0]
    c = t.T @ t / n
    rate = oja_increment(t, z, p)
    torch.testing.assert_close(rate, ((t - z @ p.T).T @ z) / n, rtol=1e-12, atol=1e-14)
    normalised = oja_subspace_gradient(c @ p, p.T @ c @ p, p, torch.trace(c))
    torch.testing.assert_close(rate, -torch.trace(c) * normalised, rtol=1e-12, atol=1e-14)


def test_oja_rate_form_against_the_autograd_executor():
    """The P gradient that ``bioplastic.convert`` computes for a direct_ldfa output layer (error covariance, trace
    normalised by the batch's sum of squared errors) is the rate increment (trial mean, teaching signal
    ``t = -e``, ``z = t P``) times ``-N / sum(e^2)``."""
    import bioplastic

    g = torch.Generator().manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 5)).double()
    conv = bioplastic.convert(model, rules.make("direct_ldfa", rank=2, feedback_learning="oja",
                                                oja_covariance="error"), seed=0)
    x = torch.randn(9, 4, generator=g, dtype=torch.float64)
    y = torch.randn(9, 5, generator=g, dtype=torch.float64)
    out = conv(x)
    loss = 0.5 * (out - y).square().sum()
    loss.backward()
    e = (out - y).detach()  # dL/dlogits
    p = conv[2].P.detach()
    teach = -e
    expected = -oja_increment(teach, teach @ p, p) * e.shape[0] / e.square().sum()
    torch.testing.assert_close(conv[2].P.grad, expected, rtol=1e-10, atol=1e-13)


def test_bilinear_forms_are_the_negative_rule_gradients():
    """Kolen-Pollack ``Q`` and the local ``P``: ``-grad(delta = -t, z = -z)`` with the rules' ``grad_Q = z^T h`` and
    ``grad_P = delta^T (h Q^T)`` (trial means), plus the decay."""
    g = torch.Generator().manual_seed(2)
    t, z, h = (torch.randn(4, k, generator=g, dtype=torch.float64) for k in (3, 2, 5))
    q, p = torch.randn(2, 5, generator=g, dtype=torch.float64), torch.randn(3, 2, generator=g, dtype=torch.float64)
    delta, zd = -t, -z
    torch.testing.assert_close(kolen_pollack_increment(z, h, q, 0.3), -(zd.T @ h) / 4 - 0.3 * q)
    torch.testing.assert_close(local_p_increment(t, [(h, q)], p, 0.2), -(delta.T @ (h @ q.T)) / 4 - 0.2 * p)
    # two hidden populations served by one direct feedback population: the drives add up
    h2, q2 = torch.randn(4, 6, generator=g, dtype=torch.float64), torch.randn(2, 6, generator=g, dtype=torch.float64)
    torch.testing.assert_close(local_p_increment(t, [(h, q), (h2, q2)], p, 0.0),
                               (t.T @ (h @ q.T + h2 @ q2.T)) / 4)


def _rate_imports() -> dict[str, set[str]]:
    """Every import of a ``bioplastic.rate`` module by another, at any depth (functions, ``TYPE_CHECKING``)."""
    root = Path(bioplastic.rate.__file__).parent
    graph: dict[str, set[str]] = {}
    for path in root.glob("*.py"):
        name = f"bioplastic.rate.{path.stem}" if path.stem != "__init__" else "bioplastic.rate"
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("bioplastic.rate."):
                deps.add(node.module)
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("bioplastic.rate.")}
        graph[name] = deps
    return graph


def test_no_import_circle_in_the_rate_package():
    graph = _rate_imports()
    modules = {m for m in graph if m != "bioplastic.rate"}
    assert {"bioplastic.rate.network", "bioplastic.rate.protocol", "bioplastic.rate.dispatch",
            "bioplastic.rate.torch_backend", "bioplastic.rate.brian2_backend"} <= modules
    state: dict[str, int] = {}

    def visit(m, path):
        if state.get(m) == 1:
            raise AssertionError(f"import circle: {' -> '.join(path + [m])}")
        if state.get(m) == 2:
            return
        state[m] = 1
        for dep in graph.get(m, ()):
            visit(dep, path + [m])
        state[m] = 2

    for m in modules:
        visit(m, [])
    # the backends, the protocol and the dispatcher never import the network description
    for low in ("protocol", "dispatch", "torch_backend", "brian2_backend", "recording", "plasticity", "populations"):
        assert "bioplastic.rate.network" not in graph[f"bioplastic.rate.{low}"], low


def test_public_function_names_do_not_collide_with_modules():
    """``bioplastic.rate.simulate`` is the function (its module is ``dispatch``), so ``import`` tricks are not
    needed to reach either."""
    import importlib

    assert callable(bioplastic.rate.simulate) and bioplastic.rate.simulate.__module__ == "bioplastic.rate.dispatch"
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("bioplastic.rate.simulate")
    for name in bioplastic.rate.__all__:
        obj = getattr(bioplastic.rate, name)
        assert not (Path(bioplastic.rate.__file__).parent / f"{name}.py").exists() or not callable(obj), name
