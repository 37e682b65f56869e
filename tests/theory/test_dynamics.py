"""The rules' increments: autograd as the oracle, the paper's column-convention equations, rotation covariance."""
import dataclasses
import math

import pytest
import torch

from bioplastic import theory
from bioplastic.theory import dynamics as D

M, N, K, R = 5, 7, 6, 2
ALL = [("bp", None), ("fa", None), ("dfa", None), ("sign_symmetry", None), ("kolen_pollack", None)] + [
    ("ldfa", mode) for mode in theory.FEEDBACK_LEARNING] + [("direct_ldfa", "local"), ("direct_ldfa", "oja")]


def _setup(rule, mode, seed=0, **kw):
    teacher = theory.random_teacher(M, N, [3.0, 2.0, 1.0], seed=seed, noise_std=0.3)
    spec = D.make_rule_spec(rule, n_outputs=M, n_hidden=K, rank=R, feedback_learning=mode, lr=0.1,
                            feedback_lr=0.05, **kw)
    state = D.initial_state(spec, teacher, K, init_scale=0.7, seed=seed)
    g = torch.Generator().manual_seed(seed + 10)
    x = torch.randn(40, N, generator=g, dtype=torch.float64)
    y = x @ teacher.weight.T + 0.3 * torch.randn(40, M, generator=g, dtype=torch.float64)
    moments = (x.T @ x / 40, y.T @ x / 40, y.T @ y / 40)
    return teacher, spec, state, x, y, moments


def test_bp_increments_equal_autograd_gradient():
    _, spec, state, x, y, moments = _setup("bp", None)
    w1 = state["W1"].clone().requires_grad_()
    w2 = state["W2"].clone().requires_grad_()
    loss = 0.5 * ((x @ w1.T @ w2.T - y) ** 2).sum(dim=1).mean()
    loss.backward()
    inc = D.increments(spec, state, *moments)
    torch.testing.assert_close(inc["W1"], -spec.lr * w1.grad)
    torch.testing.assert_close(inc["W2"], -spec.lr * w2.grad)


@pytest.mark.parametrize("rule,mode", ALL)
def test_output_layer_always_gets_its_exact_gradient(rule, mode):
    _, spec, state, x, y, moments = _setup(rule, mode)
    bp = D.make_rule_spec("bp", n_outputs=M, n_hidden=K, rank=R, lr=spec.lr)
    torch.testing.assert_close(D.increments(spec, state, *moments)["W2"], D.increments(bp, state, *moments)["W2"])


@pytest.mark.parametrize("rule,mode", ALL)
def test_hidden_increment_is_error_through_the_feedback_operator(rule, mode):
    # grad_W1 = <g_in^T x> with g_in = e F, computed sample by sample (no moments).
    _, spec, state, x, y, moments = _setup(rule, mode)
    e = x @ (state["W2"] @ state["W1"]).T - y
    g_in = e @ D.feedback_operator(spec, state)
    torch.testing.assert_close(D.increments(spec, state, *moments)["W1"], -spec.lr * g_in.T @ x / x.shape[0])


def test_ldfa_with_pq_equal_w2_is_backprop():
    _, spec, state, x, y, moments = _setup("ldfa", "fixed")
    u, s, vh = torch.linalg.svd(state["W2"], full_matrices=False)
    full = D.make_rule_spec("ldfa", n_outputs=M, n_hidden=K, rank=min(M, K), feedback_learning="fixed", lr=spec.lr)
    st = {**state, "P": u * s, "Q": vh}
    bp = D.make_rule_spec("bp", n_outputs=M, n_hidden=K, lr=spec.lr)
    torch.testing.assert_close(D.increments(full, st, *moments)["W1"], D.increments(bp, st, *moments)["W1"])


def test_normative_is_gradient_of_factorisation_error_and_the_papers_column_equations():
    _, spec, state, x, y, moments = _setup("ldfa", "normative")
    p = (state["P"] + 0.3).clone().requires_grad_()
    q = (state["Q"] - 0.2).clone().requires_grad_()
    (0.5 * ((p @ q - state["W2"]) ** 2).sum()).backward()
    st = {**state, "P": p.detach(), "Q": q.detach()}
    inc = D.increments(spec, st, *moments)
    torch.testing.assert_close(inc["P"], -spec.feedback_lr * p.grad)
    torch.testing.assert_close(inc["Q"], -spec.feedback_lr * q.grad)
    # docs/theory.md, the paper's column convention: Q_c = Q^T (k, r), P_c = P^T (r, m), B = Q_c P_c
    qc, pc, w2t = q.detach().T, p.detach().T, state["W2"].T
    dqc = spec.feedback_lr * (w2t - qc @ pc) @ pc.T
    dpc = spec.feedback_lr * qc.T @ (w2t - qc @ pc)
    torch.testing.assert_close(inc["Q"].T, dqc)
    torch.testing.assert_close(inc["P"].T, dpc)


