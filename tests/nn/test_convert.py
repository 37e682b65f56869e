"""convert(): the conversion report, layers kept on backprop, bad input, state_dict, devices."""
import copy
import logging
import pickle

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import bioplastic
from bioplastic.nn import FeedbackConv2d, FeedbackLinear, conversion_report, feedback_layers
from bioplastic.rules import make
from bioplastic.testing import assert_gradients_equal, gradients

from .conftest import convnet, mlp


class Mixed(nn.Module):
    """Embedding, Conv1d, MultiheadAttention, LayerNorm, a TransformerEncoderLayer, a free parameter."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(11, 8)
        self.conv1d = nn.Conv1d(8, 8, 3, padding=1)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.block = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0, batch_first=True)
        self.norm = nn.LayerNorm(8)
        self.scale = nn.Parameter(torch.ones(1))
        self.head = nn.Linear(8, 3)

    def forward(self, tokens):
        h = self.embed(tokens)
        h = self.conv1d(h.transpose(1, 2)).transpose(1, 2)
        h = h + self.attn(h, h, h, need_weights=False)[0]
        h = self.block(h)
        return self.head(self.norm(h).mean(1) * self.scale)


def test_report_lists_converted_and_kept_layers_with_reasons(caplog):
    with caplog.at_level(logging.INFO, logger="bioplastic.nn.convert"):
        net = bioplastic.convert(Mixed().double(), make("ldfa", rank=2), seed=0)
    report = conversion_report(net)
    assert report.converted == ["block.linear1", "block.linear2", "head"]
    assert report.output_layer == "head"
    kept = report.kept
    assert "not supported" in kept["embed"] and "not supported" in kept["conv1d"]
    assert "MultiheadAttention" in kept["attn"] and "MultiheadAttention" in kept["attn.out_proj"]
    assert "MultiheadAttention" in kept["block.self_attn.out_proj"]
    assert "normalisation" in kept["norm"] and "normalisation" in kept["block.norm1"]
    assert "scale" in kept[""]
    assert not isinstance(net.attn.out_proj, FeedbackLinear)
    assert "block.linear1" in caplog.text and "attn.out_proj" in caplog.text
    assert "attn.out_proj" in str(report)
    # the transformer trains: tokens act as a batch axis in the converted Linear layers
    tokens = torch.randint(0, 11, (4, 5))
    y = torch.randint(0, 3, (4,))
    grads = gradients(net, tokens, y, F.cross_entropy)
    assert grads["block.linear1.weight"] is not None and grads["block.linear1.Q"] is not None


def test_transformer_on_bp_rule_matches_autograd():
    model = Mixed().double()
    tokens = torch.randint(0, 11, (4, 5))
    y = torch.randint(0, 3, (4,))
    assert_gradients_equal(bioplastic.convert(model, "bp"), model, tokens, y, F.cross_entropy)


def test_exclude_and_output_layer_and_ranks():
    model = mlp()
    net = bioplastic.convert(model, make("ldfa", rank=3), exclude=["0"], ranks={"2": 5}, seed=0)
    report = conversion_report(net)
    assert report.converted == ["2", "4"]
    assert "excluded" in report.kept["0"]
    assert net[2].rank == 5 and net[4].rank == 3
    assert not isinstance(net[0], FeedbackLinear)
    net = bioplastic.convert(model, "fa", output_layer="2", seed=0)
    assert net[2].is_output and not net[4].is_output


def test_rank_fraction_and_grouped_rounding():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(8, 12, 3, groups=4), nn.ReLU(), nn.Flatten(), nn.Linear(12, 16), nn.Linear(16, 4))
    with pytest.warns(UserWarning, match=r"clipped.*'4' \(9 -> 4\)"):
        net = bioplastic.convert(model, make("ldfa", rank=9), seed=0)
    # groups=4: ceil(9 / 4) = 3 per group = the per-group maximum min(12/4, 8/4 * 3 * 3): rank 12, not clipped
    assert net[0].rank == 12 and net[0].P.shape == (12, 3, 1, 1) and net[0].Q.shape == (12, 2, 3, 3)
    assert "rounded up from 9 to a multiple of groups=4" in conversion_report(net).layers[0].reason
    net = bioplastic.convert(model, make("ldfa", rank_fraction=0.25), seed=0)
    assert net[0].rank == 4  # ceil(0.25 * 12) = 3, rounded up to a multiple of groups = 4
    assert "rounded up" in conversion_report(net).layers[0].reason
    assert net[3].rank == 4 and net[4].rank == 1


@pytest.mark.parametrize("rule, rank, expected", [("ldfa", 7, 5), ("direct_ldfa", 7, 5)])
def test_rank_above_layer_maximum_is_clipped_with_a_warning(rule, rank, expected):
    with pytest.warns(UserWarning, match=r"'4' \(7 -> 5\)"):
        net = bioplastic.convert(mlp(), make(rule, rank=rank), seed=0)
    assert net[4].rank == expected and net[4].P.shape[1] == expected


def test_bad_input_raises_naming_the_problem():
    model = mlp()
    with pytest.raises(ValueError, match="unknown rule 'bpp'"):
        bioplastic.convert(model, "bpp")
    with pytest.raises(ValueError, match="exclude: no module named 'fc9' in the model; weight layers: '0', '2', '4'"):
        bioplastic.convert(model, "fa", exclude=["fc9"])
    with pytest.raises(ValueError, match="output_layer '1' is not a Linear/Conv2d layer"):
        bioplastic.convert(model, "fa", output_layer="1")
    with pytest.raises(ValueError, match="ranks: '7' is not a converted layer"):
        bioplastic.convert(model, make("ldfa", rank=2), ranks={"7": 2})
    with pytest.raises(ValueError, match="rank of layer '2' must be an integer >= 1"):
        bioplastic.convert(model, make("ldfa", rank=2), ranks={"2": 0})
    with pytest.raises(ValueError, match="ranks applies to the low-rank rules"):
        bioplastic.convert(model, "fa", ranks={"2": 2})
    with pytest.raises(ValueError, match="already converted"):
        bioplastic.convert(bioplastic.convert(model, "fa"), "fa")
    with pytest.raises(ValueError, match="must be a torch.nn.Module"):
        bioplastic.convert("model", "fa")
    bad = mlp()
    with torch.no_grad():
        bad[2].weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="weight of layer '2' contains NaN or Inf"):
        bioplastic.convert(bad, "fa")
    bad_bias = mlp()
    with torch.no_grad():
        bad_bias[4].bias[0] = float("inf")
    with pytest.raises(ValueError, match="bias of layer '4' contains NaN or Inf"):
        bioplastic.convert(bad_bias, "bp")


def test_direct_rules_without_findable_output_size_raise():
    no_output = nn.Sequential(nn.Conv1d(3, 4, 3), nn.ReLU())
    for rule in ("dfa", "direct_ldfa"):
        with pytest.raises(ValueError, match="cannot find the output size d"):
            bioplastic.convert(no_output, rule)
    with pytest.raises(ValueError, match="output layer '4' is not converted"):
        bioplastic.convert(mlp(), "dfa", exclude=["4"])
    with pytest.raises(ValueError, match="needs their input size: pass example_input"):
        bioplastic.convert(convnet(), "dfa")
    # ldfa does not need the output size: excluding the head is fine (the authors' CNN variant)
    net = bioplastic.convert(convnet(), make("ldfa", rank=2), exclude=["8"])
    assert conversion_report(net).converted == ["0", "2", "4"]


def test_direct_rule_error_when_output_layer_not_on_the_loss_path():
    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Linear(4, 6)
            self.aux = nn.Linear(6, 2)
            self.head = nn.Linear(6, 3)

        def forward(self, x):
            h = torch.tanh(self.body(x))
            return self.aux(h), self.head(h)

    net = bioplastic.convert(TwoHeads(), "dfa", output_layer="head")
    aux, _ = net(torch.randn(2, 4))
    with pytest.raises(RuntimeError, match="needs the output error e.*'head'"):
        aux.sum().backward()


def test_direct_rule_error_names_output_layer_fix_when_head_registered_first():
    """Issue 15 case 8: the head registered before the body makes the default output layer the body; the
    error must name the fix (``output_layer=``), and converting with it then trains."""
    class HeadFirst(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(6, 3)
            self.body = nn.Linear(4, 6)

        def forward(self, x):
            return self.head(torch.tanh(self.body(x)))

    net = bioplastic.convert(HeadFirst(), "dfa")
    with pytest.raises(RuntimeError, match=r"'body'.*output_layer="):
        net(torch.randn(2, 4)).sum().backward()
    fixed = bioplastic.convert(HeadFirst(), "dfa", output_layer="head")
    fixed(torch.randn(2, 4)).sum().backward()
    assert fixed.body.weight.grad is not None


@pytest.mark.parametrize("rule", ["fa", "kolen_pollack", "dfa", "sign_symmetry", "ldfa", "direct_ldfa"])
def test_state_dict_round_trip(rule, batch_mlp):
    x, y = batch_mlp
    rule = make(rule, rank=3, feedback_learning="oja") if rule in ("ldfa", "direct_ldfa") else make(rule)
    a = bioplastic.convert(mlp(), rule, seed=0)
    b = bioplastic.convert(mlp(), rule, seed=1)
    if a[0].feedback_names:
        assert not torch.equal(a[0].feedback_parameters()[0], b[0].feedback_parameters()[0])
    for _ in range(7):
        bioplastic.nn.feedback_step(a)
    b.load_state_dict(a.state_dict())
    ga, gb = gradients(a, x, y, F.cross_entropy), gradients(b, x, y, F.cross_entropy)
    assert ga.keys() == gb.keys()
    for k in ga:
        torch.testing.assert_close(ga[k], gb[k], rtol=0, atol=0)
    assert all(layer.steps == 7 for _, layer in feedback_layers(b))
    # pickling / deep copying keep the rule working (fresh error bus)
    for c in (copy.deepcopy(a), pickle.loads(pickle.dumps(a))):
        gc = gradients(c, x, y, F.cross_entropy)
        for k in ga:
            torch.testing.assert_close(gc[k], ga[k], rtol=0, atol=0)
        assert c[0].bus is c[4].bus and c[0].bus is not a[0].bus


def test_same_seed_same_feedback_and_torch_seed_controls_default():
    a = bioplastic.convert(mlp(), "fa", seed=3)
    b = bioplastic.convert(mlp(), "fa", seed=3)
    assert torch.equal(a[2].B, b[2].B)
    torch.manual_seed(5)
    c = bioplastic.convert(mlp(), "fa")
    torch.manual_seed(5)
    d = bioplastic.convert(mlp(), "fa")
    assert torch.equal(c[2].B, d[2].B)


def test_class_swap_keeps_hooks_and_parameters_identity():
    model = mlp()
    seen = []
    model[2].register_forward_hook(lambda mod, a, out: seen.append(out.shape))
    net = bioplastic.convert(model, "fa")
    net(torch.randn(3, 12, dtype=torch.float64))
    assert seen == [torch.Size([3, 16])]
    assert isinstance(net[2], nn.Linear) and isinstance(net[2], FeedbackLinear)
    assert isinstance(bioplastic.convert(convnet(), "fa")[0], FeedbackConv2d)
    assert "rule=fa" in repr(net)


def test_eval_mode_and_no_grad_forward_are_plain(batch_mlp):
    x, _ = batch_mlp
    net = bioplastic.convert(mlp(), make("ldfa", rank=2))
    with torch.no_grad():
        torch.testing.assert_close(net(x), mlp()(x), rtol=0, atol=0)


def test_any_optimiser_and_gradient_accumulation(batch_mlp):
    x, y = batch_mlp
    net = bioplastic.convert(mlp(), make("ldfa", rank=3, feedback_learning="local"), seed=0)
    full = gradients(net, x, y, lambda out, t: F.cross_entropy(out, t, reduction="sum"))
    net.zero_grad()
    for xs, ys in ((x[:3], y[:3]), (x[3:], y[3:])):
        F.cross_entropy(net(xs), ys, reduction="sum").backward()
    for name, p in net.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(p.grad, full[name], rtol=1e-10, atol=1e-12)
    opt = torch.optim.AdamW(bioplastic.nn.param_groups(net, lr=1e-3))
    before = net[0].P.detach().clone()
    opt.step()
    assert not torch.equal(before, net[0].P)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("rule", ["fa", "dfa", "kolen_pollack", "ldfa", "direct_ldfa"])
def test_cuda_same_code_same_gradients(rule, batch_conv):
    x, y = batch_conv
    cpu = bioplastic.convert(convnet(), make(rule), seed=0, example_input=x)
    gpu = copy.deepcopy(cpu).cuda()
    g_cpu = gradients(cpu, x, y, F.cross_entropy)
    g_gpu = gradients(gpu, x.cuda(), y.cuda(), F.cross_entropy)
    for k in g_cpu:
        if g_cpu[k] is not None:
            torch.testing.assert_close(g_gpu[k].cpu(), g_cpu[k], rtol=1e-7, atol=1e-9)


def test_autocast_bp_matches_plain_autocast():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 8 * 8, 5))
    x, y = torch.randn(4, 3, 8, 8), torch.randint(0, 5, (4,))
    net = bioplastic.convert(model, "bp")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = gradients(net, x, y, F.cross_entropy)
        want = gradients(model, x, y, F.cross_entropy)
    for k in want:
        assert got[k].dtype == torch.float32
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=0)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # every rule runs under autocast
        for rule in ("fa", "ldfa", "dfa"):
            g = gradients(bioplastic.convert(model, make(rule) if rule != "ldfa" else make(rule, rank=4),
                                             example_input=x), x, y, F.cross_entropy)
            assert all(torch.isfinite(v).all() for v in g.values() if v is not None)
