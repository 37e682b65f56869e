"""Stiff integration of the gradient flow (issue 11: Oja on Sigma^yy at r = 4 did not integrate).

Oja's feedback flow on the output covariance relaxes at rates up to ``2 feedback_lr_p lambda_max(Syy)`` per step
(1.3 at the paper's sizes) while the weights learn at ~0.1: the implicit methods (``method="Radau"``/``"BDF"``) and
the separate integration of ``P`` (``feedback_method``) must give the explicit integrator's trajectory where both
work, and the closed forms where they exist (Saxe et al. 2014 for BP; ``span P(t) = span(exp(lr Syy t) P0)`` for
Oja's subspace flow, Yan, Helmke & Moore 1994).
"""
import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp
from scipy.linalg import subspace_angles

from bioplastic import theory
from bioplastic.theory.dynamics import initial_state, make_rule_spec

S = dict(n_hidden=16, lr=0.015, feedback_lr=0.006, steps=1500, init_scale=0.05, record_every=100)
TIGHT = dict(rtol=1e-9, atol=1e-11)


@pytest.fixture(scope="module")
def teacher_s():
    return theory.random_teacher(16, 32, [5.0, 4.8, 4.5, 4.2], seed=0)


def _closed_form_angles(teacher, rank, steps, seed=0):
    """Principal angles (degrees, ascending) between span P(t) in closed form and the teacher's top-r modes."""
    spec = make_rule_spec("ldfa", n_outputs=teacher.n_outputs, n_hidden=S["n_hidden"], rank=rank,
                          feedback_learning="oja", lr=S["lr"], feedback_lr=S["feedback_lr"], oja_covariance="targets")
    p0 = initial_state(spec, teacher, S["n_hidden"], init_scale=S["init_scale"], seed=seed)["P"].numpy()
    syy = (teacher.weight @ teacher.weight.T).numpy()
    bases = theory.oja_subspace_closed_form(syy, p0, steps, S["feedback_lr"])
    return np.array([np.sort(np.degrees(subspace_angles(b, teacher.U[:, :rank].numpy()))) for b in bases])


