"""xarray conventions and atomic netCDF save / load.

Conventions (see ``docs/conventions.md``): results are ``xarray.Dataset``; no MultiIndex; attrs hold only
str / int / float / lists of them, the configuration as a JSON string under ``attrs["config"]`` and the
package version under ``attrs["bioplastic_version"]``. Files are written to a temporary file in the same
folder and renamed, so a crash never leaves a half-written result and an existing file is never corrupted.
"""
from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from collections.abc import Callable
from typing import Any

import xarray as xr

ENGINE = "h5netcdf"


def stamp(ds: xr.Dataset, config: dict[str, Any] | None = None) -> xr.Dataset:
    """Return a copy of ``ds`` with ``bioplastic_version`` and (optionally) ``config`` as JSON in attrs."""
    from bioplastic import __version__

    out = ds.copy()
    out.attrs["bioplastic_version"] = __version__
    if config is not None:
        out.attrs["config"] = json.dumps(config, sort_keys=True, default=str)
    return out


def config_of(ds: xr.Dataset) -> dict[str, Any]:
    """The configuration stored by :func:`stamp` (an empty dict if there is none)."""
    raw = ds.attrs.get("config")
    return json.loads(raw) if raw else {}


def save(ds: xr.Dataset, path: str | os.PathLike) -> Path:
    """Write ``ds`` to netCDF at ``path`` atomically (temporary file + rename).

    Parameters
    ----------
    ds : xarray.Dataset
        Must follow the conventions above (no MultiIndex; attrs of simple types).
    path : path-like
        Destination; parent folders are created.

    Returns
    -------
    pathlib.Path
        The written path.

    Raises
    ------
    ValueError
        If ``ds`` has a MultiIndex (netCDF cannot hold it).
    """
    path = Path(path)
    for name, index in ds.indexes.items():
        if getattr(index, "nlevels", 1) > 1:
            raise ValueError(f"dimension {name!r} has a MultiIndex; reset it before saving")
    return atomic_write(path, lambda tmp: ds.to_netcdf(tmp, engine=ENGINE))


def atomic_write(path: str | os.PathLike, write: Callable[[Path], Any]) -> Path:
    """Write a file atomically: ``write(tmp)`` fills a temporary file in the destination folder, which is then
    renamed to ``path`` (``os.replace``, atomic on one filesystem).

    A crash or Ctrl-C during ``write`` leaves ``path`` as it was (an older version stays intact) and removes the
    temporary file. The temporary name keeps ``path``'s suffix (``savefig`` picks the format from it) and is
    created by ``write`` itself, so the file gets the user's umask.

    Parameters
    ----------
    path : path-like
        Destination; parent folders are created.
    write : callable
        ``write(tmp_path)`` writes the whole file to ``tmp_path``.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.stem}.{uuid.uuid4().hex}.tmp{path.suffix}"
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def load(path: str | os.PathLike) -> xr.Dataset:
    """Load a netCDF result fully into memory (the file is closed on return).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file cannot be read as netCDF (the message names the file).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such results file: {path}")
    try:
        with xr.open_dataset(path, engine=ENGINE) as ds:
            return ds.load()
    except Exception as exc:  # h5py / h5netcdf raise several types for corrupt files
        raise ValueError(f"cannot read netCDF file {path}: {exc}") from exc
