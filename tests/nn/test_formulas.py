"""The error each layer sends below, and each feedback parameter's update, equal the formulas of the science
notes (section 2) computed by hand from the layer's tensors."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import bioplastic
from bioplastic.rules import make
from bioplastic.testing import propagated_error

G = torch.Generator().manual_seed(3)


def randn(*shape):
    return torch.randn(*shape, generator=G, dtype=torch.float64)


def single(layer, rule, **kw):
    """Convert a lone layer (it is then the output layer; delta = e)."""
    return bioplastic.convert(layer.double(), rule, seed=0, **kw)


# ---------------------------------------------------------------- Linear on token inputs (batch, tokens, in)
X_TOK = randn(3, 4, 6)
D_TOK = randn(3, 4, 5)


def lin(bias=True):
    torch.manual_seed(0)
    return nn.Linear(6, 5, bias=bias)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("rule, formula", [
    ("bp", lambda m, d: d @ m.weight),
    ("fa", lambda m, d: d @ m.B),
    ("kolen_pollack", lambda m, d: d @ m.B),
    ("sign_symmetry", lambda m, d: d @ (m.weight.abs().mean() * torch.sign(m.weight))),
    ("dfa", lambda m, d: d @ m.D),
    (make("ldfa", rank=3, feedback_learning="local"), lambda m, d: (d @ m.P) @ m.Q),
    (make("direct_ldfa", rank=2), lambda m, d: (d @ m.P) @ m.Q),
    (make("ldfa", rank=3, error_clamp=0.05), lambda m, d: ((d @ m.P) @ m.Q).clamp(-0.05, 0.05)),
    (make("sign_symmetry", scale="unit"), lambda m, d: d @ torch.sign(m.weight)),
])
def test_linear_token_error_formula(rule, formula, bias):
    m = single(lin(bias), rule)
    got = propagated_error(m, X_TOK, D_TOK)
    torch.testing.assert_close(got, formula(m, D_TOK).detach(), rtol=1e-12, atol=1e-12)


def test_error_clamp_is_active():
    m = single(lin(), make("ldfa", rank=3, error_clamp=0.05))
    got = propagated_error(m, X_TOK, D_TOK * 100)
    assert got.abs().max() == pytest.approx(0.05)


# ---------------------------------------------------------------- Conv2d: stride, padding, dilation, groups
CONV_CASES = {
    "stride2-pad1": dict(in_channels=4, out_channels=6, kernel_size=3, stride=2, padding=1),
    "dilation2-groups2": dict(in_channels=4, out_channels=6, kernel_size=3, padding=2, dilation=2, groups=2),
    "k2-stride3-groups2-nopad": dict(in_channels=4, out_channels=4, kernel_size=2, stride=3, groups=2),
}


def conv_transpose(z, kernel, conv, x_shape):
    """g_in by hand: the transposed convolution with the layer's settings and the right output_padding."""
    s, p, d = conv.stride, conv.padding, conv.dilation
    k = kernel.shape[-2:]
    out_pad = [x_shape[2 + i] - ((z.shape[2 + i] - 1) * s[i] - 2 * p[i] + d[i] * (k[i] - 1) + 1) for i in range(2)]
    return F.conv_transpose2d(z, kernel, None, s, p, out_pad, conv.groups, d)


