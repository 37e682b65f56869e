"""DRTP (Frenkel, Lefebvre & Bol 2021, Front. Neurosci. 15:629892): every layer sends ``y* D`` below."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import bioplastic
from bioplastic.rules import make

D_OUT = 3


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 4), nn.Tanh(), nn.Linear(4, D_OUT)).double()


def test_registry_options_and_learned_factors():
    rule = make("drtp")
    assert rule.name == "drtp" and "drtp" in bioplastic.rules.RULE_NAMES
    assert rule.direct and rule.needs_targets and rule.reads_targets and not rule.learns_feedback
    assert rule.feedback_names == ("D",) and not rule.learns("D")
    assert rule.feedback_shapes((4, 6), d=D_OUT, input_shape=(6,)) == {"D": (D_OUT, 6)}
    assert bioplastic.rules.from_dict(rule.to_dict()) == rule
    with pytest.raises(ValueError, match="allowed: \\(none\\)"):
        make("drtp", rank=3)


@pytest.mark.parametrize("soft", [False, True])
def test_gradients_equal_the_closed_form(soft):
    # Hand computation, PyTorch convention: layer l gets delta_l = (Y D_{l+1}) * f'(a_l) from the layer above,
    # the output layer its exact error e = (softmax - Y) / N; grad_W = delta^T h; the input gets Y D_1.
    model = bioplastic.convert(_mlp(), "drtp", seed=0)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(7, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, D_OUT, (7,), generator=gen)
    if soft:  # target vectors are used as they are
        targets = torch.softmax(torch.randn(7, D_OUT, generator=gen, dtype=torch.float64), 1)
        y = targets
    else:
        targets, y = labels, F.one_hot(labels, D_OUT).double()
    out = model(x)
    bioplastic.nn.set_targets(model, targets)
    F.cross_entropy(out, labels).backward()

    l1, l2, l3 = model[0], model[2], model[4]
    with torch.no_grad():
        h1 = torch.tanh(x @ l1.weight.T + l1.bias)
        h2 = torch.tanh(h1 @ l2.weight.T + l2.bias)
        e = (torch.softmax(h2 @ l3.weight.T + l3.bias, 1) - F.one_hot(labels, D_OUT).double()) / 7
        delta2 = (y @ l3.D) * (1 - h2 ** 2)
        delta1 = (y @ l2.D) * (1 - h1 ** 2)
    torch.testing.assert_close(x.grad, y @ l1.D, rtol=0, atol=1e-12)
    torch.testing.assert_close(l3.weight.grad, e.T @ h2, rtol=0, atol=1e-12)
    torch.testing.assert_close(l2.weight.grad, delta2.T @ h1, rtol=0, atol=1e-12)
    torch.testing.assert_close(l2.bias.grad, delta2.sum(0), rtol=0, atol=1e-12)
    torch.testing.assert_close(l1.weight.grad, delta1.T @ x.detach(), rtol=0, atol=1e-12)
    assert all(layer.D.grad is None for layer in (l1, l2, l3))


def test_conv_layer_receives_the_projected_target():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(3 * 4 * 4, D_OUT)).double()
    x = torch.randn(5, 2, 4, 4, dtype=torch.float64)
    model = bioplastic.convert(net, "drtp", seed=0, example_input=x)
    assert model[0].D.shape == (D_OUT, 2, 4, 4) and model[3].D.shape == (D_OUT, 3 * 4 * 4)
    labels = torch.tensor([0, 2, 1, 1, 0])
    x.requires_grad_()
    out = model(x)
    bioplastic.nn.set_targets(model, labels)
    F.cross_entropy(out, labels).backward()
    y = F.one_hot(labels, D_OUT).double()
    torch.testing.assert_close(x.grad, (y @ model[0].D.reshape(D_OUT, -1)).reshape(x.shape), rtol=0, atol=1e-12)


def test_backward_without_targets_raises_naming_set_targets():
    model = bioplastic.convert(_mlp(), "drtp", seed=0)
    out = model(torch.randn(4, 5, dtype=torch.float64))
    with pytest.raises(RuntimeError, match="set_targets"):
        F.cross_entropy(out, torch.zeros(4, dtype=torch.long)).backward()


def test_alignment_and_testing_helpers_give_the_targets():
    model = bioplastic.convert(_mlp(), "drtp", seed=0)
    assert bioplastic.nn.needs_targets(model) and not bioplastic.nn.needs_targets(_mlp())
    x, labels = torch.randn(8, 5, dtype=torch.float64), torch.arange(8) % D_OUT
    ds = bioplastic.nn.alignment(model, x, labels, F.cross_entropy)
    assert float(ds["update_cosine"].sel(layer="4")) == pytest.approx(1.0)  # the output layer's exact error
    assert ds["feedback_angle"].isnull().all()  # y* D maps the targets, never delta
    grads = bioplastic.testing.gradients(model, x, labels, F.cross_entropy)
    assert set(grads) == {n for n, p in model.named_parameters() if p.requires_grad}


def test_learns_digits_above_chance():
    # Criterion fixed before the run: test accuracy > 0.5 (chance 0.1) after 10 epochs, seed 0.
    from bioplastic.data import load_dataset

    torch.manual_seed(0)
    data = load_dataset("digits")
    x_train, x_test = data.transform(data.x_train).flatten(1), data.transform(data.x_test).flatten(1)
    net = nn.Sequential(nn.Linear(64, 128), nn.Tanh(), nn.Linear(128, 128), nn.Tanh(), nn.Linear(128, 10))
    model = bioplastic.convert(net, "drtp", seed=0)
    hidden_before = model[2].weight.detach().clone()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(10):
        for idx in torch.randperm(len(x_train), generator=gen).split(64):
            opt.zero_grad()
            out = model(x_train[idx])
            bioplastic.nn.set_targets(model, data.y_train[idx])
            F.cross_entropy(out, data.y_train[idx]).backward()
            opt.step()
    with torch.no_grad():
        accuracy = float((model(x_test).argmax(1) == data.y_test).double().mean())
    assert accuracy > 0.5
    assert not torch.equal(model[2].weight, hidden_before)  # the hidden layers learned from the targets
