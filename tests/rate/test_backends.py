"""The torch and brian2 backends agree on the same network, stimulus and seed.

Both backends integrate the same equations in the same order within a step (see
``bioplastic/rate/brian2_backend.py``), in float64, so they agree to rounding error: the stated tolerance is
``1e-10`` absolute on rates, apical inputs and weight changes (the values are O(0.1-1)).
"""
from __future__ import annotations

import brian2
import numpy as np
import pytest
import torch

from bioplastic.rate import RateNetwork

TOL = 1e-10


def _pair(wiring, rule, method, activation="tanh", output_activation="sigmoid"):
    net = RateNetwork.from_sizes([7, 6, 5, 3], feedback_rank=2, wiring=wiring, feedback_learning=rule,
                                 activation=activation, output_activation=output_activation, learning_rate=50.0,
                                 feedback_learning_rate=50.0, feedback_weight_decay=0.1, weight_decay=0.1, dtype=torch.float64,
                                 tau=0.01, feedback_tau=0.004, tau_error=0.003, seed=2)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 7, generator=g, dtype=torch.float64)
    y = torch.tensor([2, 0])
    kw = dict(presentation=0.015, dt=0.001, method=method, record=("rate", "apical"), record_weights=True,
              record_every=2, plasticity_delay=0.002)
    a, b = net.copy(), net.copy()
    ra = a.run(x, y, backend="torch", **kw)
    rb = b.run(x, y, backend="brian2", **kw)
    return net, a, b, ra, rb


@pytest.mark.parametrize("wiring, rule, method, act", [
    ("layerwise", "oja", "exponential", "tanh"),
    ("direct", "local", "euler", "relu"),
    ("layerwise", "kolen_pollack", "exponential", "softplus"),
])
def test_backends_agree_on_rates_and_weight_changes(wiring, rule, method, act):
    net, a, b, ra, rb = _pair(wiring, rule, method, act)
    assert ra.rate.dims == rb.rate.dims == ("time", "neuron")
    np.testing.assert_array_equal(ra.time.values, rb.time.values)
    assert list(ra.population.values) == list(rb.population.values)
    np.testing.assert_allclose(ra.rate.values, rb.rate.values, rtol=0, atol=TOL)
    np.testing.assert_allclose(ra.apical.values, rb.apical.values, rtol=0, atol=TOL)
    np.testing.assert_allclose(ra.weight_change.values, rb.weight_change.values, rtol=0, atol=TOL)
    for k in net.weights:
        change = a.weights[k] - net.weights[k]
        np.testing.assert_allclose(b.weights[k] - net.weights[k], change, rtol=0, atol=TOL, err_msg=k)
    # the comparison is not vacuous: every plastic weight moved, fixed ones did not
    for proj in net.projections:
        moved = float((a.weights[proj.name] - net.weights[proj.name]).abs().max())
        assert (moved > 1e-4) == proj.plastic, (proj.name, moved)
    assert float(np.abs(ra.rate.values).max()) > 0.05


def test_brian2_wrong_unit_in_run_parameters_raises():
    net = RateNetwork.from_sizes([4, 3, 2], feedback_rank=1, dtype=torch.float64)
    x = np.ones((1, 4))
    with pytest.raises(ValueError, match=r"dt must have units of second \(a time\), got 1. Hz"):
        net.run(x, [0], backend="brian2", dt=1 * brian2.Hz)
    with pytest.raises(ValueError, match=r"presentation must have units of second"):
        net.run(x, [0], backend="brian2", presentation=5 * brian2.mV)
    # right units are accepted and give the same result as floats in seconds
    r1 = net.copy().run(x, [0], backend="brian2", dt=0.5 * brian2.ms, presentation=5 * brian2.ms)
    r2 = net.copy().run(x, [0], backend="torch", dt=5e-4, presentation=5e-3)
    np.testing.assert_allclose(r1.rate.values, r2.rate.values, atol=TOL)


def test_brian2_leaves_no_global_state():
    before_target = brian2.prefs.codegen.target
    before_dt = brian2.defaultclock.dt
    net = RateNetwork.from_sizes([4, 3, 2], feedback_rank=1, dtype=torch.float64)
    net.run(np.ones((1, 4)), [1], backend="brian2", presentation=0.004, dt=0.001, codegen_target="numpy")
    assert brian2.prefs.codegen.target == before_target
    assert brian2.defaultclock.dt == before_dt
    # a failing run restores the preferences too
    with pytest.raises(ValueError):
        net.run(np.ones((2, 4)), [1, 0], backend="brian2", batch_size=2)
    assert brian2.prefs.codegen.target == before_target


def test_brian2_rejects_parallel_trials_and_unknown_target():
    net = RateNetwork.from_sizes([4, 3, 2], feedback_rank=1)
    with pytest.raises(ValueError, match="one trial at a time: batch_size must be 1"):
        net.run(np.ones((2, 4)), [1, 0], backend="brian2", batch_size=2)
    with pytest.raises(ValueError, match="unknown codegen_target 'cpp'; allowed: 'numpy', 'cython'"):
        net.run(np.ones((1, 4)), [1], backend="brian2", codegen_target="cpp")
    with pytest.raises(ValueError, match="unknown backend 'nest'; allowed: 'torch', 'brian2'"):
        net.run(np.ones((1, 4)), [1], backend="nest")


def test_brian2_without_learning_keeps_weights():
    net = RateNetwork.from_sizes([4, 3, 2], feedback_rank=1, dtype=torch.float64)
    before = net.weights
    rec = net.run(np.ones((2, 4)), backend="brian2", presentation=0.005, dt=0.001)
    assert rec.attrs["learn"] == 0
    for k, v in net.weights.items():
        assert torch.equal(v, before[k])


@pytest.mark.slow
def test_backends_agree_cython_target():
    pytest.importorskip("Cython")
    net = RateNetwork.from_sizes([5, 4, 3], feedback_rank=2, feedback_learning="local", dtype=torch.float64,
                                 learning_rate=10.0, feedback_learning_rate=10.0)
    x = np.random.default_rng(0).random((2, 5))
    a, b = net.copy(), net.copy()
    ra = a.run(x, [0, 2], presentation=0.01, dt=0.001)
    rb = b.run(x, [0, 2], presentation=0.01, dt=0.001, backend="brian2", codegen_target="cython")
    np.testing.assert_allclose(ra.rate.values, rb.rate.values, atol=TOL)
    for k in net.weights:
        np.testing.assert_allclose(a.weights[k], b.weights[k], atol=TOL)


def test_backends_agree_with_fixed_biases():
    net = RateNetwork.from_sizes([4, 3, 2], feedback_rank=1, dtype=torch.float64, learn_biases=False,
                                 learning_rate=20.0, feedback_learning="local", feedback_learning_rate=20.0)
    x = np.random.default_rng(1).random((2, 4))
    a, b = net.copy(), net.copy()
    a.run(x, [0, 1], presentation=0.01, dt=0.001)
    b.run(x, [0, 1], presentation=0.01, dt=0.001, backend="brian2")
    for k in net.weights:
        np.testing.assert_allclose(a.weights[k], b.weights[k], rtol=0, atol=TOL, err_msg=k)
        if k.startswith("b_"):
            assert torch.equal(a.weights[k], net.weights[k])
    assert float((a.weights["W_output"] - net.weights["W_output"]).abs().max()) > 1e-4
