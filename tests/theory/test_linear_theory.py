"""The predictions of the linear theory (docs/theory.md), on small sizes that keep their reasons.

Setting S: n=32 inputs, k=16 hidden, m=16 outputs, a rank-4 teacher with the near-degenerate spectrum of the
paper's teacher (5, 4.8, 4.5, 4.2; the paper's is 25.6, 24.6, 23.2, 22.5), r=2 feedback units, lr*s about 0.07
(paper: 0.06), feedback lr / lr = 0.4 (paper: 1e-3 / 2.5e-3), small initial weights.
"""
import numpy as np
import pytest
import torch
import xarray as xr

from bioplastic import io, theory

S_SIZES = dict(n_hidden=16, lr=0.015, feedback_lr=0.006, steps=3000, init_scale=0.05, record_every=100)


@pytest.fixture(scope="module")
def teacher_s():
    return theory.random_teacher(16, 32, [5.0, 4.8, 4.5, 4.2], seed=0)


@pytest.fixture(scope="module")
def runs_s(teacher_s):
    r2 = theory.compare_rules(["bp", "ldfa_fixed", "ldfa_q_only", "ldfa_normative"], teacher_s, rank=2, **S_SIZES)
    r4 = theory.compare_rules(["bp", "ldfa_normative"], teacher_s, rank=4, **S_SIZES)
    return r2, r4


def _scalar(da):
    return float(da.squeeze())


def _final(ds, label):
    return float(ds.loss.sel(rule=label).isel(step=-1))


def _max_dev(a, b):
    return float(abs(a.mode_strength - b.mode_strength).max())


def test_bp_simulation_and_gradient_flow_agree_to_first_order_in_lr():
    # Gradient descent is the Euler scheme of the flow: from the same initial weights the mode strengths differ
    # by O(lr s), so halving lr (at the same lr * steps) halves the deviation. Tolerance: 0.1 at lr s = 0.06.
    teacher = theory.random_teacher(8, 12, [4.0, 3.0, 2.0, 1.0], seed=1)
    devs = []
    for lr in (0.015, 0.0075):
        kw = dict(n_hidden=8, lr=lr, steps=int(round(18 / lr)), init_scale=0.1, record_every=int(round(0.075 / lr)))
        devs.append(_max_dev(theory.simulate("bp", teacher, **kw), theory.gradient_flow("bp", teacher, **kw)))
    assert devs[0] < 0.1
    assert 0.4 < devs[1] / devs[0] < 0.6


def test_gradient_flow_equals_the_saxe_closed_form_and_bp_keeps_modes_decoupled():
    teacher = theory.random_teacher(6, 10, [4.0, 2.0, 1.0, 0.5], seed=2)
    kw = dict(n_hidden=6, lr=0.01, steps=2000, init="decoupled", init_scale=0.05, record_every=10)
    ode = theory.gradient_flow("bp", teacher, **kw)
    closed = theory.gradient_flow("bp", teacher, method="closed_form", **kw)
    assert _max_dev(ode, closed) < 1e-6
    np.testing.assert_allclose(ode.loss.values, closed.loss.values, rtol=1e-6, atol=1e-8)
    assert float(ode.cross_talk_total.max()) < 1e-9
    sim = theory.simulate("bp", teacher, **kw)
    assert float(sim.cross_talk_total.max()) < 1e-9           # decoupled stays decoupled in discrete time too
    # the discrete map u <- u (1 + lr (s - u))^2 per mode, iterated exactly
    s = teacher.singular_values[:4].numpy()
    u = np.full(4, 0.05 ** 2)
    for _ in range(600):
        u = u * (1 + 0.01 * (s - u)) ** 2
    np.testing.assert_allclose(sim.mode_strength.sel(step=600).values[0], u / s, rtol=1e-9)


def test_modes_are_learned_in_order_of_singular_value():
    teacher = theory.random_teacher(8, 12, [4.0, 2.0, 1.0, 0.5], seed=3)
    kw = dict(n_hidden=8, lr=0.02, steps=3000, init_scale=0.02, record_every=5)
    for init in ("random", "decoupled"):
        ds = theory.gradient_flow("bp", teacher, init=init, **kw)
        strength = ds.mode_strength.isel(rule=0)
        t_half = [int(ds.step[int(np.argmax(strength.sel(mode=j).values >= 0.5))]) for j in range(4)]
        assert all(np.diff(t_half) > 0), t_half
        assert float(strength.isel(step=-1).min()) > 0.99
        if init == "decoupled":  # Saxe et al. 2014: u = s/2 at t = ln(s/u0 - 1) / (2 s lr)
            s = teacher.singular_values[:4].numpy()
            expected = np.log(s / 0.02 ** 2 - 1) / (2 * s * 0.02)
            np.testing.assert_allclose(t_half, expected, atol=5.01)


