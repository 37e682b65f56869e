"""Continuous-time properties of the torch backend: fixed points, time-step independence, batching, Oja."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bioplastic.rate import RateNetwork, simulate


def _net(**kw):
    opts = dict(feedback_rank=2, dtype=torch.float64, activation="tanh", output_activation="sigmoid",
                tau=0.01, feedback_tau=0.005, tau_error=0.005, seed=1)
    opts.update(kw)
    return RateNetwork.from_sizes(kw.pop("sizes", [8, 7, 6, 4]), **{k: v for k, v in opts.items() if k != "sizes"})


def _data(n=3, n_in=8, d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, n_in, generator=g, dtype=torch.float64), torch.randint(0, d, (n,), generator=g)


@pytest.mark.parametrize("method", ["exponential", "euler"])
def test_settled_rates_are_the_feedforward_fixed_point(method):
    """After many time constants, r_l = f(W_l r_{l-1} + b_l), e = y - r_out, z = t_src P, a = z Q."""
    net = _net(wiring="layerwise")
    x, y = _data(1)
    rec = net.run(x, y, learn=False, presentation=0.4, dt=0.001, method=method, record=("rate", "apical"))
    last = rec.isel(time=-1)
    w = net.weights
    h1 = torch.tanh(w["W_hidden1"] @ x[0] + w["b_hidden1"])
    h2 = torch.tanh(w["W_hidden2"] @ h1 + w["b_hidden2"])
    out = torch.sigmoid(w["W_output"] @ h2 + w["b_output"])
    err = torch.nn.functional.one_hot(y, 4)[0].double() - out
    z2 = err @ w["P_hidden2"]
    a2 = z2 @ w["Q_hidden2"]
    t2 = (1 - h2 ** 2) * a2
    z1 = t2 @ w["P_hidden1"]
    a1 = z1 @ w["Q_hidden1"]
    expect = {"hidden1": h1, "hidden2": h2, "output": out, "error": err, "feedback_hidden1": z1,
              "feedback_hidden2": z2}
    for pop, value in expect.items():
        got = last.rate.where(last.population == pop, drop=True).values
        np.testing.assert_allclose(got, value.numpy(), rtol=1e-6, atol=1e-9, err_msg=pop)
    for pop, value in {"hidden1": a1, "hidden2": a2}.items():
        got = last.apical.where(last.population == pop, drop=True).values
        np.testing.assert_allclose(got, value.numpy(), rtol=1e-6, atol=1e-9, err_msg=pop)


def test_exponential_integration_is_exact_for_a_constant_drive():
    """One leaky unit driven by a constant: r(t) = f(I) (1 - exp(-t/tau)) at every step, any dt."""
    net = _net()
    x, _ = _data(1)
    rec = net.run(x, learn=False, presentation=0.05, dt=0.0025, method="exponential", record=("rate",))
    w = net.weights
    drive = torch.tanh(w["W_hidden1"] @ x[0] + w["b_hidden1"]).numpy()
    t = rec.time.values[:, None]
    got = rec.rate.where(rec.population == "hidden1", drop=True).values
    np.testing.assert_allclose(got, drive[None] * -np.expm1(-t / 0.01), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("method, wiring, rule", [
    ("exponential", "layerwise", "oja"),
    ("exponential", "direct", "local"),
    ("euler", "layerwise", "kolen_pollack"),
])
def test_halving_dt_changes_total_weight_change_by_less_than_one_percent(method, wiring, rule):
    """Learning rates are per unit time, so the weight change over a fixed duration (4 presentations of
    0.1 s, plasticity on throughout, transients included) converges as dt -> 0. At dt = 0.25 ms (tau/40 for
    tau = 10 ms; tau/20 for the 5 ms error and feedback units) halving dt changes it by < 1%, and the
    scheme is first-order: the change from halving dt halves when dt is halved again."""
    x, y = _data(4)
    changes = []
    for dt in (0.0005, 0.00025, 0.000125):
        net = _net(wiring=wiring, feedback_learning=rule, learning_rate=2.0, feedback_learning_rate=2.0,
                   feedback_weight_decay=0.1)
        before = net.weights
        net.run(x, y, presentation=0.1, dt=dt, method=method, record=())
        changes.append({k: net.weights[k] - before[k] for k in before})
    checked = 0
    for k, reference in changes[2].items():
        if reference.abs().max() == 0:
            continue  # fixed feedback weights
        checked += 1
        rel_coarse = float((changes[0][k] - changes[1][k]).norm() / reference.norm())
        rel_fine = float((changes[1][k] - changes[2][k]).norm() / reference.norm())
        assert rel_fine < 0.01, (k, rel_fine)
        assert 1.6 < rel_coarse / rel_fine < 2.4, (k, rel_coarse, rel_fine)  # first order in dt
    assert checked >= 6
    assert float(changes[2]["W_hidden1"].norm()) > 1e-3  # the weights did move


def test_parallel_trials_equal_separate_runs_without_learning():
    x, _ = _data(4)
    net = _net()
    both = net.run(x, learn=False, presentation=0.02, dt=0.001, batch_size=2)
    assert both.rate.dims == ("trial", "time", "neuron")
    for k in range(2):
        alone = net.run(x[k::2], learn=False, presentation=0.02, dt=0.001)
        np.testing.assert_allclose(both.rate.isel(trial=k).values, alone.rate.values, rtol=1e-12, atol=1e-14)


def test_batched_learning_is_the_trial_mean_of_the_update():
    """With learning rate so small that the state does not feel it, the batch update is the mean."""
    x, y = _data(2)
    kw = dict(presentation=0.02, dt=0.001, plasticity_delay=0.0)
    base = _net(learning_rate=1e-6, feedback_learning="fixed")
    both = base.copy()
    both.run(x, y, batch_size=2, **kw)
    mean = {}
    for k in range(2):
        one = base.copy()
        one.run(x[k:k + 1], y[k:k + 1], **kw)
        for name, v in one.weights.items():
            mean[name] = mean.get(name, 0) + (v - base.weights[name]) / 2
    for name in ("W_hidden1", "W_output", "b_hidden2"):
        torch.testing.assert_close(both.weights[name] - base.weights[name], mean[name], rtol=1e-5, atol=1e-15)


def test_oja_rule_finds_the_principal_subspace_of_the_error():
    """Oja's subspace rule (Oja 1989): the columns of P converge to an orthonormal basis of the top-r
    eigenvectors of the second-moment matrix of the feedback units' input; checked against numpy's eigh.
    (Discrete-time Oja is stable for ``eta_fb * dt * |t|^2 << 1``; here about 0.05.)"""
    d, r = 5, 2
    net = RateNetwork.from_sizes([3, 4, d], feedback_rank=r, feedback_learning="oja", output_activation="linear",
                                 learning_rate=0.0, feedback_learning_rate=5.0, dtype=torch.float64, seed=0,
                                 tau=0.002, tau_error=0.002, feedback_tau=0.002)
    g = torch.Generator().manual_seed(3)
    # targets with a strongly anisotropic covariance; the output is the same for every stimulus
    mix = torch.diag(torch.tensor([3.0, 2.0, 0.5, 0.3, 0.2], dtype=torch.float64))
    rot = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))[0]
    y = torch.randn(1000, d, generator=g, dtype=torch.float64) @ mix @ rot.T
    x = torch.zeros(1000, 3, dtype=torch.float64)
    out = net.predict(x[:1])[0]
    err = y - out  # settled error population, one row per presentation
    second_moment = (err.T @ err / len(err)).numpy()
    evals, evecs = np.linalg.eigh(second_moment)
    top = evecs[:, -r:]
    net.run(x, y, presentation=0.02, dt=0.001, plasticity_delay=0.012, record=())
    p = net.weights["P"].numpy()
    np.testing.assert_allclose(p.T @ p, np.eye(r), atol=0.05)  # orthonormal
    cosines = np.linalg.svd(top.T @ np.linalg.qr(p)[0], compute_uv=False)
    largest_angle = math.degrees(math.acos(min(1.0, cosines.min())))
    assert largest_angle < 10.0, largest_angle
    # starting point was far from it (the test can fail)
    p0 = net.initial_weights()["P"].numpy()
    cos0 = np.linalg.svd(top.T @ p0, compute_uv=False)
    assert math.degrees(math.acos(min(1.0, cos0.min()))) > 30.0


def test_simulate_function_equals_method():
    x, y = _data(2)
    a, b = _net(), _net()
    ra = simulate(a, x, y, presentation=0.01, dt=0.001)
    rb = b.run(x, y, presentation=0.01, dt=0.001)
    np.testing.assert_array_equal(ra.rate.values, rb.rate.values)


def test_gpu_matches_cpu():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    x, y = _data(2)
    cpu = _net()
    gpu = cpu.to("cuda")
    rc = cpu.run(x, y, presentation=0.01, dt=0.001)
    rg = gpu.run(x, y, presentation=0.01, dt=0.001)
    np.testing.assert_allclose(rc.rate.values, rg.rate.values, atol=1e-10)


@pytest.mark.parametrize("scaling, same", [("fan_in", True), ("none", False)])
def test_fan_in_scaling_makes_learning_independent_of_input_width(scaling, same):
    """Duplicating every input unit and halving its weights gives the same network; with fan-in normalised
    learning rates (eta / n_pre) it also learns identically (dI = eta/n * t |x|^2 is unchanged), with
    unnormalised rates the wider network learns twice as fast in its first layer. (Biases fixed: their
    rate, eta / n_pre, is not width-invariant.)"""
    kw = dict(feedback_rank=2, dtype=torch.float64, learning_rate=3.0, feedback_learning="fixed",
              learning_rate_scaling=scaling, seed=4, learn_biases=False)
    narrow = RateNetwork.from_sizes([4, 5, 3], **kw)
    wide = RateNetwork.from_sizes([8, 5, 3], **kw)
    w = narrow.weights
    wide.set_weights({**{k: v for k, v in w.items() if k != "W_hidden1"},
                      "W_hidden1": torch.cat([w["W_hidden1"] / 2, w["W_hidden1"] / 2], dim=1)})
    x = torch.rand(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 2, 1])
    ra = narrow.run(x, y, presentation=0.03, dt=0.001)
    rb = wide.run(torch.cat([x, x], dim=1), y, presentation=0.03, dt=0.001)
    assert np.allclose(ra.rate.values, rb.rate.values, rtol=0, atol=1e-12) == same
    assert float(np.abs(ra.rate.values[-1] - ra.rate.values[0]).max()) > 0.01
