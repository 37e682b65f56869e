"""Oja's rule on the targets (issue 11, case 1), its centring (case 4), and the Kolen-Pollack decay of ``q_only``
(case 2): closed-form gradients, and convergence to the eigenvectors ``numpy.linalg.eigh`` gives."""
import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn as nn
import torch.nn.functional as F

import bioplastic
from bioplastic.nn import param_groups, set_targets
from bioplastic.rules import make

D, IN = 8, 5
PI = torch.tensor([0.3, 0.22, 0.16, 0.12, 0.08, 0.06, 0.04, 0.02], dtype=torch.float64)  # unequal classes


def _oja(c, p):
    """Oja's descent gradient -(C P - P P^T C P) for a (trace-normalised) covariance C."""
    return -(c @ p - p @ p.T @ c @ p)


def _labels(n, g, pi=PI):
    return torch.multinomial(pi, n, replacement=True, generator=g)


def _train_p(net, layer, batches, g, centred_targets=None, pi=PI):
    """SGD on the P's only, lr annealed as in test_feedback_learning (the batch noise averages out)."""
    opt = torch.optim.SGD([m.P for _, m in bioplastic.nn.feedback_layers(net) if m.P.requires_grad], lr=2.0)
    for step in range(batches):
        x = torch.randn(1024, IN, generator=g, dtype=torch.float64)
        y = _labels(1024, g, pi) if centred_targets is None else centred_targets(g)
        opt.zero_grad()
        out = net(x)
        set_targets(net, y)
        out.backward(torch.randn(out.shape, generator=g, dtype=torch.float64))  # an arbitrary error
        opt.step()
        opt.param_groups[0]["lr"] = 2.0 if step < 150 else 0.5 if step < 250 else 0.1
    return layer.P.detach().reshape(layer.P.shape[0], -1)


def test_output_layer_oja_on_one_hot_labels_has_the_label_covariance_closed_form():
    torch.manual_seed(0)
    layer = bioplastic.convert(nn.Linear(IN, D).double(), make("ldfa", rank=3, feedback_learning="oja"), seed=0)
    x = torch.randn(32, IN, dtype=torch.float64)
    y = torch.randint(0, D, (32,))
    out = layer(x)
    set_targets(layer, y)
    out.backward(torch.randn(32, D, dtype=torch.float64))
    t = F.one_hot(y, D).double()
    p = layer.P.detach()
    # tr(Y^T Y) = N for one-hot rows: C = Y^T Y / N, the authors' rAFA_linear.py normalisation
    torch.testing.assert_close(layer.P.grad, _oja(t.T @ t / 32, p), rtol=1e-10, atol=1e-12)
    # "auto" with targets = "targets"; "error" ignores them; a hidden layer of layer-wise LDFA keeps its error
    for cov, want in (("targets", _oja(t.T @ t / 32, p)), ("error", None)):
        other = bioplastic.convert(nn.Linear(IN, D).double(), make("ldfa", rank=3, feedback_learning="oja",
                                                                    oja_covariance=cov), seed=0)
        other.load_state_dict(layer.state_dict())
        delta = torch.randn(32, D, dtype=torch.float64)
        out = other(x)
        set_targets(other, y)
        out.backward(delta)
        if want is None:
            want = _oja(delta.T @ delta / (delta * delta).sum(), p)
        torch.testing.assert_close(other.P.grad, want, rtol=1e-10, atol=1e-12)


