"""The feedback weights learn what the theory says: Oja -> top-r error subspace, normative -> truncated SVD
of W, Kolen-Pollack -> W (closed form under SGD with weight decay); periodic SVD re-initialisation."""
import math

import pytest
import scipy.linalg
import torch
import torch.nn as nn

import bioplastic
from bioplastic.nn import feedback_step, param_groups, split_parameters
from bioplastic.rules import make


def _layer(out, inp, rule, seed=0):
    torch.manual_seed(seed)
    return bioplastic.convert(nn.Linear(inp, out).double(), rule, seed=seed)


def test_oja_finds_the_top_r_principal_error_subspace():
    """A fixed synthetic error stream with covariance U diag(lam^2) U^T: span(P) -> top-r eigenvectors."""
    out, inp, r, n = 16, 8, 3, 512
    g = torch.Generator().manual_seed(0)
    basis, _ = torch.linalg.qr(torch.randn(out, out, generator=g, dtype=torch.float64))
    scales = torch.tensor([3.0, 2.5, 2.0] + [0.5] * (out - 3), dtype=torch.float64)
    layer = _layer(out, inp, make("ldfa", rank=r, feedback_learning="oja"))
    assert layer.rank == r
    opt = torch.optim.SGD([layer.P], lr=2.0)
    x = torch.randn(n, inp, generator=g, dtype=torch.float64)
    for step in range(250):
        delta = (torch.randn(n, out, generator=g, dtype=torch.float64) * scales) @ basis.t()
        opt.zero_grad()
        layer(x).backward(delta)
        opt.step()
        opt.param_groups[0]["lr"] = 2.0 if step < 100 else 0.3 if step < 175 else 0.05  # anneal the batch noise
    p = layer.P.detach()
    angles = scipy.linalg.subspace_angles(p.numpy(), basis[:, :r].numpy())
    assert angles.max() < 1e-2
    # Oja's rule also orthonormalises P
    torch.testing.assert_close(p.t() @ p, torch.eye(r, dtype=torch.float64), atol=1e-2, rtol=0)


@pytest.mark.parametrize("groups", [1, 2])
def test_normative_drives_pq_to_truncated_svd_of_w(groups):
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3, groups=groups).double()
    r = 2 * groups
    layer = bioplastic.convert(conv, make("ldfa", rank=r, feedback_learning="normative"), seed=0)
    with torch.no_grad():  # start away from the SVD initialisation
        layer.P.copy_(torch.randn(layer.P.shape, dtype=torch.float64) * 0.3)
        layer.Q.copy_(torch.randn(layer.Q.shape, dtype=torch.float64) * 0.3)
    opt = torch.optim.SGD([layer.P, layer.Q], lr=0.2, momentum=0.9)
    x = torch.randn(1, 4, 3, 3, dtype=torch.float64)
    for _ in range(500):
        opt.zero_grad()
        layer(x).backward(torch.zeros(1, 6, 1, 1, dtype=torch.float64))  # normative ignores delta
        opt.step()
    w3 = layer.weight.detach().reshape(groups, 6 // groups, -1)
    best = []
    for blk in w3:
        u, s, vh = torch.linalg.svd(blk, full_matrices=False)
        k = r // groups
        best.append(u[:, :k] @ torch.diag(s[:k]) @ vh[:k])
    best = torch.cat(best)
    got = layer.effective_feedback()
    assert float((got - best).norm() / best.norm()) < 1e-6


def test_kolen_pollack_b_minus_w_decays_in_closed_form():
    """SGD, same lr and weight decay on both sides: B - W -> (1 - lr wd)^t (B0 - W0) whatever the data."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    net = bioplastic.convert(model, "kolen_pollack", seed=0)
    lr, wd, steps = 0.1, 0.5, 60
    opt = torch.optim.SGD(param_groups(net, lr=lr, weight_decay=wd))
    layers = [m for _, m in bioplastic.nn.feedback_layers(net)]
    diff0 = [(m.B - m.weight).detach().clone() for m in layers]
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(16, 5, generator=g, dtype=torch.float64)
        y = torch.randint(0, 3, (16,), generator=g)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
        feedback_step(net)
    for m, d0 in zip(layers, diff0):
        torch.testing.assert_close((m.B - m.weight).detach(), (1 - lr * wd) ** steps * d0, rtol=1e-9, atol=1e-12)
        assert float((m.B - m.weight).detach().norm() / d0.norm()) < 0.05  # 0.95 ** 60


def test_normative_reinit_every_restores_svd():
    layer = _layer(6, 9, make("ldfa", rank=2, feedback_learning="normative", reinit_every=3))
    w = layer.weight.detach()
    u, s, vh = torch.linalg.svd(w, full_matrices=False)
    best = u[:, :2] @ torch.diag(s[:2]) @ vh[:2]
    torch.testing.assert_close(layer.effective_feedback(), best, atol=1e-12, rtol=0)  # SVD initialisation
    with torch.no_grad():
        layer.P.mul_(0.5)
    for step in range(1, 4):
        feedback_step(layer)
        assert layer.steps == step
        if step < 3:
            assert not torch.allclose(layer.effective_feedback(), best)
    torch.testing.assert_close(layer.effective_feedback(), best, atol=1e-12, rtol=0)
    # the step counter survives a state_dict round trip
    other = _layer(6, 9, make("ldfa", rank=2, feedback_learning="normative", reinit_every=3), seed=5)
    other.load_state_dict(layer.state_dict())
    assert other.steps == 3


def test_truncated_svd_randomised_matches_exact_on_decaying_spectrum():
    g = torch.Generator().manual_seed(0)
    u, _ = torch.linalg.qr(torch.randn(1100, 40, generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(1200, 40, generator=g, dtype=torch.float64))
    s = torch.logspace(0, -4, 40, dtype=torch.float64)
    w = (u * s) @ v.t()
    uu, ss, vv = bioplastic.nn.truncated_svd(w, 5, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(ss, s[:5], rtol=1e-8, atol=0)
    angles = scipy.linalg.subspace_angles(uu.numpy(), u[:, :5].numpy())
    assert angles.max() < 1e-6
    assert math.isclose(float(((uu * ss) @ vv - (u[:, :5] * s[:5]) @ v[:, :5].t()).norm()), 0, abs_tol=1e-8)


def test_param_groups_follow_the_rule():
    torch.manual_seed(0)
    net = bioplastic.convert(nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3)),
                             make("ldfa", rank=2, feedback_learning="local"), seed=0)
    groups = param_groups(net, lr=1e-3, weight_decay=0.05)
    assert [g["name"] for g in groups] == ["forward", "feedback"]
    assert groups[1]["lr"] == 1e-3 and groups[1]["weight_decay"] == 0.1
    fwd, fb = split_parameters(net)
    assert len(fwd) == 4 and len(fb) == 4
    assert {id(p) for p in fwd}.isdisjoint(id(p) for p in fb)
    normative = bioplastic.convert(nn.Linear(4, 6), make("ldfa", rank=2), seed=0)
    assert param_groups(normative, lr=1e-3)[1]["lr"] == 0.01
    fa = bioplastic.convert(nn.Linear(4, 6), "fa", seed=0)
    assert len(param_groups(fa, lr=1e-3)) == 1 and split_parameters(fa)[1] == []