def test_bp_loss_goes_to_the_teacher_floor():
    # Noiseless teacher: the floor is 0; what is left at the end is the product of the untrained initial
    # weights, O(init_scale^4).
    teacher = theory.random_teacher(8, 12, [4.0, 3.0, 2.0, 1.0], seed=4)
    ds = theory.simulate("bp", teacher, n_hidden=8, lr=0.02, steps=2000, init_scale=1e-3)
    assert _scalar(ds.loss.isel(step=-1)) < 1e-9 * _scalar(ds.loss.isel(step=0))
    # Noisy teacher on a finite training set: gradient descent reaches the least-squares solution, so the final
    # training loss is the least-squares residual and the population loss 0.5 ||M_ols - W*||^2 + floor.
    noisy = theory.random_teacher(4, 6, [3.0, 2.0, 1.5, 1.0], seed=5, noise_std=0.2)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 6, generator=g, dtype=torch.float64)
    y = x @ noisy.weight.T + 0.2 * torch.randn(50, 4, generator=g, dtype=torch.float64)
    ds = theory.simulate("bp", noisy, n_hidden=6, lr=0.05, steps=4000, init_scale=0.3, data=(x, y))
    m_ols = torch.linalg.lstsq(x, y).solution.T
    residual = 0.5 * float(((x @ m_ols.T - y) ** 2).sum(dim=1).mean())
    pop = 0.5 * float(((m_ols - noisy.weight) ** 2).sum()) + noisy.floor
    assert _scalar(ds.train_loss.isel(step=-1)) == pytest.approx(residual, rel=1e-6)
    assert _scalar(ds.loss.isel(step=-1)) == pytest.approx(pop, rel=1e-6)
    assert _scalar(ds.loss.isel(step=-1)) > noisy.floor == float(ds.floor)


def test_fixed_and_q_only_feedback_stall_far_above_backprop(runs_s, teacher_s):
    r2, _ = runs_s
    bp, initial = _final(r2, "bp"), float(r2.loss.isel(rule=0, step=0))
    for label in ("ldfa_fixed", "ldfa_q_only"):
        loss = r2.loss.sel(rule=label)
        final, half = float(loss.isel(step=-1)), float(loss.sel(step=1500))
        assert final > 0.3 * initial and final > 1e4 * bp
        assert (half - final) / half < 0.1  # a plateau: < 10 % further decrease over the second half
    # With negligible initial weights W1 only moves inside the r-dim row space of the feedback, so W2 W1 has rank
    # <= r and the loss cannot go below the best rank-r loss (Eckart-Young).
    tiny = theory.compare_rules(["ldfa_fixed", "ldfa_q_only"], teacher_s, rank=2, **{**S_SIZES, "init_scale": 1e-3})
    assert float(tiny.loss.isel(step=-1).min()) >= 0.999 * teacher_s.rank_r_loss(2)


def test_normative_feedback_ends_close_to_backprop_far_below_fixed_and_aligned_with_w2(runs_s):
    r2, _ = runs_s
    initial = float(r2.loss.isel(rule=0, step=0))
    normative, fixed = _final(r2, "ldfa_normative"), _final(r2, "ldfa_fixed")
    assert normative < 1e-3 * initial and normative < 0.01 * fixed
    assert normative < 0.01 * float(r2.rank_r_loss.sel(rule="ldfa_normative"))  # below the rank-r reference
    # P Q tracks the best rank-r approximation of W2: its subspace is W2's top-r left singular subspace
    assert float(r2.feedback_w2_angle.sel(rule="ldfa_normative").isel(step=-1).max()) < 1.0
    assert float(r2.feedback_w2_angle.sel(rule="ldfa_fixed").isel(step=-1).max()) > 30.0


