"""CIFAR-10 from local files: the JPEG zip files of ``../shared/data/cifar10`` or the python-pickle layout.

CIFAR-10 (Krizhevsky 2009, "Learning multiple layers of features from tiny images", tech. report, University
of Toronto): 50,000 training and 10,000 test 32x32 RGB images in 10 classes. Two sources are read, nothing is
downloaded:

* ``cifar10-jpeg-train.zip`` / ``cifar10-jpeg-test.zip``, each holding ``<split>/<class>/NNNN.jpg``
  (the project's copy; JPEG re-encodings at quality about 75, so pixels differ slightly from the original
  and absolute accuracies are not the literature's);
* the standard python version, a folder ``cifar-10-batches-py`` (``data_batch_1`` .. ``data_batch_5``,
  ``test_batch``, ``batches.meta``) or the archive ``cifar-10-python.tar.gz`` that holds it.

The images are decoded once into a uint8 cache (``.npz``) in a cache folder chosen by the caller (default
``$XDG_CACHE_HOME/bioplastic`` or ``~/.cache/bioplastic``), written atomically (temporary file + rename); the
cache key is derived from the source files' names, sizes and modification times, so a changed source is
decoded again. The returned :class:`~bioplastic.data.ArrayDataset` keeps uint8 images (N, C, 32, 32) and
normalises batches on their device.
"""
from __future__ import annotations

import hashlib
import io
import logging
import os
import pickle
import tarfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from bioplastic._checks import check_choice
from bioplastic.data.augment import RandomCropFlip
from bioplastic.data.base import DATA_PAGE, ArrayDataset
from bioplastic.io import atomic_write

__all__ = ["load_cifar10", "CLASSES", "Normalize", "default_cache_dir", "AUGMENTATIONS"]

log = logging.getLogger(__name__)

#: Class names in the standard CIFAR-10 label order (label i is ``CLASSES[i]``).
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
ZIP_FILES = {"train": "cifar10-jpeg-train.zip", "test": "cifar10-jpeg-test.zip"}
PICKLE_DIR = "cifar-10-batches-py"
PICKLE_TAR = "cifar-10-python.tar.gz"
PICKLE_BATCHES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
_CACHE_VERSION = 2
_ORDER_SEED = 0  # the zip layout's images are put in np.random.default_rng(0).permutation order
CITATION = "Krizhevsky (2009) Learning multiple layers of features from tiny images. Tech. report, U. Toronto"

Augmentation = Literal["crop_flip", "flip", "none"]
AUGMENTATIONS = ("crop_flip", "flip", "none")


class Normalize:
    """``transform(x_uint8) -> float32`` on the batch's device: ``(x / 255 - mean) / std`` per channel.

    Picklable (usable in spawned data-parallel workers).

    Parameters
    ----------
    mean, std : sequence of float
        Per-channel mean and standard deviation of the pixel values scaled to [0, 1].
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        if len(self.mean) != len(self.std) or any(s <= 0 for s in self.std):
            raise ValueError(f"mean {self.mean} and std {self.std} must have equal lengths and std > 0")

        self._on_device: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def _constants(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        # built once per device: no host-to-device copy (and no possible sync) in the training step
        if device not in self._on_device:
            mean = torch.tensor(self.mean, dtype=torch.float32, device=device)[:, None, None]
            std = torch.tensor(self.std, dtype=torch.float32, device=device)[:, None, None]
            self._on_device[device] = (mean, std)
        return self._on_device[device]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != len(self.mean):
            raise ValueError(f"expected images (N, {len(self.mean)}, H, W), got {tuple(x.shape)}")
        mean, std = self._constants(x.device)
        return (x.to(torch.float32) / 255.0 - mean) / std

    def __getstate__(self) -> dict:
        return {"mean": self.mean, "std": self.std}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["mean"], state["std"])

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean}, std={self.std})"


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/bioplastic`` if set, else ``~/.cache/bioplastic``."""
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "bioplastic"


