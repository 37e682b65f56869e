"""Batch augmentation: each crop equals the padded image sliced at the drawn offset, flipping twice is the
identity, draws are reproducible from the generator, and no input is modified."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bioplastic.data.augment import RandomCropFlip, crop_offsets, horizontal_flip, random_crop


def _batch(n=16, c=3, h=8, w=10, seed=0):
    return torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("mode", ["constant", "reflect", "replicate"])
def test_crop_equals_slice_of_padded_image_at_drawn_offset(mode):
    x = _batch()
    before = x.clone()
    out = random_crop(x, 3, torch.Generator().manual_seed(7), padding_mode=mode)
    rows, cols = crop_offsets(len(x), 3, torch.Generator().manual_seed(7))
    padded = F.pad(x, (3, 3, 3, 3), mode=mode)
    for n in range(len(x)):  # the oracle loops; the implementation does not
        torch.testing.assert_close(out[n], padded[n, :, rows[n]:rows[n] + 8, cols[n]:cols[n] + 10], rtol=0, atol=0)
    assert torch.equal(x, before)
    assert out.shape == x.shape
    # the offsets span the whole range [0, 2 * padding]
    many_r, many_c = crop_offsets(2000, 3, torch.Generator().manual_seed(1))
    assert set(many_r.tolist()) == set(range(7)) == set(many_c.tolist())


def test_crop_fill_value_and_zero_padding():
    x = torch.ones(64, 1, 4, 4)
    out = random_crop(x, 4, torch.Generator().manual_seed(0), fill=-2.0)
    assert set(out.unique().tolist()) <= {1.0, -2.0} and (out == -2.0).any()
    same = random_crop(x, 0, torch.Generator().manual_seed(0))
    assert torch.equal(same, x) and same.data_ptr() != x.data_ptr()


def test_flip_twice_is_identity_and_flip_mirrors():
    x = _batch()
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    once = horizontal_flip(x, g1)
    twice = horizontal_flip(once, g2)  # same draws: the same images flipped back
    assert torch.equal(twice, x)
    flipped = horizontal_flip(x, torch.Generator(), p=1.0)
    assert torch.equal(flipped, x.flip(-1))
    assert torch.equal(horizontal_flip(x, torch.Generator(), p=0.0), x)
    # each image is either itself or its mirror image
    for n in range(len(x)):
        assert torch.equal(once[n], x[n]) or torch.equal(once[n], x[n].flip(-1))


def test_flip_probability_is_one_half():
    x = torch.arange(2).float().view(1, 1, 1, 2).expand(4000, 1, 1, 2)
    out = horizontal_flip(x, torch.Generator().manual_seed(0))
    frac = (out[:, 0, 0, 0] == 1).float().mean().item()
    assert abs(frac - 0.5) < 4 * (0.25 / 4000) ** 0.5


def test_same_seed_same_batches_different_seed_different():
    x = _batch()
    aug = RandomCropFlip(4)
    a = aug(x, torch.Generator().manual_seed(11))
    b = aug(x, torch.Generator().manual_seed(11))
    c = aug(x, torch.Generator().manual_seed(12))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_augment_is_picklable_for_spawned_workers():
    import pickle

    aug = pickle.loads(pickle.dumps(RandomCropFlip(2, flip=False, padding_mode="reflect")))
    assert (aug.padding, aug.flip, aug.padding_mode) == (2, False, "reflect")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cpu_generator_on_cuda_batch_matches_cpu():
    x = _batch()
    cpu = RandomCropFlip(4)(x, torch.Generator().manual_seed(3))
    gpu = RandomCropFlip(4)(x.cuda(), torch.Generator().manual_seed(3))
    assert torch.equal(cpu, gpu.cpu())


def test_bad_input():
    g = torch.Generator()
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        random_crop(torch.zeros(3, 8, 8), 2, g)
    with pytest.raises(ValueError, match="padding"):
        random_crop(_batch(), -1, g)
    with pytest.raises(ValueError, match="allowed: 'constant', 'reflect', 'replicate'"):
        random_crop(_batch(), 1, g, padding_mode="wrap")
    with pytest.raises(ValueError, match="probability"):
        horizontal_flip(_batch(), g, p=1.5)
