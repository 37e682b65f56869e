"""The embedded MNIST loader: shapes, published label counts, provenance, corrupt and missing files."""
from __future__ import annotations

import gzip
import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from bioplastic.data import load_dataset
from bioplastic.data.mnist import (
    MNIST_MEAN,
    MNIST_STD,
    TEST_IMAGES_FILE,
    TEST_LABELS_FILE,
    TRAIN_FILE,
    load_mnist,
    normalize,
    random_shift,
)

# From ../shared/data/README.md (LeCun et al.; the 5k subset is 500 per class).
README_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
README_SHA256 = {
    TEST_IMAGES_FILE: "167310007f03058885c7e95e6c0b19c20de5c7fd3031f4cbdadc9014a523d80b",
    TEST_LABELS_FILE: "fc607395669ec21321ea83e4b82c0544b7e8e63ff5b34337c06bc0a17cc0da3c",
    TRAIN_FILE: "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d",
}
EMBEDDED = Path(__file__).resolve().parents[2] / "bioplastic" / "data" / "mnist"


@pytest.fixture(scope="module")
def mnist():
    return load_mnist()


def test_shapes_dtypes_and_label_counts(mnist):
    assert mnist.x_train.shape == (5000, 1, 28, 28) and mnist.x_train.dtype == torch.uint8
    assert mnist.x_test.shape == (10000, 1, 28, 28) and mnist.x_test.dtype == torch.uint8
    assert mnist.y_train.dtype == torch.int64 and mnist.y_test.dtype == torch.int64
    assert np.bincount(mnist.y_test.numpy()).tolist() == README_TEST_COUNTS
    assert np.bincount(mnist.y_train.numpy()).tolist() == [500] * 10
    assert mnist.classes == [str(i) for i in range(10)] and mnist.n_classes == 10
    assert mnist.input_shape == (1, 28, 28)


def test_registry_returns_the_same_data(mnist):
    again = load_dataset("mnist")
    assert torch.equal(again.x_train, mnist.x_train) and torch.equal(again.y_test, mnist.y_test)


def test_embedded_files_are_the_published_ones():
    for name, digest in README_SHA256.items():
        assert hashlib.sha256((EMBEDDED / name).read_bytes()).hexdigest() == digest, name


def test_train_and_test_do_not_overlap(mnist):
    train = {hashlib.sha1(row).digest() for row in mnist.x_train.reshape(5000, -1).numpy()}
    test = {hashlib.sha1(row).digest() for row in mnist.x_test.reshape(10000, -1).numpy()}
    assert not train & test


def test_idx_images_match_their_labels(mnist):
    # A digit "1" has far fewer ink pixels than a "0" on average: checks images and labels are aligned.
    ink = (mnist.x_test.float() / 255).sum(dim=(1, 2, 3))
    assert ink[mnist.y_test == 1].mean() < 0.6 * ink[mnist.y_test == 0].mean()


def test_normalize_standardises_the_training_pixels(mnist):
    x = normalize(mnist.x_train)
    assert x.dtype == torch.float32
    # The constants are the full MNIST training set's; the 5k subset is close to them.
    assert abs(float(x.mean())) < 0.05 and abs(float(x.std()) - 1) < 0.05
    assert float(normalize(torch.zeros(1, dtype=torch.uint8))) == pytest.approx(-MNIST_MEAN / MNIST_STD)


def test_random_shift_matches_a_per_sample_reference():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(16, 2, 7, 9)
    before = x.clone()
    out = random_shift(x, gen, max_shift=2, fill=-1.5)
    assert torch.equal(x, before)  # input untouched
    # Reference: the same offsets, drawn from an identically seeded generator, applied one sample at a time.
    offsets = torch.randint(0, 5, (2, 16), generator=torch.Generator().manual_seed(3))
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2), value=-1.5)
    for i in range(16):
        r, c = int(offsets[0, i]), int(offsets[1, i])
        assert torch.equal(out[i], padded[i, :, r : r + 7, c : c + 9])
    # Same seed -> same shifts; a shift of 0 is the identity.
    assert torch.equal(out, random_shift(x, torch.Generator().manual_seed(3), max_shift=2, fill=-1.5))
    assert torch.equal(random_shift(x, gen, max_shift=0), x)
    with pytest.raises(ValueError, match="shape"):
        random_shift(x[0], gen)


