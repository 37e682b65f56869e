"""Bad input gets a clear error naming the problem (and nothing is computed on it)."""
import numpy as np
import pytest
import torch

from bioplastic import rules, theory

TEACHER = theory.random_teacher(5, 7, [2.0, 1.0, 0.5], seed=0)
RUNNERS = [theory.simulate, theory.gradient_flow]


@pytest.mark.parametrize("run", RUNNERS)
@pytest.mark.parametrize("rank", [0, 5, 6, -1, 2.5, True])
def test_rank_out_of_range(run, rank):
    with pytest.raises(ValueError, match="rank .* out of range"):
        run("ldfa", TEACHER, n_hidden=4, rank=rank, steps=5)


@pytest.mark.parametrize("run", RUNNERS)
def test_non_finite_teacher(run):
    bad = TEACHER.weight.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="teacher weight contains NaN or Inf"):
        run("bp", bad, n_hidden=4, steps=5)
    with pytest.raises(ValueError, match="zero map"):
        run("bp", np.zeros((3, 4)), n_hidden=2, steps=5)


@pytest.mark.parametrize("run", RUNNERS)
def test_mismatched_initial_weights(run):
    with pytest.raises(ValueError, match=r"initial_weights\['W1'\] has shape \(4, 6\), expected \(4, 7\)"):
        run("bp", TEACHER, n_hidden=4, steps=5, initial_weights={"W1": np.zeros((4, 6))})
    with pytest.raises(ValueError, match="initial_weights key"):
        run("bp", TEACHER, n_hidden=4, steps=5, initial_weights={"W3": np.zeros((4, 6))})
    with pytest.raises(ValueError, match="NaN"):
        run("bp", TEACHER, n_hidden=4, steps=5, initial_weights={"W2": np.full((5, 4), np.inf)})


def test_mismatched_or_non_finite_data():
    x, y = np.zeros((10, 7)), np.zeros((10, 5))
    with pytest.raises(ValueError, match=r"data x has shape \(10, 6\), expected \(N, 7\)"):
        theory.simulate("bp", TEACHER, n_hidden=4, steps=5, data=(np.zeros((10, 6)), y))
    with pytest.raises(ValueError, match=r"data y has shape \(9, 5\), expected \(10, 5\)"):
        theory.simulate("bp", TEACHER, n_hidden=4, steps=5, data=(x, np.zeros((9, 5))))
    with pytest.raises(ValueError, match="data x contains NaN"):
        theory.simulate("bp", TEACHER, n_hidden=4, steps=5, data=(np.full((10, 7), np.nan), y))
    with pytest.raises(ValueError, match="n_samples 11 does not match"):
        theory.simulate("bp", TEACHER, n_hidden=4, steps=5, data=(x, y), n_samples=11)


@pytest.mark.parametrize("kwargs,match", [
    (dict(rule="backprop"), "unknown rule 'backprop'; allowed: 'bp', 'fa'"),
    (dict(rule="ldfa", feedback_learning="hebb"), "unknown ldfa feedback_learning 'hebb'; allowed: 'fixed'"),
    (dict(rule="bp", feedback_learning="fixed"), "feedback_learning applies only"),
    (dict(rule="direct_ldfa", feedback_learning="normative"), "normative"),
    (dict(rule="ldfa", feedback_learning="oja", error_normalization="max"), "unknown error_normalization"),
    (dict(rule="bp", init="orthogonal"), "unknown init 'orthogonal'; allowed: 'random', 'decoupled'"),
    (dict(rule="sign_symmetry", sign_scale="rms"), "unknown sign_scale"),
    (dict(rule="bp", lr=-0.1), "lr must be > 0"),
    (dict(rule="bp", lr=float("nan")), "lr must be a finite number"),
    (dict(rule="ldfa", feedback_lr=0.0), "feedback_lr must be > 0"),
    (dict(rule="bp", weight_decay=-1.0), "weight_decay must be >= 0"),
    (dict(rule="bp", steps=0), "steps must be an integer >= 1"),
    (dict(rule="bp", n_hidden=0), "n_hidden must be an integer >= 1"),
    (dict(rule="bp", record_every=0), "record_every must be an integer >= 1"),
    (dict(rule="ldfa", feedback_learning="fixed", reinit_every=10), "reinit_every applies only"),
    (dict(rule="bp", init_scale=-1.0), "init_scale must be >= 0"),
    (dict(rule="bp", num_threads=0), "num_threads must be an integer >= 1"),
])
@pytest.mark.parametrize("run", RUNNERS)
def test_bad_options(run, kwargs, match):
    kwargs = {"n_hidden": 4, "steps": 5, **kwargs}
    rule = kwargs.pop("rule")
    with pytest.raises(ValueError, match=match):
        run(rule, TEACHER, **kwargs)


def test_simulation_specific_errors():
    with pytest.raises(ValueError, match="batch_size 20 larger than n_samples 10"):
        theory.simulate("bp", TEACHER, n_hidden=4, steps=5, n_samples=10, batch_size=20)
    with pytest.raises(ValueError, match="dtype"):
        theory.simulate("bp", TEACHER, n_hidden=4, steps=5, dtype=torch.int64)
    with pytest.raises(ValueError, match="error clamp"):
        theory.simulate(rules.make("ldfa", rank=2, error_clamp=1.0), TEACHER, n_hidden=4, steps=5)


def test_gradient_flow_specific_errors():
    with pytest.raises(ValueError, match="unknown method 'euler'"):
        theory.gradient_flow("bp", TEACHER, n_hidden=4, steps=5, method="euler")
    with pytest.raises(ValueError, match="closed_form"):
        theory.gradient_flow("fa", TEACHER, n_hidden=4, steps=5, method="closed_form", init="decoupled")
    with pytest.raises(ValueError, match="closed_form"):
        theory.gradient_flow("bp", TEACHER, n_hidden=4, steps=5, method="closed_form")  # random init
    with pytest.raises(ValueError, match="out of range|singular_values"):
        theory.saxe_mode_strength([1.0, -1.0], [0, 1], 0.1, 0.01)


def test_helpers_errors():
    with pytest.raises(ValueError, match="unknown rule label 'ldfa_hebb'"):
        theory.parse_rule_label("ldfa_hebb")
    with pytest.raises(ValueError, match="distinct"):
        theory.compare_rules(["bp", "bp"], TEACHER, n_hidden=4, steps=5)
    with pytest.raises(ValueError, match="unknown executor"):
        theory.compare_rules(["bp"], TEACHER, executor="euler", n_hidden=4, steps=5)
    with pytest.raises(ValueError, match="unknown teacher construction"):
        theory.teacher_from_spec({"n_inputs": 4, "n_outputs": 3, "teacher": {"construction": "magic"}})
    with pytest.raises(ValueError, match="lacks"):
        theory.teacher_from_spec({"n_inputs": 4})


def test_divergence_is_reported_not_raised(caplog):
    ds = theory.simulate("bp", TEACHER, n_hidden=4, steps=200, lr=5.0, record_every=50)
    assert not np.isfinite(ds.loss.isel(step=-1).values).all()
    assert "diverged" in caplog.text
