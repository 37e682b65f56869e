"""CIFAR-10 loader: both source layouts decode to the right pixels and labels, the cache is used and written
atomically, and missing or corrupt files raise errors naming them."""
from __future__ import annotations

import io
import pickle
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import bioplastic.data.cifar10 as cifar
from bioplastic.data import ArrayDataset, load_dataset
from bioplastic.data.augment import RandomCropFlip
from bioplastic.data.cifar10 import CLASSES, load_cifar10, to_grayscale


def _images(n, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, size=n)


def _write_zip(path: Path, split: str, x, y, fmt="PNG"):
    counters = {}
    with zipfile.ZipFile(path, "w") as zf:
        # write in a scrambled order: the loader sorts by class then file name
        for i in np.random.default_rng(1).permutation(len(x)):
            cls = CLASSES[y[i]]
            buf = io.BytesIO()
            Image.fromarray(x[i].transpose(1, 2, 0)).save(buf, format=fmt)
            zf.writestr(f"{split}/{cls}/{i:04d}.{fmt.lower()[:3]}", buf.getvalue())
            counters[cls] = counters.get(cls, 0) + 1


@pytest.fixture
def zip_source(tmp_path):
    x_tr, y_tr = _images(40, 0)
    x_te, y_te = _images(12, 1)
    folder = tmp_path / "cifar"
    folder.mkdir()
    _write_zip(folder / "cifar10-jpeg-train.zip", "train", x_tr, y_tr)
    _write_zip(folder / "cifar10-jpeg-test.zip", "test", x_te, y_te)
    return folder, (x_tr, y_tr, x_te, y_te)


def _sorted(x, y):
    # the loader's order for the zip layout: by class, then by file name (= original index here), then the
    # documented fixed permutation
    order = np.lexsort((np.arange(len(y)), y))[np.random.default_rng(0).permutation(len(y))]
    return x[order], y[order]


def _pickle_batches(folder: Path, x_tr, y_tr, x_te, y_te):
    folder.mkdir(parents=True)
    chunks = np.array_split(np.arange(len(x_tr)), 5)
    for i, idx in enumerate(chunks, start=1):
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(
            {b"data": x_tr[idx].reshape(len(idx), -1), b"labels": y_tr[idx].tolist()}))
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": x_te.reshape(len(x_te), -1), b"labels": y_te.tolist()}))
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [c.encode() for c in CLASSES]}))


def test_zip_layout_decodes_exact_pixels_and_labels(zip_source, tmp_path):
    folder, (x_tr, y_tr, x_te, y_te) = zip_source
    ds = load_cifar10(folder, cache_dir=tmp_path / "cache")
    assert isinstance(ds, ArrayDataset) and ds.classes == list(CLASSES)
    assert ds.x_train.dtype == torch.uint8 and ds.x_train.shape == (40, 3, 32, 32)
    xs, ys = _sorted(x_tr, y_tr)
    np.testing.assert_array_equal(ds.x_train.numpy(), xs)  # PNG members: lossless
    np.testing.assert_array_equal(ds.y_train.numpy(), ys)
    xs, ys = _sorted(x_te, y_te)
    np.testing.assert_array_equal(ds.x_test.numpy(), xs)
    np.testing.assert_array_equal(ds.y_test.numpy(), ys)
    assert isinstance(ds.augment, RandomCropFlip)