def test_augment_is_attached_and_can_be_disabled(mnist):
    assert mnist.augment is not None
    x = normalize(mnist.x_train[:8])
    y = mnist.augment(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape
    # Shifting moves ink but never creates it: each image keeps at most its total ink.
    bg = normalize(torch.zeros(1, dtype=torch.uint8))
    assert torch.all((y - bg).sum(dim=(1, 2, 3)) <= (x - bg).sum(dim=(1, 2, 3)) + 1e-3)
    assert load_mnist(max_shift=0).augment is None
    with pytest.raises(ValueError, match="max_shift"):
        load_mnist(max_shift=-1)


def _copy_embedded(tmp_path: Path) -> Path:
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name in (TRAIN_FILE, TEST_IMAGES_FILE, TEST_LABELS_FILE):
        shutil.copy(EMBEDDED / name, folder / name)
        (folder / name).chmod(0o644)
    return folder


def test_loads_from_a_folder(tmp_path, mnist):
    data = load_mnist(_copy_embedded(tmp_path))
    assert torch.equal(data.x_test, mnist.x_test) and torch.equal(data.y_train, mnist.y_train)


def test_missing_folder_and_file_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_mnist(tmp_path / "nowhere")
    folder = _copy_embedded(tmp_path)
    (folder / TEST_LABELS_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=TEST_LABELS_FILE):
        load_mnist(folder)


@pytest.mark.parametrize("name", [TRAIN_FILE, TEST_IMAGES_FILE, TEST_LABELS_FILE])
def test_truncated_file_is_named(tmp_path, name):
    folder = _copy_embedded(tmp_path)
    raw = (folder / name).read_bytes()
    (folder / name).write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match=f"{name}.*corrupt"):
        load_mnist(folder)


def test_not_gzip_is_named(tmp_path):
    folder = _copy_embedded(tmp_path)
    (folder / TEST_IMAGES_FILE).write_bytes(b"this is not a gzip file")
    with pytest.raises(ValueError, match=f"{TEST_IMAGES_FILE}.*corrupt"):
        load_mnist(folder)


def test_wrong_idx_header_is_named(tmp_path):
    folder = _copy_embedded(tmp_path)
    with gzip.open(folder / TEST_LABELS_FILE, "wb") as fh:  # an images header in the labels file
        fh.write((2051).to_bytes(4, "big") + (10).to_bytes(4, "big") + bytes(10))
    with pytest.raises(ValueError, match=f"{TEST_LABELS_FILE}.*magic"):
        load_mnist(folder)


def test_wrong_label_counts_are_named(tmp_path):
    folder = _copy_embedded(tmp_path)
    lines = gzip.decompress((folder / TRAIN_FILE).read_bytes()).decode().splitlines()
    lines[0] = lines[0].rsplit(",", 1)[0] + ",9"  # relabel one "0" as a "9"
    (folder / TRAIN_FILE).write_bytes(gzip.compress(("\n".join(lines) + "\n").encode(), compresslevel=1))
    with pytest.raises(ValueError, match=f"{TRAIN_FILE}.*label counts"):
        load_mnist(folder)


def test_bad_csv_columns_are_named(tmp_path):
    folder = _copy_embedded(tmp_path)
    (folder / TRAIN_FILE).write_bytes(gzip.compress(b"1,2,3\n4,5,6\n"))
    with pytest.raises(ValueError, match=f"{TRAIN_FILE}.*785 columns"):
        load_mnist(folder)


@pytest.mark.needs_shared_data
def test_embedded_copy_equals_shared_data(shared_data):
    for name in README_SHA256:
        assert (shared_data / "mnist" / name).read_bytes() == (EMBEDDED / name).read_bytes()