def test_hidden_layers_keep_their_error_and_direct_layers_use_standardised_labels():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(IN, 6), nn.Tanh(), nn.Linear(6, D)).double()
    x = torch.randn(40, IN, dtype=torch.float64)
    y = torch.randint(0, D, (40,))
    net = bioplastic.convert(model, make("ldfa", rank=3, feedback_learning="oja", oja_covariance="targets"), seed=0)
    hidden_delta = []
    net[0].register_full_backward_hook(lambda m, gi, go: hidden_delta.append(go[0].detach()))
    out = net(x.clone().requires_grad_(True))
    set_targets(net, y)
    out.backward(torch.randn(40, D, dtype=torch.float64))
    d = hidden_delta[0]
    torch.testing.assert_close(net[0].P.grad, _oja(d.T @ d / (d * d).sum(), net[0].P.detach()),
                               rtol=1e-10, atol=1e-12)
    # direct LDFA: every P lives in the output space; targets standardised per class over the batch
    # (the authors' rADFA_linear.py), then trace-normalised
    direct = bioplastic.convert(model, make("direct_ldfa", rank=3, feedback_learning="oja"), seed=0)
    out = direct(x)
    set_targets(direct, y)
    out.backward(torch.randn(40, D, dtype=torch.float64))
    t = F.one_hot(y, D).double()
    ts = (t - t.mean(0)) / (t.std(0) + 1e-8)
    c = ts.T @ ts / (ts * ts).sum()
    torch.testing.assert_close(direct[0].P.grad, _oja(c, direct[0].P.detach()), rtol=1e-10, atol=1e-12)


def test_oja_on_one_hot_labels_converges_to_the_top_eigenvectors_of_the_centred_label_covariance():
    """Centred one-hot labels with class probabilities pi: C = diag(pi) - pi pi^T; span(P) -> its top-3
    eigenvectors (numpy.linalg.eigh), and P^T P -> I (Oja 1989)."""
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    layer = bioplastic.convert(nn.Linear(IN, D).double(), make("ldfa", rank=3, feedback_learning="oja",
                                                                oja_centre=True), seed=0)
    p = _train_p(layer, layer, 320, g)
    c = np.diag(PI.numpy()) - np.outer(PI.numpy(), PI.numpy())
    top = np.linalg.eigh(c)[1][:, -3:]
    assert np.degrees(scipy.linalg.subspace_angles(p.numpy(), top).max()) < 2.0
    torch.testing.assert_close(p.T @ p, torch.eye(3, dtype=torch.float64), atol=0.02, rtol=0)


def test_direct_oja_converges_to_the_top_eigenvector_of_the_label_correlation_matrix():
    """Standardised one-hot labels: C = the correlation matrix of the one-hot labels (eigh). Its spectrum is
    nearly flat for most class distributions; this one has a clear top eigenvalue (1.58 vs 1.18)."""
    pi = torch.tensor([0.5, 0.2, 0.1, 0.08, 0.05, 0.04, 0.02, 0.01], dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(IN, 6), nn.Tanh(), nn.Linear(6, D)).double()
    net = bioplastic.convert(model, make("direct_ldfa", rank=1, feedback_learning="oja"), seed=0)
    p = _train_p(net, net[0], 320, g, pi=pi)
    cov = np.diag(pi.numpy()) - np.outer(pi.numpy(), pi.numpy())
    sd = np.sqrt(np.diag(cov))
    top = np.linalg.eigh(cov / np.outer(sd, sd))[1][:, -1:]
    assert np.degrees(scipy.linalg.subspace_angles(p.numpy(), top).max()) < 3.0


def test_oja_on_target_vectors_converges_to_the_top_eigenvectors_of_their_covariance():
    """Regression targets t = s A (s white): Sigma^yy = A^T A, the paper's Eq. 8 in the torch executor."""
    g = torch.Generator().manual_seed(2)
    a = torch.randn(D, D, generator=g, dtype=torch.float64) * torch.linspace(2.0, 0.3, D, dtype=torch.float64)[:, None]
    torch.manual_seed(0)
    layer = bioplastic.convert(nn.Linear(IN, D).double(), make("ldfa", rank=3, feedback_learning="oja",
                                                                oja_covariance="targets"), seed=0)
    p = _train_p(layer, layer, 320, g,
                 centred_targets=lambda gen: torch.randn(1024, D, generator=gen, dtype=torch.float64) @ a)
    top = np.linalg.eigh((a.T @ a).numpy())[1][:, -3:]
    assert np.degrees(scipy.linalg.subspace_angles(p.numpy(), top).max()) < 2.0


