"""Tests of the scripts in ``analyses/``, one file per script (``tests/analyses/test_<script>.py``).

The ``analysis_script`` fixture is the one loader: ``analysis_script("rsa_it")`` imports
``analyses/rsa_it.py`` by path, once per test session.
"""
from __future__ import annotations

import functools
import importlib.util
import pickle
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

ANALYSES = Path(__file__).resolve().parents[2] / "analyses"


@functools.cache
def _load(name: str) -> ModuleType:
    path = ANALYSES / f"{name}.py"
    if not path.exists():
        raise FileNotFoundError(f"no analysis script {path}")
    module_name = f"analyses_{name}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look the module up by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def analysis_script():
    """``analysis_script(name)``: the module ``analyses/<name>.py``, imported once."""
    return _load


@pytest.fixture
def tiny_cifar(tmp_path):
    """A CIFAR-10 folder (``cifar-10-batches-py``) of random images: 24 per training batch, 40 test."""
    from bioplastic.data.cifar10 import CLASSES

    rng = np.random.default_rng(0)
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    for name, n in [*((f"data_batch_{i}", 24) for i in range(1, 6)), ("test_batch", 40)]:
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        (root / name).write_bytes(pickle.dumps({b"data": data, b"labels": rng.integers(0, 10, n).tolist()}))
    (root / "batches.meta").write_bytes(pickle.dumps({b"label_names": [c.encode() for c in CLASSES]}))
    return root
