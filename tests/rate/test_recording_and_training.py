"""Recordings as xarray, bad input and online training (the backend-comparison script: tests/analyses)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bioplastic.io import load, save
from bioplastic.rate import RateNetwork, evaluate, train_online


def _net(**kw):
    return RateNetwork.from_sizes([5, 4, 3], feedback_rank=2, dtype=torch.float64, **kw)


def test_recording_layout_and_roundtrip(tmp_path):
    net = _net(wiring="layerwise")
    x = np.random.default_rng(0).random((3, 5))
    rec = net.run(x, [0, 1, 2], presentation=0.01, dt=0.001, record=("rate", "apical"), record_every=2,
                  record_weights=["W_output", "b_hidden1", "P_hidden1"])
    assert rec.rate.dims == ("time", "neuron") and rec.sizes["time"] == 15
    np.testing.assert_allclose(rec.time.values, np.arange(0, 30, 2) * 0.001)
    assert rec.time.attrs["units"] == "s"
    assert list(dict.fromkeys(rec.population.values)) == ["hidden1", "output", "error", "feedback_hidden1"]
    assert rec.sizes["neuron"] == 4 + 3 + 3 + 2
    # apical exists only for hidden populations
    assert np.isnan(rec.apical.where(rec.population != "hidden1", drop=True)).all()
    assert np.isfinite(rec.apical.where(rec.population == "hidden1", drop=True)).all()
    assert rec.sizes["synapse"] == 3 * 4 + 4 + 3 * 2
    assert rec.weight_change.isel(time=0).values.tolist() == [0.0] * rec.sizes["synapse"]
    # no MultiIndex, attrs are simple: the file round-trips through bioplastic.io
    path = save(rec, tmp_path / "rec.nc")
    back = load(path)
    np.testing.assert_array_equal(back.rate.values, rec.rate.values)
    assert back.attrs["backend"] == "torch"
    assert list(back.stimulus_index.values[::5]) == [0, 1, 2]  # 5 samples per 10-step presentation


@pytest.mark.parametrize("stimuli, targets, message", [
    (np.ones((2, 4)), [0, 1], r"stimuli must have shape \(n_presentations, 5\)"),
    (np.full((2, 5), np.nan), [0, 1], "stimuli contains NaN or Inf"),
    (np.ones((2, 5)), [0, 3], r"class labels must lie in \[0, 3\)"),
    (np.ones((2, 5)), [0.5, 1], "class labels and must be integers"),
    (np.ones((2, 5)), np.ones((3, 3)), r"targets must be class labels of shape \(2,\) or rates"),
    (np.ones((2, 5)), np.full((2, 3), np.inf), "targets contains NaN or Inf"),
    (np.ones((0, 5)), None, "stimuli is empty"),
])
def test_bad_stimuli_and_targets_raise(stimuli, targets, message):
    with pytest.raises(ValueError, match=message):
        _net().run(stimuli, targets)


@pytest.mark.parametrize("kw, message", [
    (dict(presentation=0.0105, dt=0.001), "must be a whole number of time steps"),
    (dict(method="rk4"), "unknown integration method 'rk4'; allowed: 'exponential', 'euler'"),
    (dict(plasticity_delay=0.05), "plasticity_delay .* must be shorter than the presentation"),
    (dict(batch_size=3), r"multiple of batch_size \(3\)"),
    (dict(record=("voltage",)), "unknown recorded variable 'voltage'; allowed: 'rate', 'apical'"),
    (dict(record_weights=["W_x"]), "unknown recorded weight 'W_x'"),
    (dict(method="euler", dt=0.05, presentation=0.05), "forward Euler is unstable"),
    (dict(learn=True, targets=None), "learning needs targets"),
])
def test_bad_protocol_raises_and_leaves_weights(kw, message):
    net = _net()
    before = net.weights
    targets = kw.pop("targets", [0, 1])
    with pytest.raises(ValueError, match=message):
        net.run(np.ones((2, 5)), targets, **kw)
    for k, v in net.weights.items():
        assert torch.equal(v, before[k])


def test_predict_is_the_settled_output():
    net = _net(output_activation="linear")
    x = torch.rand(4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    out = net.predict(x, presentation=0.3, dt=0.001, batch_size=3)  # two batches, the last smaller
    w = net.weights
    expect = torch.relu(x @ w["W_hidden1"].T + w["b_hidden1"]) @ w["W_output"].T + w["b_output"]
    torch.testing.assert_close(out, expect, rtol=1e-8, atol=1e-10)


def _fit_digits(presentations, eval_every):
    from bioplastic.data import load_dataset

    digits = load_dataset("digits")
    x = digits.x_train.reshape(len(digits.x_train), -1).double() / 16
    xt = digits.x_test.reshape(len(digits.x_test), -1).double() / 16
    net = RateNetwork.from_sizes([64, 32, 10], feedback_rank=3, feedback_learning="oja", tau=0.002,
                                 tau_error=0.001, feedback_tau=0.001, learning_rate=200.0,
                                 feedback_learning_rate=200.0, dtype=torch.float64, seed=0)
    curve = train_online(net, x, digits.y_train, xt, digits.y_test, presentations=presentations,
                         eval_every=eval_every, presentation=0.02, dt=0.001, plasticity_delay=0.008,
                         n_train_eval=200)
    return net, curve, xt, digits.y_test


def test_train_online_learns_digits():
    net, curve, xt, yt = _fit_digits(400, 200)
    assert curve.test_accuracy.dims == ("step",) and list(curve.step.values) == [0, 200, 400]
    assert curve.test_accuracy.values[0] < 0.2  # chance level before learning
    assert curve.test_accuracy.values[-1] > 0.5  # far above chance (10 classes) after 400 digits
    assert curve.test_accuracy.values[-1] == pytest.approx(evaluate(net, xt, yt, presentation=0.02, dt=0.001))


def test_train_online_is_reproducible():
    net, curve, _, _ = _fit_digits(40, 20)
    net2, curve2, _, _ = _fit_digits(40, 20)
    np.testing.assert_array_equal(curve.test_accuracy.values, curve2.test_accuracy.values)
    for k in net.weights:
        assert torch.equal(net.weights[k], net2.weights[k])