def test_pickle_layout_and_tarball_give_the_original_arrays(tmp_path):
    x_tr, y_tr = _images(25, 2)
    x_te, y_te = _images(7, 3)
    root = tmp_path / "user"
    _pickle_batches(root / "cifar-10-batches-py", x_tr, y_tr, x_te, y_te)
    for source in (root, root / "cifar-10-batches-py"):
        ds = load_dataset("cifar10", source, cache_dir=tmp_path / "cache")
        np.testing.assert_array_equal(ds.x_train.numpy(), x_tr)
        np.testing.assert_array_equal(ds.y_train.numpy(), y_tr)
        np.testing.assert_array_equal(ds.x_test.numpy(), x_te)
    tar = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(tar, "w:gz") as tf:
        tf.add(root / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    ds = load_cifar10(tar, use_cache=False)
    np.testing.assert_array_equal(ds.x_test.numpy(), x_te)


def test_transform_normalises_with_training_statistics(zip_source, tmp_path):
    folder, (x_tr, *_ ) = zip_source
    ds = load_cifar10(folder, cache_dir=tmp_path / "cache")
    z = ds.transform(ds.x_train)
    assert z.dtype == torch.float32
    scaled = x_tr.astype(np.float64) / 255
    np.testing.assert_allclose(ds.meta["mean"], scaled.mean(axis=(0, 2, 3)), rtol=1e-10)
    np.testing.assert_allclose(ds.meta["std"], scaled.std(axis=(0, 2, 3)), rtol=1e-10)
    torch.testing.assert_close(z.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.std(dim=(0, 2, 3), unbiased=False), torch.ones(3), atol=1e-5, rtol=0)


def test_grayscale_equals_pillow_luma(zip_source, tmp_path):
    folder, _ = zip_source
    ds = load_cifar10(folder, cache_dir=tmp_path / "cache", grayscale=True, augment="none")
    rgb = load_cifar10(folder, cache_dir=tmp_path / "cache").x_train.numpy()
    assert ds.x_train.shape == (40, 1, 32, 32) and ds.augment is None
    pil = np.stack([np.asarray(Image.fromarray(im.transpose(1, 2, 0)).convert("L")) for im in rgb])
    np.testing.assert_array_equal(ds.x_train.numpy()[:, 0], pil)
    np.testing.assert_array_equal(to_grayscale(rgb)[:, 0], pil)


def test_cache_is_written_once_and_reused(zip_source, tmp_path, monkeypatch):
    folder, _ = zip_source
    cache = tmp_path / "cache"
    first = load_cifar10(folder, cache_dir=cache)
    files = list(cache.iterdir())
    assert len(files) == 1 and files[0].suffix == ".npz"  # no temporary file left behind

    def fail(*args, **kwargs):
        raise AssertionError("decoded again despite a valid cache")

    monkeypatch.setattr(cifar, "_decode", fail)
    second = load_cifar10(folder, cache_dir=cache)
    assert torch.equal(first.x_train, second.x_train) and torch.equal(first.y_test, second.y_test)


def test_corrupt_cache_is_rebuilt(zip_source, tmp_path, caplog):
    folder, _ = zip_source
    cache = tmp_path / "cache"
    good = load_cifar10(folder, cache_dir=cache)
    (path,) = cache.iterdir()
    path.write_bytes(b"not an npz file")
    with caplog.at_level("WARNING"):
        again = load_cifar10(folder, cache_dir=cache)
    assert "unreadable" in caplog.text
    assert torch.equal(good.x_train, again.x_train)
    assert np.load(path)["x_train"].shape == (40, 3, 32, 32)  # rewritten


def test_missing_files_are_named(zip_source, tmp_path):
    folder, _ = zip_source
    (folder / "cifar10-jpeg-test.zip").unlink()
    with pytest.raises(FileNotFoundError, match="cifar10-jpeg-test.zip"):
        load_cifar10(folder, cache_dir=tmp_path / "cache")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_cifar10(tmp_path / "nowhere", cache_dir=tmp_path / "cache")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no CIFAR-10 files"):
        load_cifar10(empty, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_corrupt_zip_and_corrupt_image_are_named(zip_source, tmp_path):
    folder, _ = zip_source
    cache = tmp_path / "cache"
    bad_zip = folder / "cifar10-jpeg-train.zip"
    original = bad_zip.read_bytes()
    bad_zip.write_bytes(b"garbage" * 100)
    with pytest.raises(ValueError, match="corrupt CIFAR-10 zip file .*cifar10-jpeg-train.zip"):
        load_cifar10(folder, cache_dir=cache)
    bad_zip.write_bytes(original)
    with zipfile.ZipFile(bad_zip, "a") as zf:
        zf.writestr("train/cat/9999.jpg", b"\xff\xd8 not a jpeg")
    with pytest.raises(ValueError, match="corrupt image 'train/cat/9999.jpg'"):
        load_cifar10(folder, cache_dir=cache)
    assert not cache.exists() or not any(cache.iterdir())  # nothing half-written


def test_corrupt_pickle_batch_is_named(tmp_path):
    x_tr, y_tr = _images(10, 4)
    x_te, y_te = _images(5, 5)
    root = tmp_path / "cifar-10-batches-py"
    _pickle_batches(root, x_tr, y_tr, x_te, y_te)
    (root / "data_batch_3").write_bytes(b"\x80\x04garbage")
    with pytest.raises(ValueError, match="data_batch_3"):
        load_cifar10(root, use_cache=False)
    (root / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_3"):
        load_cifar10(root, use_cache=False)


def test_bad_options(zip_source, tmp_path, monkeypatch):
    folder, _ = zip_source
    with pytest.raises(ValueError, match="allowed: 'crop_flip', 'flip', 'none'"):
        load_cifar10(folder, augment="autoaugment")
    monkeypatch.delenv("BIOPLASTIC_SHARED_DATA", raising=False)
    with pytest.raises(ValueError, match="not embedded"):
        load_cifar10(None)


@pytest.mark.needs_shared_data
def test_real_test_zip_has_the_cifar10_test_set(shared_data):
    x, y = cifar._decode_zip(shared_data / "cifar10" / "cifar10-jpeg-test.zip", "test")
    assert x.shape == (10000, 3, 32, 32) and x.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(y, minlength=10), np.full(10, 1000))
    assert len(np.unique(y[:100])) == 10  # shuffled: a prefix holds every class
    assert 90 < x.mean() < 140  # natural images, not blank


@pytest.mark.slow
@pytest.mark.needs_shared_data
def test_real_files_load_completely(shared_data, tmp_path):
    ds = load_cifar10(shared_data / "cifar10", cache_dir=tmp_path)
    assert ds.x_train.shape == (50000, 3, 32, 32) and ds.x_test.shape == (10000, 3, 32, 32)
    np.testing.assert_array_equal(ds.y_train.bincount().numpy(), np.full(10, 5000))


def test_normalize_is_picklable_and_exact():
    from bioplastic.data.cifar10 import Normalize

    norm = Normalize([0.5, 0.25], [0.25, 0.5])
    x = torch.tensor([0, 255], dtype=torch.uint8).view(1, 2, 1, 1).expand(3, 2, 2, 2)
    expected = torch.tensor([(0 - 0.5) / 0.25, (1 - 0.25) / 0.5]).view(1, 2, 1, 1).expand(3, 2, 2, 2)
    for fn in (norm, pickle.loads(pickle.dumps(norm))):
        torch.testing.assert_close(fn(x), expected)
    with pytest.raises(ValueError, match=r"\(N, 2, H, W\)"):
        norm(torch.zeros(3, 1, 2, 2, dtype=torch.uint8))