def compress(delta, p, groups):
    """z = delta P per position: the 1x1 convolution C_out -> r of LDFA, written as an einsum per group."""
    b, c, h, w = delta.shape
    pg = p.reshape(groups, c // groups, -1)
    z = torch.einsum("bgohw,gor->bgrhw", delta.reshape(b, groups, c // groups, h, w), pg)
    return z.reshape(b, -1, h, w)


@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("rule", ["bp", "fa", "kolen_pollack", "sign_symmetry", "ldfa"])
def test_conv_error_formula(case, bias, rule):
    torch.manual_seed(0)
    conv = nn.Conv2d(**CONV_CASES[case], bias=bias)
    rule = make("ldfa", rank=4, feedback_learning="oja") if rule == "ldfa" else rule
    m = single(conv, rule)
    x = randn(2, 4, 9, 9)
    delta = randn(*m(x).shape)
    got = propagated_error(m, x, delta)
    w = m.weight.detach()
    if m.rule.name == "bp":
        want = conv_transpose(delta, w, m, x.shape)
    elif m.rule.name in ("fa", "kolen_pollack"):
        want = conv_transpose(delta, m.B.detach(), m, x.shape)
    elif m.rule.name == "sign_symmetry":
        want = conv_transpose(delta, w.abs().mean() * torch.sign(w), m, x.shape)
    else:
        assert m.P.shape == (CONV_CASES[case]["out_channels"], 4 // m.groups, 1, 1)
        z = compress(delta, m.P.detach(), m.groups)
        want = conv_transpose(z, m.Q.detach(), m, x.shape)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_conv_shapes_of_feedback_parameters():
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 12, 3, groups=4)
    m = single(conv, make("ldfa", rank=8))
    assert m.P.shape == (12, 2, 1, 1) and m.Q.shape == (8, 2, 3, 3)
    m = single(nn.Conv2d(8, 12, 3), "fa")
    assert m.B.shape == (12, 8, 3, 3)


# ---------------------------------------------------------------- direct rules: e reaches every layer
class TokenNet(nn.Module):
    """Hidden Linear on tokens, mean over tokens, Linear head: e is (batch, d), hidden input (batch, T, in)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.hidden = nn.Linear(6, 7)
        self.head = nn.Linear(7, 5)

    def forward(self, x):
        return self.head(torch.tanh(self.hidden(x)).mean(1))


@pytest.mark.parametrize("rule", ["dfa", make("direct_ldfa", rank=3, feedback_learning="local")])
def test_direct_rules_deliver_e_to_hidden_layers_across_tokens(rule):
    net = bioplastic.convert(TokenNet().double(), rule, seed=0)
    x = X_TOK.clone().requires_grad_(True)
    e = randn(3, 5)
    hidden_out = []

    def keep(mod, args, out):
        out.retain_grad()
        hidden_out.append(out)

    net.hidden.register_forward_hook(keep)
    out = net(x)
    out.backward(e)
    if net.head.rule.name == "dfa":
        feed = lambda m: m.D.detach()  # noqa: E731
    else:
        feed = lambda m: (m.P @ m.Q).detach()  # noqa: E731
    # the hidden layer's input gets e D_hidden, the same for every token
    torch.testing.assert_close(x.grad, (e @ feed(net.hidden)).unsqueeze(1).expand(3, 4, 6), rtol=1e-12, atol=1e-12)
    # the head sends e D_head below; through mean over tokens and tanh this is the hidden layer's delta
    pre = net.hidden(X_TOK).detach()
    delta_hidden = (e @ feed(net.head)).unsqueeze(1) / 4 * (1 - torch.tanh(pre) ** 2)
    torch.testing.assert_close(hidden_out[0].grad, delta_hidden, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(net.hidden.weight.grad, delta_hidden.reshape(-1, 7).t() @ X_TOK.reshape(-1, 6),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("rule", ["dfa", make("direct_ldfa", rank=3, feedback_learning="oja")])
def test_direct_rules_on_conv_layers_use_full_input_feedback(rule):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 5))
    x = randn(2, 3, 8, 8)
    net = bioplastic.convert(model.double(), rule, seed=0, example_input=x)
    if net[0].rule.name == "dfa":
        assert net[0].D.shape == (5, 3, 8, 8)
        feedback = net[0].D.detach().reshape(5, -1)
    else:
        assert net[0].P.shape == (5, 3) and net[0].Q.shape == (3, 3, 8, 8)
        feedback = (net[0].P @ net[0].Q.reshape(3, -1)).detach()
    xg = x.clone().requires_grad_(True)
    e = randn(2, 5)
    net(xg).backward(e)
    torch.testing.assert_close(xg.grad, (e @ feedback).reshape(2, 3, 8, 8), rtol=1e-12, atol=1e-12)


def test_several_forward_passes_before_one_backward_keep_their_own_error():
    net = bioplastic.convert(TokenNet().double(), "dfa", seed=0)
    x1, x2 = X_TOK.clone().requires_grad_(True), (2 * X_TOK).clone().requires_grad_(True)
    e1, e2 = randn(3, 5), randn(3, 5)
    out1, out2 = net(x1), net(x2)
    ((out1 * e1).sum() + (out2 * e2).sum()).backward()
    d = net.hidden.D.detach()
    torch.testing.assert_close(x1.grad, (e1 @ d).unsqueeze(1).expand(3, 4, 6))
    torch.testing.assert_close(x2.grad, (e2 @ d).unsqueeze(1).expand(3, 4, 6))


# ---------------------------------------------------------------- feedback parameters' updates
def _feedback_grads(m, x, delta):
    y = m(x)
    names = [n for n in m.feedback_names]
    params = [getattr(m, n) for n in names]
    y.backward(delta)
    return {n: p.grad for n, p in zip(names, params)}


@pytest.mark.parametrize("mode", ["fixed", "q_only", "normative", "local", "oja"])
def test_linear_feedback_updates(mode):
    m = single(lin(), make("ldfa", rank=3, feedback_learning=mode))
    grads = _feedback_grads(m, X_TOK, D_TOK)
    P, Q, W = m.P.detach(), m.Q.detach(), m.weight.detach()
    h, d = X_TOK.reshape(-1, 6), D_TOK.reshape(-1, 5)
    z = d @ P
    expected = {
        "fixed": (None, None),
        "q_only": (None, z.t() @ h),
        "normative": ((P @ Q - W) @ Q.t(), P.t() @ (P @ Q - W)),
        "local": (d.t() @ (h @ Q.t()), z.t() @ h),
        "oja": (-(d.t() @ d @ P - P @ P.t() @ d.t() @ d @ P) / (d * d).sum(), z.t() @ h),
    }[mode]
    for name, want in zip("PQ", expected):
        if want is None:
            assert grads[name] is None and not getattr(m, name).requires_grad
        else:
            torch.testing.assert_close(grads[name], want, rtol=1e-10, atol=1e-12)


def test_kolen_pollack_b_gets_w_update():
    m = single(lin(), "kolen_pollack")
    grads = _feedback_grads(m, X_TOK, D_TOK)
    torch.testing.assert_close(grads["B"], m.weight.grad, rtol=0, atol=0)
    for rule in ("fa", "dfa"):
        m = single(lin(), rule)
        assert not any(p.requires_grad for p in m.feedback_parameters())


@pytest.mark.parametrize("mode", ["q_only", "normative", "local", "oja"])
@pytest.mark.parametrize("groups", [1, 2])
def test_conv_feedback_updates(mode, groups):
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3, stride=2, padding=1, dilation=1, groups=groups)
    m = single(conv, make("ldfa", rank=4, feedback_learning=mode))
    x = randn(2, 4, 7, 7)
    delta = randn(*m(x).shape)
    grads = _feedback_grads(m, x, delta)
    P, Q, W = m.P.detach(), m.Q.detach(), m.weight.detach()
    # oracles by autograd: z = delta P as the 1x1 conv; Q's update is the weight gradient of the conv
    # h -> conv(h, Q) receiving z; P's local update the weight gradient of conv(u, P) receiving delta.
    z = compress(delta, P, groups)
    q_var = Q.clone().requires_grad_(True)
    (F.conv2d(x, q_var, None, 2, 1, 1, groups) * z).sum().backward()
    if mode != "normative":
        torch.testing.assert_close(grads["Q"], q_var.grad, rtol=1e-10, atol=1e-12)
    if mode == "local":
        u = F.conv2d(x, Q, None, 2, 1, 1, groups)
        p_var = P.clone().requires_grad_(True)
        (F.conv2d(u, p_var, groups=groups) * delta).sum().backward()
        torch.testing.assert_close(grads["P"], p_var.grad, rtol=1e-10, atol=1e-12)
    if mode == "normative":  # per group, on W.view(C_out, -1)
        w3 = W.reshape(groups, 6 // groups, -1)
        p3 = P.reshape(groups, 6 // groups, -1)
        q3 = Q.reshape(groups, 4 // groups, -1)
        resid = p3 @ q3 - w3
        torch.testing.assert_close(grads["P"], (resid @ q3.transpose(1, 2)).reshape(P.shape), rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(grads["Q"], (p3.transpose(1, 2) @ resid).reshape(Q.shape), rtol=1e-10, atol=1e-12)
    if mode == "oja" and groups == 1:  # error rows = positions x batch, channels = columns
        rows = delta.permute(0, 2, 3, 1).reshape(-1, 6)
        p2 = P.reshape(6, 4)
        c = rows.t() @ rows / (rows * rows).sum()
        want = -(c @ p2 - p2 @ p2.t() @ c @ p2)
        torch.testing.assert_close(grads["P"].reshape(6, 4), want, rtol=1e-10, atol=1e-12)
