"""Issue 15 case 4: with ``learning_rate_scaling="fan_in"`` a rate network whose units are duplicated follows
the original exactly, biases included, on both backends.

Duplicating every hidden unit (incoming weights, bias and apical feedback ``Q`` copied, outgoing weights
halved) gives the same currents everywhere. Learning keeps that identity only if every rate is right for the
width: the outgoing weights learn at eta / (2n), twice as many of them, so the output current moves as in the
original (eta / n t |r|^2); the output bias, a synapse from a constant input 1 with fan-in 1, must learn at eta
in both networks, so its rate (``bias_learning_rate``, default eta / 100) does not depend on the width. With the
old bias rate eta / n_pre the duplicated network's output bias learned at half the speed (the issue measured
outputs 5e-3 apart).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bioplastic.rate import RateNetwork

BASE = dict(feedback_rank=2, dtype=torch.float64, activation="tanh", output_activation="sigmoid",
            learning_rate=30.0, feedback_learning="fixed", tau=0.01, feedback_tau=0.005, tau_error=0.005, seed=3)
# biases as fast as the normalised weight rate: the identity is then most sensitive to a wrong bias rate
KW = {**BASE, "bias_learning_rate": 30.0}


def _duplicate_hidden(narrow: RateNetwork, wide: RateNetwork) -> None:
    """Give ``wide`` ([n_in, 2n, d]) the weights of ``narrow`` ([n_in, n, d]) with every hidden unit doubled."""
    w = narrow.weights
    q = [k for k in w if k.startswith("Q_")]
    wide.set_weights({
        **{k: v for k, v in w.items() if k.startswith("P")},
        "W_hidden1": torch.cat([w["W_hidden1"]] * 2), "b_hidden1": torch.cat([w["b_hidden1"]] * 2),
        "W_output": torch.cat([w["W_output"] / 2] * 2, dim=1), "b_output": w["b_output"],
        **{k: torch.cat([w[k]] * 2, dim=1) for k in q},
    }, strict=True)


def _population(rec, name):
    return rec.rate.isel(neuron=np.flatnonzero(rec.population.values == name)).values


def _data():
    g = torch.Generator().manual_seed(0)
    return torch.rand(3, 4, generator=g, dtype=torch.float64), torch.tensor([0, 2, 1])


@pytest.mark.parametrize("backend", ["torch", "brian2"])
@pytest.mark.parametrize("wiring", ["direct", "layerwise"])
def test_duplicated_hidden_units_follow_the_original_with_biases(backend, wiring):
    narrow = RateNetwork.from_sizes([4, 5, 3], wiring=wiring, **KW)
    wide = RateNetwork.from_sizes([4, 10, 3], wiring=wiring, **KW)
    _duplicate_hidden(narrow, wide)
    x, y = _data()
    kw = dict(presentation=0.03, dt=0.001, backend=backend)
    ra = narrow.run(x, y, **kw)
    rb = wide.run(x, y, **kw)
    np.testing.assert_allclose(_population(rb, "output"), _population(ra, "output"), rtol=0, atol=1e-12)
    h_a, h_b = _population(ra, "hidden1"), _population(rb, "hidden1")
    np.testing.assert_allclose(h_b[:, :5], h_a, rtol=0, atol=1e-12)
    np.testing.assert_allclose(h_b[:, 5:], h_a, rtol=0, atol=1e-12)
    a, b, start = narrow.weights, wide.weights, RateNetwork.from_sizes([4, 5, 3], wiring=wiring, **KW).weights
    for k in ("b_output", "b_hidden1"):
        np.testing.assert_allclose(b[k][: a[k].numel()], a[k], rtol=0, atol=1e-12, err_msg=k)
    np.testing.assert_allclose(b["W_hidden1"][:5], a["W_hidden1"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(2 * b["W_output"][:, :5], a["W_output"], rtol=0, atol=1e-12)
    # not vacuous: the biases and the outputs moved
    assert float((a["b_output"] - start["b_output"]).abs().max()) > 1e-2
    assert float((a["b_hidden1"] - start["b_hidden1"]).abs().max()) > 1e-3
    assert float(np.abs(_population(ra, "output")[-1] - _population(ra, "output")[0]).max()) > 1e-2


def test_duplicated_input_units_follow_the_original_with_biases():
    """Same identity when the input is duplicated (first-layer weights halved): before the fix the hidden
    biases learned at eta / 8 instead of eta / 4."""
    narrow = RateNetwork.from_sizes([4, 5, 3], **KW)
    wide = RateNetwork.from_sizes([8, 5, 3], **KW)
    w = narrow.weights
    wide.set_weights({**w, "W_hidden1": torch.cat([w["W_hidden1"] / 2] * 2, dim=1)}, strict=True)
    x, y = _data()
    ra = narrow.run(x, y, presentation=0.03, dt=0.001)
    rb = wide.run(torch.cat([x, x], dim=1), y, presentation=0.03, dt=0.001)
    np.testing.assert_allclose(rb.rate.values, ra.rate.values, rtol=0, atol=1e-12)
    np.testing.assert_allclose(wide.weights["b_hidden1"], narrow.weights["b_hidden1"], rtol=0, atol=1e-12)
    assert float((narrow.weights["b_hidden1"] - w["b_hidden1"]).abs().max()) > 1e-3


def test_bias_rates_are_width_independent_under_both_scalings():
    """A bias is a synapse from a constant input 1 (fan-in 1): bias_learning_rate (default eta) with either
    scaling (default eta / 100), never divided by a width; weights eta / n_pre."""
    for scaling in ("fan_in", "none"):
        for sizes in ([4, 5, 3], [40, 50, 3]):
            rates = RateNetwork.from_sizes(sizes, learning_rate_scaling=scaling, **BASE).synaptic_learning_rates()
            assert rates["b_hidden1"] == rates["b_output"] == pytest.approx(30.0 / 100)  # default eta / 100
            assert rates["W_output"] == (30.0 / sizes[1] if scaling == "fan_in" else 30.0)
            rates = RateNetwork.from_sizes(sizes, learning_rate_scaling=scaling, bias_learning_rate=0.5,
                                           **BASE).synaptic_learning_rates()
            assert rates["b_hidden1"] == rates["b_output"] == 0.5
    assert "b_output" not in RateNetwork.from_sizes([4, 5, 3], learn_biases=False, **BASE).synaptic_learning_rates()


def test_bias_learning_rate_round_trips_and_follows_the_schedule():
    from bioplastic.rate.training import _scaled_learning_rates

    net = RateNetwork.from_sizes([4, 5, 3], bias_learning_rate=0.25, **BASE)
    assert RateNetwork.from_dict(net.to_dict()).bias_learning_rate == 0.25
    assert RateNetwork.from_dict(RateNetwork.from_sizes([4, 5, 3], **BASE).to_dict()).bias_learning_rate is None
    with _scaled_learning_rates(net, 0.5):
        assert net.synaptic_learning_rates()["b_output"] == 0.125
    assert net.synaptic_learning_rates()["b_output"] == 0.25
    with pytest.raises(ValueError, match="bias_learning_rate"):
        RateNetwork.from_sizes([4, 5, 3], bias_learning_rate=-1.0, **BASE)


@pytest.mark.parametrize("backend", ["torch", "brian2"])
def test_duplication_identity_holds_with_the_default_bias_rate(backend):
    narrow = RateNetwork.from_sizes([4, 5, 3], **BASE)
    wide = RateNetwork.from_sizes([4, 10, 3], **BASE)
    _duplicate_hidden(narrow, wide)
    x, y = _data()
    ra = narrow.run(x, y, presentation=0.03, dt=0.001, backend=backend)
    rb = wide.run(x, y, presentation=0.03, dt=0.001, backend=backend)
    np.testing.assert_allclose(_population(rb, "output"), _population(ra, "output"), rtol=0, atol=1e-12)
    np.testing.assert_allclose(wide.weights["b_output"], narrow.weights["b_output"], rtol=0, atol=1e-12)


def test_duplication_breaks_without_fan_in_scaling():
    """Control: with unnormalised rates the doubled outgoing weights learn twice as fast; the identity fails."""
    kw = {**KW, "learning_rate_scaling": "none"}
    narrow = RateNetwork.from_sizes([4, 5, 3], **kw)
    wide = RateNetwork.from_sizes([4, 10, 3], **kw)
    _duplicate_hidden(narrow, wide)
    x, y = _data()
    ra = narrow.run(x, y, presentation=0.03, dt=0.001)
    rb = wide.run(x, y, presentation=0.03, dt=0.001)
    assert np.abs(_population(rb, "output") - _population(ra, "output")).max() > 1e-4