def test_conv_oja_centre_uses_the_centred_per_position_errors():
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3, padding=1).double()
    m = bioplastic.convert(conv, make("ldfa", rank=3, feedback_learning="oja", oja_centre=True), seed=0)
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    delta = torch.randn(2, 6, 5, 5, dtype=torch.float64) + 3.0  # a large mean, which centring removes
    m(x).backward(delta)
    rows = delta.permute(0, 2, 3, 1).reshape(-1, 6)
    rows = rows - rows.mean(0)
    p = m.P.detach().reshape(6, 3)
    torch.testing.assert_close(m.P.grad.reshape(6, 3), _oja(rows.T @ rows / (rows * rows).sum(), p),
                               rtol=1e-10, atol=1e-12)


def test_bad_targets_and_options_raise_clear_errors():
    torch.manual_seed(0)
    rule = make("ldfa", rank=2, feedback_learning="oja", oja_covariance="targets")
    layer = bioplastic.convert(nn.Linear(IN, D), rule, seed=0)
    with pytest.raises(RuntimeError, match="after the forward pass"):
        set_targets(layer, torch.zeros(3, dtype=torch.long))
    out = layer(torch.randn(3, IN))
    with pytest.raises(RuntimeError, match="set_targets"):
        out.sum().backward()
    out = layer(torch.randn(3, IN))
    set_targets(layer, torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        out.sum().backward()
    out = layer(torch.randn(3, IN))
    set_targets(layer, torch.tensor([0, 1, D]))
    with pytest.raises(ValueError, match=r"\[0, 8\)"):
        out.sum().backward()
    with pytest.raises(TypeError, match="torch.Tensor"):
        set_targets(layer, [0, 1, 2])
    with pytest.raises(ValueError, match="no converted layers"):
        set_targets(nn.Linear(2, 2), torch.zeros(1, dtype=torch.long))
    with pytest.raises(ValueError, match="allowed: 'auto', 'error', 'targets'"):
        make("ldfa", feedback_learning="oja", oja_covariance="labels")
    with pytest.raises(ValueError, match="only to feedback_learning='oja'"):
        make("ldfa", feedback_learning="local", oja_covariance="targets")


def test_q_only_feedback_decays_like_w_and_q_converges_to_pt_w():
    """Kolen-Pollack: the default feedback decay of q_only (and oja) is the forward one, so under SGD
    Q - P^T W = (1 - lr wd)^t (Q0 - P^T W0) exactly; with lr wd t = 12 every Q ends within 1 degree of P^T W.
    Without decay (wd = 0) the gap Q - P^T W never changes: Q keeps its random start."""
    assert make("ldfa", feedback_learning="q_only").feedback_weight_decay is None
    assert make("ldfa", feedback_learning="oja").feedback_weight_decay is None
    lr, steps = 0.1, 200
    for wd in (0.6, 0.0):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).double()
        net = bioplastic.convert(model, make("ldfa", rank=2, feedback_learning="q_only"), seed=0)
        groups = param_groups(net, lr=lr, weight_decay=wd)
        assert groups[1]["weight_decay"] == wd
        opt = torch.optim.SGD(groups)
        layers = [m for _, m in bioplastic.nn.feedback_layers(net)]
        gap0 = [(m.Q - m.P.T @ m.weight).detach().clone() for m in layers]
        g = torch.Generator().manual_seed(1)
        teacher = torch.randn(5, 3, generator=g, dtype=torch.float64)
        for _ in range(steps):
            x = torch.randn(16, 5, generator=g, dtype=torch.float64)
            y = (x @ teacher).argmax(1)  # a learnable task: W keeps a signal against the decay
            opt.zero_grad()
            F.cross_entropy(net(x), y).backward()
            opt.step()
        for m, d0 in zip(layers, gap0):
            gap = (m.Q - m.P.T @ m.weight).detach()
            torch.testing.assert_close(gap, (1 - lr * wd) ** steps * d0, rtol=1e-8, atol=1e-12)
            if wd:
                assert bioplastic.nn.diagnostics.matrix_angle(m.Q.detach(), (m.P.T @ m.weight).detach()) < 1.0
