"""Model specs: TOML files in ``models/`` and the registry of architecture builders."""
from __future__ import annotations

import importlib
import os
import tomllib
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import torch.nn as nn

from bioplastic._checks import check_choice

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}
# Modules that register builders when imported (kept lazy so ``import bioplastic`` stays light).
_ARCHITECTURE_MODULES = ("mlp", "cnn", "vit", "retina")
# Spec tables read by other parts of the package (the trainer reads [training] and [rule]), not by builders.
_NON_BUILDER_KEYS = frozenset({"name", "architecture", "description", "training", "rule"})


def check_dropout(name: str, value: Any) -> float:
    """``value`` as a float in ``[0, 1)`` (a dropout or drop-path probability), else a ``ValueError`` naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"{name} must be a probability in [0, 1), got {value!r}")
    return float(value)


def register(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a builder ``f(**spec_without_name_and_architecture) -> nn.Module``."""

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _BUILDERS[name] = fn
        return fn

    return deco


def _load_builders() -> None:
    for mod in _ARCHITECTURE_MODULES:  # each registers its builders on import
        importlib.import_module(f"bioplastic.architectures.{mod}")


def available_specs() -> list[str]:
    """Names of the specs shipped in ``models/`` (without ``.toml``)."""
    return sorted(
        p.name[: -len(".toml")]
        for p in resources.files("bioplastic.specs").iterdir()
        if p.name.endswith(".toml") and not p.name.startswith("_")
    )


def load_spec(spec: str | os.PathLike | dict[str, Any]) -> dict[str, Any]:
    """Load a model spec.

    Parameters
    ----------
    spec : str, path-like or dict
        A name from :func:`available_specs`, a path to a TOML file, or an already-loaded dict
        (returned as a copy).

    Returns
    -------
    dict
        The spec, with at least ``name`` and ``architecture``.

    Raises
    ------
    ValueError
        Unknown spec name (the message lists the shipped ones) or a TOML file without ``architecture``.
    FileNotFoundError
        A path that does not exist.
    """
    if isinstance(spec, dict):
        out = dict(spec)
    else:
        text_spec = str(spec)
        if text_spec.endswith(".toml") or os.sep in text_spec:
            path = Path(text_spec)
            if not path.exists():
                raise FileNotFoundError(f"no such model spec file: {path}")
            with open(path, "rb") as fh:
                out = tomllib.load(fh)
            out.setdefault("name", path.stem)
        else:
            check_choice("model spec", text_spec, available_specs())
            with resources.files("bioplastic.specs").joinpath(f"{text_spec}.toml").open("rb") as fh:
                out = tomllib.load(fh)
            out.setdefault("name", text_spec)
    if "architecture" not in out:
        raise ValueError(f"model spec {out.get('name', spec)!r} has no 'architecture' key")
    return out


def build_model(spec: str | os.PathLike | dict[str, Any], **overrides: Any) -> nn.Module:
    """Build the torch module described by ``spec`` (see :func:`load_spec`); ``overrides`` replace keys.

    Raises
    ------
    ValueError
        If the architecture is unknown (the message lists the registered ones).
    """
    spec = {**load_spec(spec), **overrides}
    _load_builders()
    arch = check_choice("architecture", spec["architecture"], sorted(_BUILDERS))
    kwargs = {k: v for k, v in spec.items() if k not in _NON_BUILDER_KEYS}
    return _BUILDERS[arch](**kwargs)