def test_local_rule_is_the_task_gradient_of_a_factorised_copy_of_w2():
    # grad_P = delta^T (h Q^T), grad_Q = (delta P)^T h equal autograd of the loss with W2 := P Q.
    _, spec, state, x, y, moments = _setup("ldfa", "local")
    p = state["P"].clone().requires_grad_()
    q = state["Q"].clone().requires_grad_()
    loss = 0.5 * ((x @ state["W1"].T @ (p @ q).T - y) ** 2).sum(dim=1).mean()
    loss.backward()
    st = {**state, "W2": (p @ q).detach()}
    inc = D.increments(spec, st, *moments)
    torch.testing.assert_close(inc["P"], -spec.feedback_lr * p.grad)
    torch.testing.assert_close(inc["Q"], -spec.feedback_lr * q.grad)


def test_q_only_and_oja_q_update_is_kolen_pollack_projected_by_p():
    for mode in ("q_only", "oja"):
        _, spec, state, x, y, moments = _setup("ldfa", mode)
        inc = D.increments(spec, state, *moments)
        bp = D.make_rule_spec("bp", n_outputs=M, n_hidden=K, lr=spec.feedback_lr)
        g2_step = D.increments(bp, state, *moments)["W2"]          # -flr * grad_W2
        torch.testing.assert_close(inc["Q"], state["P"].T @ g2_step)
        if mode == "q_only":
            assert "P" not in inc


def test_oja_p_is_stationary_on_the_top_error_subspace_and_matches_a_sample_covariance():
    teacher, spec, state, x, y, moments = _setup("ldfa", "oja")
    e = x @ (state["W2"] @ state["W1"]).T - y
    c = e.T @ e / x.shape[0]
    evals, evecs = torch.linalg.eigh(c)
    top = evecs[:, -R:]
    inc = D.increments(spec, {**state, "P": top}, *moments)
    assert float(inc["P"].abs().max()) < 1e-12
    # elsewhere: -flr * grad_P = flr (C_n P - P P^T C_n P), C_n = C / tr C
    cn = c / torch.trace(c)
    p = state["P"]
    torch.testing.assert_close(D.increments(spec, state, *moments)["P"],
                               spec.feedback_lr * (cn @ p - p @ (p.T @ cn @ p)))


def test_oja_flow_converges_to_the_top_principal_subspace():
    # With the forward weights frozen, Oja's subspace rule finds the top-r eigenvectors of C (compare eigh).
    teacher, spec, state, x, y, moments = _setup("ldfa", "oja", error_normalization="none")
    c = None
    st = dict(state)
    for _ in range(3000):
        inc = D.increments(spec, st, *moments)
        st["P"] = st["P"] + inc["P"]
    e = x @ (state["W2"] @ state["W1"]).T - y
    c = e.T @ e / x.shape[0]
    top = torch.linalg.eigh(c)[1][:, -R:]
    cos = torch.linalg.svdvals(torch.linalg.qr(st["P"])[0].T @ top)
    assert float(cos.min()) > 1 - 1e-6
    torch.testing.assert_close(st["P"].T @ st["P"], torch.eye(R, dtype=torch.float64), atol=1e-6, rtol=0)


@pytest.mark.parametrize("rule,mode", ALL)
def test_increments_are_covariant_under_the_teachers_rotation(rule, mode):
    # The reduction of the gradient flow: in coordinates W1 V, U^T W2, U^T B, U^T P (Q unchanged) with
    # Syx -> U^T Syx V, Sxx -> V^T Sxx V, Syy -> U^T Syy U, every rule's increments rotate the same way.
    teacher, spec, state, x, y, (sxx, syx, syy) = _setup(rule, mode)
    u, v = teacher.U, teacher.V
    rot = {"W1": state["W1"] @ v, "W2": u.T @ state["W2"]}
    for name in ("B", "P"):
        if name in state:
            rot[name] = u.T @ state[name]
    if "Q" in state:
        rot["Q"] = state["Q"]
    inc = D.increments(spec, state, sxx, syx, syy)
    # sign symmetry takes the sign synapse by synapse: it needs the basis of the neurons (output_basis)
    inc_rot = D.increments(spec, rot, v.T @ sxx @ v, u.T @ syx @ v, u.T @ syy @ u, output_basis=u)
    expected = {"W1": inc["W1"] @ v, "W2": u.T @ inc["W2"]}
    for name in ("B", "P"):
        if name in inc:
            expected[name] = u.T @ inc[name]
    if "Q" in inc:
        expected["Q"] = inc["Q"]
    assert set(expected) == set(inc_rot)
    for name in expected:
        torch.testing.assert_close(inc_rot[name], expected[name])


