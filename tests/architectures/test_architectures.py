"""CNN, ViT and retina-VVS builders: output shapes, parameter counts from each architecture's closed form,
module names the rule core relies on, and attention checked against torch's reference implementation."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from bioplastic.architectures import available_specs, build_model, load_spec
from bioplastic.architectures.cnn import VGG, scaled_widths
from bioplastic.architectures.retina import RETINA_LAYERS, RetinaVVS
from bioplastic.architectures.vit import Attention, ViT, vit_ranks


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def vgg_count(c_in, widths, convs_per_block, head_widths, n_classes, batch_norm=True):
    total = 0
    for w in widths:
        for _ in range(convs_per_block):
            total += 9 * c_in * w + (2 * w if batch_norm else w)  # kernel + BN affine (or conv bias)
            c_in = w
    for w in list(head_widths) + [n_classes]:
        total += (c_in + 1) * w
        c_in = w
    return total


def vit_count(image, patch, c_in, d, dim, depth, mlp_ratio, cls=True):
    t = (image // patch) ** 2
    h = round(dim * mlp_ratio)
    block = 4 * dim + (3 * dim * dim + 3 * dim) + (dim * dim + dim) + (2 * dim * h + h + dim)
    return (patch * patch * c_in * dim + dim) + (t + cls) * dim + cls * dim + depth * block + 2 * dim + (dim + 1) * d


def retina_count(c_in, d, s, C, nbn, k, depth, F, batch_norm=False, V=None):
    # conv biases (one per output channel), or with batch norm no bias and a BN scale + shift per channel;
    # V: channels of the VVS layers (default C)
    V = C if V is None else V
    out_channels = C + nbn + depth * V
    convs = k * k * (c_in * C + C * nbn + nbn * V + (depth - 1) * V * V) + (1 + batch_norm) * out_channels
    return convs + (V * s * s + 1) * F + (F + 1) * d


@pytest.mark.parametrize("name", ["vgg_cifar", "cnn_small", "vit_cifar", "vit_small", "retina_vvs"])
def test_specs_build_with_closed_form_parameter_count_and_output_shape(name):
    spec = load_spec(name)
    model = build_model(name)
    if spec["architecture"] == "vgg":
        widths = scaled_widths(spec["widths"], spec.get("width_multiplier", 1.0))
        expected = vgg_count(spec["in_channels"], widths, spec["convs_per_block"], spec["head_widths"],
                             spec["n_classes"], spec["batch_norm"])
    elif spec["architecture"] == "vit":
        expected = vit_count(spec["image_size"], spec["patch_size"], spec["in_channels"], spec["n_classes"],
                             spec["dim"], spec["depth"], spec["mlp_ratio"], spec["pool"] == "cls")
    else:
        expected = retina_count(spec["in_channels"], spec["n_classes"], spec["image_size"], spec["channels"],
                                spec["bottleneck"], spec["kernel_size"], spec["vvs_depth"], spec["fc_width"],
                                spec["batch_norm"])
    assert n_params(model) == expected
    x = torch.zeros(2, spec["in_channels"], 32, 32)
    with torch.no_grad():
        assert model.eval()(x).shape == (2, spec["n_classes"])


def test_all_issue_specs_are_shipped():
    assert {"vgg_cifar", "cnn_small", "vit_cifar", "vit_small", "retina_vvs"} <= set(available_specs())


def test_vgg_cifar_is_the_papers_network():
    # the authors' CIFAR10CNNBP (models/ConvNet.py of maherhanut1/Low-Dimensional-Feedback)
    model = build_model("vgg_cifar")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 256, 256, 512, 512]
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs)
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 3  # none after the last block
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 8
    assert isinstance(model.pool, nn.AdaptiveAvgPool2d)
    # the feature map before the head is 512 x 4 x 4 for 32x32 inputs
    with torch.no_grad():
        assert model.features(torch.zeros(1, 3, 32, 32)).shape == (1, 512, 4, 4)
    # head 512 -> 256 -> ReLU -> dropout 0.4 -> 10
    assert [(n, type(m).__name__) for n, m in model.head.named_children()] == [
        ("fc1", "Linear"), ("relu1", "ReLU"), ("drop1", "Dropout"), ("out", "Linear")]
    assert (model.head.fc1.in_features, model.head.fc1.out_features, model.head.drop1.p) == (512, 256, 0.4)
    assert (model.head.out.in_features, model.head.out.out_features) == (256, 10)


def test_width_multiplier_scales_channels():
    spec = load_spec("vgg_cifar")
    half = build_model(spec, width_multiplier=0.5)
    assert [m.out_channels for m in half.modules() if isinstance(m, nn.Conv2d)] == [32, 32, 64, 64, 128, 128, 256, 256]
    assert n_params(half) == vgg_count(3, [32, 64, 128, 256], 2, spec["head_widths"], 10)
    with pytest.raises(ValueError, match="width_multiplier"):
        build_model(spec, width_multiplier=0)


def test_vgg_module_names_for_conversion():
    names = [n for n, m in build_model("cnn_small").named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert names == ["features.conv1_1", "features.conv2_1", "features.conv3_1", "features.conv4_1", "head.out"]


def test_vit_cifar_is_the_papers_network():
    model = build_model("vit_cifar")
    assert isinstance(model, ViT)
    assert model.patch_embed.kernel_size == (4, 4) and model.patch_embed.stride == (4, 4)
    assert model.pos_embed.shape == (1, 64 + 1, 384)
    assert len(model.blocks) == 8
    blk = model.blocks[0]
    assert blk.attn.heads == 8
    assert (blk.attn.qkv.in_features, blk.attn.qkv.out_features) == (384, 3 * 384)
    assert (blk.mlp.fc1.in_features, blk.mlp.fc1.out_features) == (384, 768)
    # every projection is a swappable nn.Linear, nothing functional
    assert not any(isinstance(m, nn.MultiheadAttention) for m in model.modules())


def test_vit_ranks_give_three_r_to_fused_qkv():
    model = build_model("vit_small")
    ranks = vit_ranks(model, 10)
    assert ranks == {f"blocks.{i}.attn.qkv": 30 for i in range(4)}


def test_attention_matches_torch_multihead_attention():
    torch.manual_seed(0)
    dim, heads = 32, 4
    ours = Attention(dim, heads)
    ref = nn.MultiheadAttention(dim, heads, batch_first=True)
    with torch.no_grad():
        ref.in_proj_weight.copy_(ours.qkv.weight)
        ref.in_proj_bias.copy_(ours.qkv.bias)
        ref.out_proj.weight.copy_(ours.proj.weight)
        ref.out_proj.bias.copy_(ours.proj.bias)
    x = torch.randn(3, 7, dim)
    expected, _ = ref(x, x, x, need_weights=False)
    torch.testing.assert_close(ours(x), expected, rtol=1e-5, atol=1e-6)


def test_vit_mean_pool_has_no_class_token():
    model = ViT(dim=16, depth=1, heads=2, pool="mean", n_classes=5)
    assert model.cls_token is None and model.pos_embed.shape == (1, 64, 16)
    assert n_params(model) == vit_count(32, 4, 3, 5, 16, 1, 2.0, cls=False)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 5)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"dim": 30, "heads": 4}, "divisible by the number of heads"),
     ({"image_size": 30, "patch_size": 4}, "not divisible by patch_size"),
     ({"pool": "max"}, "allowed: 'cls', 'mean'"),
     ({"depth": 0}, "depth")],
)
def test_vit_bad_configuration(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ViT(**{"dim": 16, "depth": 1, "heads": 2, **kwargs})


def test_vit_rejects_wrong_image_size():
    with pytest.raises(ValueError, match="32x32"):
        ViT(dim=16, depth=1, heads=2)(torch.zeros(1, 3, 28, 28))


def test_retina_vvs_structure_and_bottleneck():
    model = build_model("retina_vvs", bottleneck=1, fc_width=64)
    convs = {n: m for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    assert list(convs) == ["retina.conv1", "retina.conv2", "vvs.conv1", "vvs.conv2", "vvs.conv3"]
    assert all(m.kernel_size == (9, 9) and m.padding == (4, 4) for m in convs.values())
    assert convs["retina.conv1"].in_channels == 1 and convs["retina.conv2"].out_channels == 1
    assert n_params(model) == retina_count(1, 10, 32, 32, 1, 9, 3, 64, batch_norm=True)
    plain = build_model("retina_vvs", bottleneck=1, fc_width=64, vvs_depth=2, batch_norm=False, dropout=0.0)
    assert n_params(plain) == retina_count(1, 10, 32, 32, 1, 9, 2, 64)  # Lindsey et al.'s network
    names = dict(model.named_modules())
    assert all(layer in names for layer in RETINA_LAYERS)
    # 'same' padding keeps the retina's output at the image size
    with torch.no_grad():
        assert model.retina(torch.zeros(2, 1, 32, 32)).shape == (2, 1, 32, 32)


def test_retina_vvs_channels_narrow_the_ventral_stream_only():
    model = RetinaVVS(image_size=24, channels=16, bottleneck=1, vvs_channels=8, vvs_depth=2, fc_width=32)
    convs = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)}
    assert [(m.in_channels, m.out_channels) for m in convs.values()] == [(1, 16), (16, 1), (1, 8), (8, 8)]
    assert model.classifier.fc.in_features == 8 * 24 * 24
    assert n_params(model) == retina_count(1, 10, 24, 16, 1, 9, 2, 32, V=8)
    assert model(torch.zeros(2, 1, 24, 24)).shape == (2, 10)
    default = RetinaVVS(image_size=24, channels=16, bottleneck=1, vvs_depth=2, fc_width=32)
    assert n_params(default) == retina_count(1, 10, 24, 16, 1, 9, 2, 32)  # vvs_channels = channels


def test_retina_bad_configuration():
    with pytest.raises(ValueError, match="odd"):
        RetinaVVS(kernel_size=8)
    with pytest.raises(ValueError, match="bottleneck"):
        RetinaVVS(bottleneck=0)
    with pytest.raises(ValueError, match="vvs_channels"):
        RetinaVVS(vvs_channels=0)


def test_vgg_bad_configuration():
    with pytest.raises(ValueError, match="widths"):
        VGG(widths=[])
    with pytest.raises(ValueError, match="convs_per_block"):
        VGG(convs_per_block=0)


def test_builders_are_deterministic_under_a_seed():
    torch.manual_seed(3)
    a = build_model("vit_small")
    torch.manual_seed(3)
    b = build_model("vit_small")
    for (na, pa), (nb, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert na == nb and torch.equal(pa, pb)
