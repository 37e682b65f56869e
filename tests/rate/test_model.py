"""Construction, validation and configuration of rate networks."""
from __future__ import annotations

import json

import brian2
import numpy as np
import pytest
import torch

from bioplastic.rate import FeedbackPopulation, Population, RateNetwork


def small(**kw):
    opts = dict(feedback_rank=2, dtype=torch.float64)
    opts.update(kw)
    return RateNetwork.from_sizes([6, 5, 4, 3], **opts)


def test_structure_direct_and_layerwise():
    net = small(wiring="direct")
    assert net.weight_shapes() == {
        "W_hidden1": (5, 6), "b_hidden1": (5,), "W_hidden2": (4, 5), "b_hidden2": (4,), "W_output": (3, 4),
        "b_output": (3,), "P": (3, 2), "Q_hidden1": (2, 5), "Q_hidden2": (2, 4)}
    assert net.recorded_populations == ("hidden1", "hidden2", "output", "error", "feedback")
    assert net.n_neurons == 5 + 4 + 3 + 3 + 2
    lw = small(wiring="layerwise")
    # hidden1's feedback units read hidden2's teaching signal; hidden2's read the output error
    assert lw.weight_shapes()["P_hidden1"] == (4, 2) and lw.weight_shapes()["P_hidden2"] == (3, 2)
    assert [g.source for g in lw.feedback_groups] == ["hidden2", "error"]
    assert lw.n_neurons == 5 + 4 + 3 + 3 + 2 + 2


def test_initial_feedback_weights():
    net = small(feedback_rank=3)
    p = net.weights["P"]
    # P has orthonormal columns (the fixed point of Oja's subspace rule)
    torch.testing.assert_close(p.T @ p, torch.eye(3, dtype=torch.float64))


def test_same_seed_same_weights_other_seed_differs():
    a, b, c = small(seed=3), small(seed=3), small(seed=4)
    for k in a.weights:
        torch.testing.assert_close(a.weights[k], b.weights[k], rtol=0, atol=0)
    assert not torch.equal(a.weights["W_hidden1"], c.weights["W_hidden1"])
    # float32 network: the same numbers, rounded
    f32 = small(seed=3, dtype=torch.float32)
    torch.testing.assert_close(f32.weights["W_hidden1"].double(), a.weights["W_hidden1"], rtol=1e-6, atol=1e-7)


def test_weights_property_is_a_copy():
    net = small()
    w = net.weights
    w["W_hidden1"].zero_()
    assert net.weights["W_hidden1"].abs().sum() > 0


@pytest.mark.parametrize("rank", [4, 7])
def test_rank_above_output_size_raises(rank):
    with pytest.raises(ValueError, match=r"feedback rank \d+ exceeds the output size d=3"):
        small(feedback_rank=rank)


def test_rank_above_hidden_width_raises():
    with pytest.raises(ValueError, match="exceeds the width 2 of hidden population 'hidden1'"):
        RateNetwork.from_sizes([6, 2, 10], feedback_rank=3)


@pytest.mark.parametrize("kw, message", [
    (dict(wiring="diagonal"), "unknown feedback wiring 'diagonal'; allowed: 'direct', 'layerwise'"),
    (dict(feedback_learning="normative"), "allowed: 'fixed', 'kolen_pollack', 'local', 'oja'"),
    (dict(activation="gelu"), "unknown activation of population 'hidden1' 'gelu'"),
    (dict(output_activation="relu"), "output population 'output'.*allowed: 'linear', 'sigmoid'"),
    (dict(feedback_rank=0), "feedback rank must be an integer >= 1"),
    (dict(tau=-0.01), "tau of population 'input' must be > 0"),
    (dict(tau=float("nan")), "must be finite"),
    (dict(learning_rate=-1.0), "learning_rate must be >= 0"),
])
def test_bad_options_raise(kw, message):
    with pytest.raises(ValueError, match=message):
        small(**kw)


