"""The authors' architecture recipes (issue 11 cases 3 and 4): where the retina-VVS spec applies the rank, the
retina's BatchNorm and head dropout, the ViT's dropout / attention dropout / drop-path, the VGG head."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import bioplastic
from bioplastic.architectures import build_model, load_spec
from bioplastic.architectures.retina import RetinaVVS
from bioplastic.architectures.vit import ViT, drop_path
from bioplastic.training.config import TrainConfig, conversion_options

SMALL_RETINA = {"channels": 8, "bottleneck": 8, "fc_width": 16}


# ----------------------------------------------------------------------------------------------- retina (case 3)
def _convert_retina(rank, **spec_overrides):
    spec = {**load_spec("retina_vvs"), **SMALL_RETINA, **spec_overrides}
    config = TrainConfig(model=spec, rule="ldfa", rule_options={"rank": rank})
    rule = config.make_rule()
    model = build_model(spec)
    converted = bioplastic.convert(model, rule, seed=0, **conversion_options(spec, model, rule, exclude=config.exclude, ranks=config.ranks))
    return spec, {e.name: e for e in bioplastic.nn.conversion_report(converted).layers}


@pytest.mark.parametrize("rank", [1, 2])
def test_retina_spec_constrains_the_vvs_layers_only(rank):
    spec, layers = _convert_retina(rank)
    vvs = [f"vvs.conv{i}" for i in range(1, spec["vvs_depth"] + 1)]
    # the VVS convolutions carry the rank-r feedback: the error reaching the retina passes vvs.conv1's
    for name in vvs:
        assert layers[name].status == "converted" and layers[name].rank == rank, layers[name]
        assert layers[name].feedback["P"][1] == rank and layers[name].feedback["Q"][0] == rank
    # the classifier is never a rank-r bottleneck for the d-class error: it stays on backprop, and so do the
    # retina's own layers (as in the authors' train_cifar.py)
    for name in ("classifier.fc", "classifier.out", "retina.conv1", "retina.conv2"):
        assert layers[name].status == "backprop", layers[name]
    assert spec["n_classes"] == 10 and spec["rule"]["rank"] < spec["n_classes"]


def test_retina_spec_has_the_authors_architecture():
    spec = load_spec("retina_vvs")
    assert (spec["batch_norm"], spec["dropout"], spec["vvs_depth"]) == (True, 0.5, 3)
    model = build_model(spec)
    names = [n for n, _ in model.named_modules()]
    for stage, n in (("retina", 2), ("vvs", 3)):
        for i in range(1, n + 1):
            conv, bn = f"{stage}.conv{i}", f"{stage}.bn{i}"
            assert names.index(conv) < names.index(bn) < names.index(f"{stage}.relu{i}")
            assert dict(model.named_modules())[conv].bias is None  # BN's shift replaces the bias
    head = [(n, type(m).__name__) for n, m in model.classifier.named_children()]
    assert head == [("flatten", "Flatten"), ("fc", "Linear"), ("relu", "ReLU"), ("dropout", "Dropout"),
                    ("out", "Linear")]
    assert model.classifier.dropout.p == 0.5


def test_retina_dropout_is_active_in_training_only():
    torch.manual_seed(0)
    model = RetinaVVS(channels=4, bottleneck=4, vvs_depth=1, fc_width=64, image_size=8, batch_norm=True,
                      dropout=0.5)
    x = torch.randn(4, 1, 8, 8)
    model.train()
    assert not torch.equal(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))


@pytest.mark.parametrize("bad", [-0.1, 1.0, "0.5", True])
def test_retina_rejects_bad_dropout(bad):
    with pytest.raises(ValueError, match="dropout"):
        RetinaVVS(dropout=bad)


# ----------------------------------------------------------------------------------------------- ViT (case 4)
def _vit(**kwargs):
    torch.manual_seed(0)
    return ViT(image_size=8, patch_size=4, dim=16, depth=3, heads=2, n_classes=5, **kwargs)


def test_vit_cifar_spec_has_the_authors_regularisation():
    spec = load_spec("vit_cifar")
    assert (spec["dropout"], spec["attention_dropout"], spec["drop_path"]) == (0.1, 0.1, 0.1)
    model = build_model(spec)
    assert model.pos_drop.p == model.head_drop.p == 0.1
    blk = model.blocks[0]
    assert blk.attn.attention_dropout == 0.1 and blk.attn.proj_drop.p == 0.1
    assert blk.mlp.drop1.p == blk.mlp.drop2.p == 0.1
    # stochastic depth rises linearly from 0 (first block) to 0.1 (last), as timm's drop_path_rate
    rates = [b.drop_path1.p for b in model.blocks]
    assert rates == pytest.approx([0.1 * i / 7 for i in range(8)])
    assert [b.drop_path2.p for b in model.blocks] == rates
    small = load_spec("vit_small")
    assert (small["dropout"], small["attention_dropout"], small["drop_path"]) == (0.0, 0.0, 0.0)


@pytest.mark.parametrize("option", ["dropout", "attention_dropout", "drop_path"])
def test_vit_regulariser_is_active_in_training_and_off_in_eval(option):
    model = _vit(**{option: 0.5})
    plain = _vit()
    plain.load_state_dict(model.state_dict())  # same weights, no regulariser
    x = torch.randn(6, 3, 8, 8)
    model.train()
    torch.manual_seed(1)
    a = model(x)
    b = model(x)
    assert a.shape == (6, 5)
    assert not torch.allclose(a, b)  # a new random mask per call
    model.eval()
    plain.eval()
    torch.testing.assert_close(model(x), plain(x), rtol=0, atol=0)


def test_vit_without_regularisers_is_deterministic_in_training():
    model = _vit().train()
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(model(x), model(x))


def test_drop_path_keeps_or_drops_whole_samples_and_preserves_the_expectation():
    p, n = 0.25, 20000
    x = torch.randn(1, 7, 3).expand(n, 7, 3)
    out = drop_path(x, p, True, generator=torch.Generator().manual_seed(0))
    kept = out.flatten(1).ne(0).all(1)
    dropped = out.flatten(1).eq(0).all(1)
    assert bool((kept | dropped).all())  # each sample's branch is dropped whole, never partly
    torch.testing.assert_close(out[kept], x[kept] / (1 - p))  # survivors scaled by 1 / (1 - p)
    # the number dropped is Binomial(n, p): within 5 s.d. (sqrt(n p (1 - p)) = 61) of n p = 5000
    assert abs(int(dropped.sum()) - n * p) < 5 * (n * p * (1 - p)) ** 0.5
    # E[out] = x: the sample mean is within 5 standard errors of x (per-sample factor variance p / (1 - p))
    se = x[0].abs() * (p / (1 - p) / n) ** 0.5
    assert bool(((out.mean(0) - x[0]).abs() <= 5 * se + 1e-6).all())
    assert drop_path(x, p, False) is x and drop_path(x, 0.0, True) is x


@pytest.mark.parametrize("option", ["dropout", "attention_dropout", "drop_path"])
@pytest.mark.parametrize("bad", [-0.1, 1.0, "0.1"])
def test_vit_rejects_bad_probabilities(option, bad):
    with pytest.raises(ValueError, match=option):
        _vit(**{option: bad})


# ----------------------------------------------------------------------------------------------- VGG (case 4)
def test_vgg_head_dropout_is_active_in_training_only_and_cnn_small_has_none():
    torch.manual_seed(0)
    model = build_model("vgg_cifar", widths=[4, 4, 4, 4])
    x = torch.randn(4, 3, 32, 32)
    model.train()
    assert not torch.equal(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))
    small = build_model("cnn_small")
    assert not any(isinstance(m, nn.Dropout) for m in small.modules())
    assert sum(isinstance(m, nn.MaxPool2d) for m in small.modules()) == 4


@pytest.mark.parametrize("kwargs, match", [({"dropout": 1.0}, "dropout"), ({"pool_last": "no"}, "pool_last")])
def test_vgg_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_model("cnn_small", **kwargs)


@pytest.mark.parametrize("name", ["vgg_cifar", "cnn_small", "vit_cifar", "vit_small", "retina_vvs"])
def test_specs_build_and_train_one_step(name):
    """Every spec builds with its options and a converted copy takes one LDFA training step (finite loss)."""
    spec = load_spec(name)
    shrink = {"vgg_cifar": {"widths": [8, 8, 8, 8]}, "vit_cifar": {"dim": 32, "depth": 2, "heads": 2},
              "retina_vvs": SMALL_RETINA}.get(name, {})
    spec = {**spec, **shrink}
    config = TrainConfig(model=spec, rule="ldfa", rule_options={"rank": 2})
    rule = config.make_rule()
    model = build_model(spec)
    model = bioplastic.convert(model, rule, seed=0, **conversion_options(spec, model, rule, exclude=config.exclude, ranks=config.ranks)).train()
    x = torch.randn(4, spec["in_channels"], 32, 32)
    loss = nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())