# ----------------------------------------------------------------------------------------------- sources
def _find_source(path: Path) -> tuple[str, list[Path]]:
    """Return ("zip", [train.zip, test.zip]) or ("pickle", [dir or tar]) for a user-given path."""
    if not path.exists():
        raise FileNotFoundError(f"CIFAR-10 path does not exist: {path} (where to get CIFAR-10: {DATA_PAGE})")
    if path.is_file():
        if path.name.endswith((".tar.gz", ".tgz")):
            return "pickle_tar", [path]
        if path.suffix == ".zip":
            raise ValueError(f"{path}: give the folder holding both {ZIP_FILES['train']} and "
                             f"{ZIP_FILES['test']}, not one zip file")
        raise ValueError(f"{path} is not a CIFAR-10 source (expected a folder, or {PICKLE_TAR})")
    zips = [path / ZIP_FILES["train"], path / ZIP_FILES["test"]]
    if any(z.exists() for z in zips):
        for z in zips:
            if not z.is_file():
                raise FileNotFoundError(f"CIFAR-10 file missing: {z}")
        return "zip", zips
    for candidate in (path, path / PICKLE_DIR):
        if (candidate / "batches.meta").exists() or (candidate / "test_batch").exists():
            for name in PICKLE_BATCHES["train"] + PICKLE_BATCHES["test"]:
                if not (candidate / name).is_file():
                    raise FileNotFoundError(f"CIFAR-10 file missing: {candidate / name}")
            return "pickle_dir", [candidate / n for n in PICKLE_BATCHES["train"] + PICKLE_BATCHES["test"]]
    if (path / PICKLE_TAR).is_file():
        return "pickle_tar", [path / PICKLE_TAR]
    raise FileNotFoundError(
        f"no CIFAR-10 files in {path}: expected {ZIP_FILES['train']} and {ZIP_FILES['test']}, "
        f"a {PICKLE_DIR}/ folder, or {PICKLE_TAR} (where to get them: {DATA_PAGE})")