def test_sign_symmetry_is_not_rotation_covariant_without_the_neurons_basis():
    teacher, spec, state, x, y, (sxx, syx, syy) = _setup("sign_symmetry", None)
    u, v = teacher.U, teacher.V
    rot = {"W1": state["W1"] @ v, "W2": u.T @ state["W2"]}
    wrong = D.increments(spec, rot, v.T @ sxx @ v, u.T @ syx @ v, u.T @ syy @ u)
    assert not torch.allclose(wrong["W1"], D.increments(spec, state, sxx, syx, syy)["W1"] @ v)


def test_weight_decay_adds_lambda_times_weight():
    _, spec, state, x, y, moments = _setup("kolen_pollack", None, weight_decay=0.1, feedback_weight_decay=0.2)
    plain = D.make_rule_spec("kolen_pollack", n_outputs=M, n_hidden=K, rank=R, lr=0.1, feedback_lr=0.05)
    a, b = D.increments(spec, state, *moments), D.increments(plain, state, *moments)
    torch.testing.assert_close(a["W1"] - b["W1"], -0.1 * 0.1 * state["W1"])
    torch.testing.assert_close(a["B"] - b["B"], -0.05 * 0.2 * state["B"])


def test_rule_labels_and_rule_objects():
    assert D.rule_label("ldfa", "q_only") == "ldfa_q_only"
    assert D.rule_label("fa") == "fa"
    assert theory.parse_rule_label("direct_ldfa_oja") == ("direct_ldfa", "oja")
    from bioplastic import rules

    spec = D.make_rule_spec(rules.make("ldfa", rank=3, feedback_learning="local", feedback_weight_decay=0.1),
                            n_outputs=M, n_hidden=K)
    assert (spec.rule, spec.rank, spec.feedback_learning, spec.feedback_weight_decay) == ("ldfa", 3, "local", 0.1)
    assert math.isclose(spec.feedback_lr, spec.lr)  # the rule core's None means "the forward lr"


def test_oja_on_the_output_covariance_has_the_papers_form():
    # oja_covariance="targets": C = Syy (the paper's Eq. 8), raw by default: -flr grad_P = flr (Syy P - P P^T Syy P)
    _, spec, state, x, y, moments = _setup("ldfa", "oja", oja_covariance="targets")
    assert spec.oja_covariance == "targets" and spec.error_normalization == "none"
    syy, p = moments[2], state["P"]
    torch.testing.assert_close(D.increments(spec, state, *moments)["P"],
                               spec.feedback_lr * (syy @ p - p @ (p.T @ syy @ p)))
    with pytest.raises(ValueError, match="only to feedback_learning='oja'"):
        D.make_rule_spec("ldfa", n_outputs=M, n_hidden=K, rank=R, feedback_learning="local",
                         oja_covariance="targets")


def test_oja_on_syy_converges_to_the_top_eigenvectors_of_the_label_covariance_while_the_weights_learn():
    # Syy does not depend on the student: whatever W1, W2 do, span(P) -> top-r eigenvectors of Syy (eigh)
    teacher, spec, state, x, y, moments = _setup("ldfa", "oja", oja_covariance="targets")
    st = dict(state)
    for _ in range(3000):
        inc = D.increments(spec, st, *moments)
        st = {k: v + inc[k] if k in inc else v for k, v in st.items()}
    top = torch.linalg.eigh(moments[2])[1][:, -R:]
    cos = torch.linalg.svdvals(torch.linalg.qr(st["P"])[0].T @ top)
    assert float(cos.min()) > 1 - 1e-9
    torch.testing.assert_close(st["P"].T @ st["P"], torch.eye(R, dtype=torch.float64), atol=1e-8, rtol=0)


def test_q_only_decays_like_w2_by_default_and_q_converges_to_pt_w2():
    # Kolen-Pollack with the same rate and decay: Q - P^T W2 = (1 - lr lambda)^t (Q0 - P^T W2(0)) exactly
    _, spec, state, x, y, moments = _setup("ldfa", "q_only", weight_decay=0.3)
    assert spec.feedback_weight_decay == 0.3
    spec = dataclasses.replace(spec, feedback_lr=spec.lr)  # the same rate on both sides
    st = dict(state)
    gap0 = st["Q"] - st["P"].T @ st["W2"]
    for _ in range(200):
        inc = D.increments(spec, st, *moments)
        st = {k: v + inc[k] if k in inc else v for k, v in st.items()}
    torch.testing.assert_close(st["Q"] - st["P"].T @ st["W2"], (1 - spec.lr * 0.3) ** 200 * gap0, rtol=1e-8,
                               atol=1e-12)