@pytest.mark.parametrize("kw, message", [
    (dict(tau=10 * brian2.mV), r"tau of population 'input' must have units of second \(a time\), got 10. mV"),
    (dict(feedback_tau=2 * brian2.Hz), r"tau of the feedback population must have units of second"),
    (dict(learning_rate=0.5 * brian2.second), r"learning_rate must have units of 1/second"),
    (dict(tau_error=3 * brian2.metre), r"tau_error must have units of second"),
    (dict(feedback_weight_decay=0.1 * brian2.Hz), r"feedback weight_decay must have units of dimensionless"),
])
def test_brian2_quantity_with_wrong_unit_raises(kw, message):
    with pytest.raises(ValueError, match=message):
        small(**kw)


def test_brian2_quantities_with_right_units_are_converted():
    net = small(tau=20 * brian2.ms, learning_rate=2 * brian2.Hz, feedback_tau=500 * brian2.usecond)
    assert net.population("hidden1").tau == pytest.approx(0.02)
    assert net.learning_rate == pytest.approx(2.0)
    assert net.feedback.tau == pytest.approx(5e-4)


def test_reserved_and_duplicate_names():
    pops = [Population("input", 3), Population("error", 3), Population("output", 2, activation="linear")]
    with pytest.raises(ValueError, match="reserved"):
        RateNetwork(pops, FeedbackPopulation(1))
    pops = [Population("input", 3), Population("a", 3), Population("a", 2, activation="linear")]
    with pytest.raises(ValueError, match="unique"):
        RateNetwork(pops, FeedbackPopulation(1))
    with pytest.raises(ValueError, match="at least one hidden"):
        RateNetwork([Population("input", 3), Population("output", 2, activation="linear")], FeedbackPopulation(1))


def test_set_weights_validates_and_is_atomic():
    net = small()
    before = net.weights
    with pytest.raises(ValueError, match=r"weight 'P' must have shape \(3, 2\), got \(2, 3\)"):
        net.set_weights({"W_output": torch.zeros(3, 4), "P": torch.zeros(2, 3)})
    with pytest.raises(ValueError, match="unknown weight 'Z'"):
        net.set_weights({"Z": torch.zeros(1)})
    bad = torch.zeros(3, 4)
    bad[0, 0] = float("inf")
    with pytest.raises(ValueError, match="weight 'W_output' contains NaN or Inf"):
        net.set_weights({"W_output": bad})
    for k, v in net.weights.items():  # nothing changed by the failed calls
        assert torch.equal(v, before[k])
    new_p = torch.linalg.qr(torch.randn(3, 2, dtype=torch.float64))[0]
    net.set_weights({"P": new_p})
    assert torch.equal(net.weights["P"], new_p)
    net.reset_weights()
    assert torch.equal(net.weights["P"], before["P"])


def test_to_dict_roundtrip_and_json():
    net = small(wiring="layerwise", feedback_learning="local", feedback_weight_decay=0.1, seed=5)
    cfg = net.to_dict()
    again = RateNetwork.from_dict(json.loads(json.dumps(cfg)))
    assert again.to_dict() == cfg
    for k in net.weights:
        assert torch.equal(net.weights[k], again.weights[k])


def test_from_spec_shipped_files():
    from bioplastic.architectures.spec import available_specs, load_spec

    names = [n for n in available_specs() if n.startswith("rate_")]
    assert "rate_mnist" in names and "rate_small" in names
    for name in names:
        spec = load_spec(name)
        assert spec["architecture"] == "rate_network"
        net = RateNetwork.from_spec(name)
        assert [p.size for p in net.populations] == spec["sizes"]
        assert net.feedback.rank == spec["feedback"]["rank"]


def test_from_spec_rejects_unknown_keys(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('architecture = "rate_network"\nsizes = [4, 3, 2]\nwidth = 3\n[feedback]\nrank = 1\n')
    with pytest.raises(ValueError, match=r"unknown rate-network spec keys \['width'\]"):
        RateNetwork.from_spec(path)
    path.write_text('architecture = "mlp"\nsizes = [4, 3, 2]\n')
    with pytest.raises(ValueError, match="expected 'rate_network'"):
        RateNetwork.from_spec(path)


def test_copy_and_to_are_independent():
    net = small()
    c = net.copy()
    c.set_weights({"b_output": np.ones(3)})
    assert net.weights["b_output"].abs().sum() == 0
    f = net.to(dtype=torch.float32)
    assert f.weights["W_output"].dtype == torch.float32 and net.weights["W_output"].dtype == torch.float64