def _decode_zip(zpath: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image, UnidentifiedImageError

    try:
        zf = zipfile.ZipFile(zpath)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ValueError(f"corrupt CIFAR-10 zip file {zpath}: {exc}") from exc
    with zf:
        members = []
        for info in zf.infolist():
            if info.is_dir():
                continue
            parts = info.filename.split("/")
            if len(parts) != 3 or not parts[2].lower().endswith((".jpg", ".jpeg", ".png")):
                continue
            if parts[0] != split:
                raise ValueError(f"{zpath}: member {info.filename!r} is not under '{split}/'")
            if parts[1] not in CLASSES:
                raise ValueError(f"{zpath}: member {info.filename!r} has unknown class {parts[1]!r}; "
                                 f"expected one of {', '.join(CLASSES)}")
            members.append((CLASSES.index(parts[1]), parts[2], info.filename))
        if not members:
            raise ValueError(f"{zpath} holds no '{split}/<class>/NNNN.jpg' images")
        members.sort()
        # a fixed pseudo-random order (as in the original batches), so that any prefix holds every class
        order = np.random.default_rng(_ORDER_SEED).permutation(len(members))
        members = [members[i] for i in order]
        x = np.empty((len(members), 32, 32, 3), dtype=np.uint8)
        y = np.fromiter((m[0] for m in members), dtype=np.int64, count=len(members))
        for i, (_, _, name) in enumerate(members):  # decoding is I/O, once per cache build
            try:
                with Image.open(io.BytesIO(zf.read(name))) as img:
                    arr = np.asarray(img.convert("RGB"))
            except (UnidentifiedImageError, OSError, zipfile.BadZipFile, ValueError) as exc:
                raise ValueError(f"corrupt image {name!r} in {zpath}: {exc}") from exc
            if arr.shape != (32, 32, 3):
                raise ValueError(f"image {name!r} in {zpath} has shape {arr.shape}, expected (32, 32, 3)")
            x[i] = arr
    return x.transpose(0, 3, 1, 2).copy(), y


def _unpickle_batch(raw: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        batch = pickle.loads(raw, encoding="bytes")
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except Exception as exc:  # pickle raises many types on garbage
        raise ValueError(f"corrupt CIFAR-10 batch file {where}: {exc}") from exc
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise ValueError(f"CIFAR-10 batch file {where} has data of shape {data.shape}, expected (N, 3072)")
    if labels.min() < 0 or labels.max() >= len(CLASSES):
        raise ValueError(f"CIFAR-10 batch file {where} has labels outside 0..9")
    return data.reshape(-1, 3, 32, 32), labels


def _decode_pickle(kind: str, files: list[Path]) -> dict[str, np.ndarray]:
    raw: dict[str, tuple[bytes, str]] = {}
    if kind == "pickle_dir":
        for f in files:
            raw[f.name] = (f.read_bytes(), str(f))
    else:
        try:
            with tarfile.open(files[0], "r:gz") as tf:
                for name in PICKLE_BATCHES["train"] + PICKLE_BATCHES["test"]:
                    try:
                        member = tf.extractfile(f"{PICKLE_DIR}/{name}")
                    except KeyError:
                        member = None
                    if member is None:
                        raise FileNotFoundError(f"CIFAR-10 file missing: {files[0]}:{PICKLE_DIR}/{name}")
                    raw[name] = (member.read(), f"{files[0]}:{PICKLE_DIR}/{name}")
        except (tarfile.TarError, OSError, EOFError) as exc:
            if isinstance(exc, FileNotFoundError):
                raise
            raise ValueError(f"corrupt CIFAR-10 archive {files[0]}: {exc}") from exc
    out = {}
    for split in ("train", "test"):
        parts = [_unpickle_batch(*raw[name]) for name in PICKLE_BATCHES[split]]
        out[f"x_{split}"] = np.concatenate([p[0] for p in parts])
        out[f"y_{split}"] = np.concatenate([p[1] for p in parts])
    return out


def _cache_key(kind: str, files: list[Path]) -> str:
    h = hashlib.sha256(f"v{_CACHE_VERSION}:{kind}".encode())
    for f in files:
        st = f.stat()
        h.update(f"{f.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def _read_cache(path: Path) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    except Exception as exc:  # a damaged cache is rebuilt, never trusted
        log.warning("CIFAR-10 cache %s is unreadable (%s); decoding the source again", path, exc)
        return None
    ok = (arrays["x_train"].dtype == np.uint8 and arrays["x_train"].ndim == 4
          and arrays["x_train"].shape[1:] == (3, 32, 32) and len(arrays["y_train"]) == len(arrays["x_train"])
          and arrays["x_test"].shape[1:] == (3, 32, 32) and len(arrays["y_test"]) == len(arrays["x_test"]))
    if not ok:
        log.warning("CIFAR-10 cache %s has unexpected contents; decoding the source again", path)
        return None
    return arrays


def _write_cache(path: Path, arrays: dict[str, np.ndarray]) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:  # a file object: np.savez would append ".npz" to a bare path
            np.savez(fh, **arrays)

    atomic_write(path, write)


def _decode(kind: str, files: list[Path]) -> dict[str, np.ndarray]:
    if kind == "zip":
        x_tr, y_tr = _decode_zip(files[0], "train")
        x_te, y_te = _decode_zip(files[1], "test")
        return {"x_train": x_tr, "y_train": y_tr, "x_test": x_te, "y_test": y_te}
    return _decode_pickle(kind, files)


def to_grayscale(x: np.ndarray) -> np.ndarray:
    """Luma of uint8 RGB images (N, 3, H, W) -> (N, 1, H, W) uint8, ``L = 0.299 R + 0.587 G + 0.114 B``
    (ITU-R BT.601) in Pillow's 16-bit fixed point, so the result equals ``Image.convert("L")`` exactly."""
    weights = np.array([19595, 38470, 7471], dtype=np.uint32)
    lum = np.tensordot(weights, x.astype(np.uint32), axes=([0], [1]))  # (N, H, W)
    return ((lum + 0x8000) >> 16).astype(np.uint8)[:, None]


def _channel_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation of uint8 images (N, C, H, W) scaled to [0, 1], computed
    exactly from 256-bin histograms (fast, no float copy of the data)."""
    levels = np.arange(256, dtype=np.float64) / 255.0
    means, stds = [], []
    for c in range(x.shape[1]):
        counts = np.bincount(x[:, c].reshape(-1), minlength=256).astype(np.float64)
        p = counts / counts.sum()
        m = float(p @ levels)
        means.append(m)
        stds.append(float(np.sqrt(max(p @ (levels - m) ** 2, 1e-12))))
    return np.array(means), np.array(stds)


def load_cifar10(
    path: str | os.PathLike | None = None,
    *,
    grayscale: bool = False,
    augment: Augmentation = "crop_flip",
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
) -> ArrayDataset:
    """Load CIFAR-10 from local files into an :class:`~bioplastic.data.ArrayDataset`.

    Parameters
    ----------
    path : path-like
        A folder holding ``cifar10-jpeg-train.zip`` and ``cifar10-jpeg-test.zip`` (e.g. ``../shared/data/cifar10``),
        a ``cifar-10-batches-py`` folder (or its parent), or ``cifar-10-python.tar.gz``. If None, the
        ``cifar10`` folder under ``$BIOPLASTIC_SHARED_DATA`` is used when that variable is set.
    grayscale : bool
        Convert to one luma channel (BT.601), e.g. for the retina-VVS net (Lindsey et al. 2019).
    augment : {"crop_flip", "flip", "none"}
        Training-batch augmentation on the device: random 32x32 crop of the image padded by 4 and random
        horizontal flip (:class:`~bioplastic.data.augment.RandomCropFlip`), flip only, or none.
    cache_dir : path-like, optional
        Where the decoded uint8 arrays are cached (default :func:`default_cache_dir`). Pick a folder outside
        any source repository.
    use_cache : bool
        Read and write the cache (False decodes every time and writes nothing).

    Returns
    -------
    ArrayDataset
        ``x_train`` uint8 (50000, C, 32, 32), ``x_test`` uint8 (10000, C, 32, 32), C = 3 (1 if grayscale);
        ``y_*`` int64 labels in the order of :data:`CLASSES`; ``transform`` = :class:`Normalize` with the
        per-channel mean and standard deviation of the training images; ``meta`` with source, cache file and
        citation. For the zip source the images, sorted by class then file name, are put in the fixed
        pseudo-random order ``numpy.random.default_rng(0).permutation(N)`` (so that any prefix, e.g. a quick
        test subset, holds every class); the pickles keep their own order.

    Raises
    ------
    FileNotFoundError
        ``path`` missing, or a required file absent (the message names it).
    ValueError
        Corrupt zip, archive, pickle batch or JPEG (the message names the file and member); unknown
        ``augment``; ``path`` None without ``$BIOPLASTIC_SHARED_DATA``.
    """
    check_choice("augment", augment, AUGMENTATIONS)
    if path is None:
        shared = os.environ.get("BIOPLASTIC_SHARED_DATA")
        if not shared:
            raise ValueError("CIFAR-10 is not embedded in bioplastic: pass path= a folder with "
                             f"{ZIP_FILES['train']} and {ZIP_FILES['test']} or {PICKLE_DIR}/ "
                             f"(or set BIOPLASTIC_SHARED_DATA); where to get them: {DATA_PAGE}")
        path = Path(shared) / "cifar10"
    path = Path(path).expanduser()
    kind, files = _find_source(path)
    cache_path = Path(cache_dir or default_cache_dir()).expanduser() / f"cifar10-{_cache_key(kind, files)}.npz"
    arrays = _read_cache(cache_path) if use_cache and cache_path.exists() else None
    if arrays is None:
        log.info("decoding CIFAR-10 from %s (once; cached at %s)", path, cache_path if use_cache else "-")
        arrays = _decode(kind, files)
        if use_cache:
            _write_cache(cache_path, arrays)
    x_train, x_test = arrays["x_train"], arrays["x_test"]
    if grayscale:
        x_train, x_test = to_grayscale(x_train), to_grayscale(x_test)
    mean, std = _channel_stats(x_train)
    aug = {"crop_flip": RandomCropFlip(4, flip=True), "flip": RandomCropFlip(0, flip=True), "none": None}[augment]
    return ArrayDataset(
        name="cifar10",
        x_train=torch.from_numpy(np.ascontiguousarray(x_train)),
        y_train=torch.from_numpy(arrays["y_train"].astype(np.int64)),
        x_test=torch.from_numpy(np.ascontiguousarray(x_test)),
        y_test=torch.from_numpy(arrays["y_test"].astype(np.int64)),
        classes=list(CLASSES),
        transform=Normalize(mean.tolist(), std.tolist()),
        augment=aug,
        meta={"source": str(path), "source_kind": kind, "cache": str(cache_path) if use_cache else "",
              "grayscale": bool(grayscale), "augment": augment, "mean": mean.tolist(), "std": std.tolist(),
              "citation": CITATION,
              "note": "JPEG re-encodings (quality ~75)" if kind == "zip" else "original pixels"},
    )