def test_implicit_methods_give_the_saxe_closed_form():
    teacher = theory.random_teacher(6, 10, [4.0, 2.0, 1.0, 0.5], seed=2)
    kw = dict(n_hidden=6, lr=0.01, steps=2000, init="decoupled", init_scale=0.05, record_every=10)
    closed = theory.gradient_flow("bp", teacher, method="closed_form", **kw)
    for method in ("Radau", "BDF"):
        ode = theory.gradient_flow("bp", teacher, method=method, **kw)
        np.testing.assert_allclose(ode.mode_strength.values, closed.mode_strength.values, atol=1e-6)
        np.testing.assert_allclose(ode.loss.values, closed.loss.values, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("rank", [2, 4])
def test_separate_stiff_feedback_flow_equals_the_joint_explicit_flow_and_the_closed_form(teacher_s, rank):
    """The same ODE integrated two ways at rtol 1e-9 agrees to 1e-8 of the initial loss and 1e-6 in mode strength
    (a thousand times the local tolerance, for error growth); the feedback subspace of both follows
    span(exp(lr Syy t) P0) to 1e-4 degrees."""
    kw = dict(S, rank=rank, oja_covariance="targets", **TIGHT)
    joint = theory.gradient_flow("ldfa", teacher_s, feedback_learning="oja", method="RK45", **kw)
    split = theory.gradient_flow("ldfa", teacher_s, feedback_learning="oja", method="RK45", feedback_method="Radau",
                                 **kw)
    assert split.attrs["config"].count("Radau") >= 1
    loss0 = float(joint.loss.isel(step=0).squeeze())
    np.testing.assert_allclose(split.loss.values, joint.loss.values, rtol=0, atol=1e-8 * loss0)
    np.testing.assert_allclose(split.mode_strength.values, joint.mode_strength.values, rtol=0, atol=1e-6)
    closed = _closed_form_angles(teacher_s, rank, joint.step.values)
    for ds in (joint, split):
        angles = np.sort(ds.feedback_angle.squeeze("rule").values, axis=-1)
        np.testing.assert_allclose(angles, closed, rtol=0, atol=1e-4)
    assert closed[-1].max() < 1e-3  # P ends on the teacher's top-r output modes (the top eigenvectors of Syy)


def test_oja_subspace_closed_form_solves_ojas_flow_and_ends_on_the_top_eigenvectors():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((6, 6))
    c = a @ a.T
    p0 = np.linalg.qr(rng.standard_normal((6, 2)))[0]
    lr, times = 0.05, np.array([0.0, 1.0, 5.0, 20.0])

    def oja(_t, y):
        p = y.reshape(6, 2)
        return (lr * (c @ p - p @ (p.T @ c @ p))).ravel()

    sol = solve_ivp(oja, (0, times[-1]), p0.ravel(), method="DOP853", t_eval=times, rtol=1e-12, atol=1e-14)
    bases = theory.oja_subspace_closed_form(c, p0, times, lr)
    for basis, y in zip(bases, sol.y.T):
        assert np.degrees(subspace_angles(basis, y.reshape(6, 2))).max() < 1e-6
        np.testing.assert_allclose(basis.T @ basis, np.eye(2), atol=1e-12)
    top = np.linalg.eigh(c)[1][:, -2:]
    late = theory.oja_subspace_closed_form(c, p0, [1e4], lr)[0]
    assert np.degrees(subspace_angles(late, top)).max() < 1e-6


def test_feedback_method_only_where_p_evolves_on_its_own(teacher_s):
    with pytest.raises(ValueError, match="depends on P alone"):
        theory.gradient_flow("ldfa", teacher_s, feedback_learning="oja", feedback_method="Radau", **S)  # error cov.
    with pytest.raises(ValueError, match="depends on P alone"):
        theory.gradient_flow("ldfa", teacher_s, feedback_learning="normative", feedback_method="Radau", **S)
    with pytest.raises(ValueError, match="allowed: 'RK45', 'DOP853', 'LSODA', 'Radau', 'BDF'"):
        theory.gradient_flow("ldfa", teacher_s, feedback_learning="oja", oja_covariance="targets",
                             feedback_method="Euler", **S)
    with pytest.raises(ValueError, match="orthonormal"):
        theory.oja_subspace_closed_form(np.eye(3), np.ones((3, 1)), [1.0], 0.1)
    with pytest.raises(ValueError, match="symmetric"):
        theory.oja_subspace_closed_form(np.triu(np.ones((3, 3))), np.eye(3)[:, :1], [1.0], 0.1)
    with pytest.raises(ValueError, match="lr > 0"):
        theory.oja_subspace_closed_form(np.eye(3), np.eye(3)[:, :1], [1.0], 0.0)


@pytest.mark.slow
def test_paper_sizes_rank_4_oja_on_syy_integrates_both_ways():
    """The case that did not integrate (paper sizes, r = 4 = teacher rank): the separate stiff flow of P and the
    joint explicit flow agree (rtol 1e-6, as analyses/linear_theory.py) to 1e-4 of the initial loss."""
    from bioplastic.architectures import load_spec

    torch.set_num_threads(1)
    spec = load_spec("linear_teacher_student")
    teacher = theory.teacher_from_spec(spec)
    tr = spec["training"]
    kw = dict(rank=4, n_hidden=64, steps=int(tr["steps"]), lr=tr["lr"], feedback_lr=tr["feedback_lr"],
              init_scale=tr["init_scale"], seed=0, record_every=500, oja_covariance="targets", rtol=1e-6, atol=1e-8)
    joint = theory.gradient_flow("ldfa", teacher, feedback_learning="oja", **kw)
    split = theory.gradient_flow("ldfa", teacher, feedback_learning="oja", feedback_method="Radau", **kw)
    loss0 = float(joint.loss.isel(step=0).squeeze())
    np.testing.assert_allclose(split.loss.values, joint.loss.values, rtol=0, atol=1e-4 * loss0)
    assert float(split.mode_strength.isel(step=-1).min()) > 0.99


def test_feedback_subspace_survives_an_eigh_failure(monkeypatch):
    """LAPACK's eigh can fail on the low-rank Gram matrix F F^T (it did at the paper's sizes, r = 4): the top-r
    left singular subspace then comes from the SVD of F, the same subspace."""
    from bioplastic.theory import _results

    g = torch.Generator().manual_seed(0)
    f = torch.randn(12, 4, generator=g, dtype=torch.float64) @ torch.randn(4, 9, generator=g, dtype=torch.float64)
    reference = _results._top_left(f, 3).numpy()

    def failing(_):
        raise torch.linalg.LinAlgError("linalg.eigh: The algorithm failed to converge")

    monkeypatch.setattr(torch.linalg, "eigh", failing)
    fallback = _results._top_left(f, 3).numpy()
    assert np.degrees(subspace_angles(fallback, reference)).max() < 1e-6
    assert np.isnan(_results._top_left(f * float("nan"), 3).numpy()).all()