def test_normative_feedback_aligns_with_the_teachers_leading_modes_as_they_are_learned():
    # A separated spectrum, so that "the teacher's top-2 output modes" is well defined.
    teacher = theory.random_teacher(16, 32, [4.0, 3.0, 2.0, 1.0], seed=0)
    ds = theory.compare_rules(["ldfa_fixed", "ldfa_normative"], teacher, executor="gradient_flow", rank=2,
                              **{**S_SIZES, "steps": 1200, "record_every": 20})
    # while modes 1-2 are being learned (both above 0.5) the feedback subspace comes within 10 degrees of the
    # teacher's top-2 output modes; fixed random feedback stays far (later the normative feedback moves on to the
    # next modes, see docs/theory.md)
    learning = ds.mode_strength.sel(rule="ldfa_normative", mode=[0, 1]).min("mode").values > 0.5
    assert learning.any()
    worst = ds.feedback_angle.max("direction")
    assert float(worst.sel(rule="ldfa_normative")[learning].min()) < 10.0
    assert float(worst.sel(rule="ldfa_fixed").min()) > 30.0


def test_with_rank_at_least_the_teachers_normative_reaches_backprops_loss(runs_s):
    _, r4 = runs_s
    bp, normative = _final(r4, "bp"), _final(r4, "ldfa_normative")
    initial = float(r4.loss.isel(rule=0, step=0))
    assert bp < 1e-6 * initial
    assert normative <= 1.5 * bp
    assert float(r4.feedback_angle.sel(rule="ldfa_normative").isel(step=-1).max()) < 1.0


def test_same_seed_same_result_and_the_dataset_follows_the_conventions(tmp_path):
    teacher = theory.random_teacher(5, 7, [2.0, 1.0], seed=0)
    kw = dict(n_hidden=4, steps=50, lr=0.05, rank=1, feedback_learning="oja", n_samples=100, batch_size=10)
    a, b = theory.simulate("ldfa", teacher, **kw), theory.simulate("ldfa", teacher, **kw)
    xr.testing.assert_identical(a, b)
    c = theory.simulate("ldfa", teacher, **{**kw, "seed": 1})
    assert not np.allclose(a.loss.values, c.loss.values)
    assert set(a.dims) == {"rule", "step", "mode", "direction"}
    assert a.rule.values.tolist() == ["ldfa_oja"] and a.step.values[-1] == 50
    for value in a.attrs.values():
        assert isinstance(value, (str, int, float))
    assert io.config_of(a)["rule"]["feedback_learning"] == "oja"
    path = io.save(a, tmp_path / "sim.nc")
    xr.testing.assert_allclose(io.load(path), a)


@pytest.mark.parametrize("n_samples,batch_size", [(None, 32), (400, 40), (400, None)])
def test_sampled_data_reaches_the_noiseless_teacher(n_samples, batch_size):
    # A noiseless teacher is realisable: every batch has the same minimiser, so SGD converges like full GD.
    teacher = theory.random_teacher(5, 8, [3.0, 2.0, 1.0], seed=6)
    ds = theory.simulate("bp", teacher, n_hidden=6, lr=0.03, steps=1500, init_scale=0.05, n_samples=n_samples,
                         batch_size=batch_size)
    assert _scalar(ds.loss.isel(step=-1)) < 1e-6 * _scalar(ds.loss.isel(step=0))
    assert "train_loss" in ds


def test_feedback_alignment_and_kolen_pollack_learn_with_full_rank_feedback():
    teacher = theory.random_teacher(8, 12, [4.0, 3.0, 2.0, 1.0], seed=7)
    ds = theory.compare_rules(["bp", "fa", "kolen_pollack", "sign_symmetry"], teacher, n_hidden=8, lr=0.02,
                              steps=3000, init_scale=0.1, record_every=300,
                              per_rule={"kolen_pollack": {"weight_decay": 0.01, "feedback_weight_decay": 0.01}})
    final = ds.loss.isel(step=-1)
    assert float(final.max()) < 1e-3 * float(ds.loss.isel(rule=0, step=0))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_same_code_on_cuda_gives_the_cpu_result():
    teacher = theory.random_teacher(8, 12, [4.0, 3.0, 2.0, 1.0], seed=8)
    kw = dict(n_hidden=8, lr=0.02, steps=500, rank=2, record_every=50)
    for rule, mode in (("bp", None), ("ldfa", "normative"), ("ldfa", "oja")):
        cpu = theory.simulate(rule, teacher, feedback_learning=mode, **kw)
        gpu = theory.simulate(rule, teacher, feedback_learning=mode, device="cuda", **kw)
        np.testing.assert_allclose(gpu.loss.values, cpu.loss.values, rtol=1e-6)
