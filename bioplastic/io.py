"""xarray conventions and atomic netCDF save / load.

Conventions (see ``docs/conventions.md``): results are ``xarray.Dataset``; no MultiIndex; attrs hold only
str / int / float / lists of them (bools are stored as the ints 0 / 1), the configuration as a JSON string
under ``attrs["config"]`` and the package version under ``attrs["bioplastic_version"]``. Text arrays
(coordinates such as ``rule`` and ``layer``, variables such as ``status``) are fixed-width unicode (``<U..``)
after :func:`load`, so xarray can plot against them. Files are written to a temporary file in the same folder,
flushed to disk and renamed, so a crash (even SIGKILL) never leaves a half-written result and an existing file
is never corrupted; a failed write (disk full, quota, read-only) raises :class:`WriteError` naming the file.
"""
from __future__ import annotations

import contextlib
import errno as _errno
import json
import numbers
import os
import re
import uuid
from pathlib import Path
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import xarray as xr

ENGINE = "h5netcdf"

_TEMPORARY = re.compile(r"^\..+\.[0-9a-f]{32}\.tmp(\.[^.]*)?$")
"""Names of :func:`atomic_write`'s temporary files: ``.<stem>.<32 hex digits>.tmp<suffix>``."""


class WriteError(OSError):
    """A file could not be written (no space left, quota, read-only folder, permission).

    The message is one line naming the destination file and the operating system's reason; ``errno`` is the
    OS error number (e.g. ``errno.ENOSPC``) where known. Nothing is left behind: the destination keeps its
    previous content (or stays absent) and the temporary file is removed.
    """

    def __str__(self) -> str:  # the message alone, without OSError's "[Errno 28]" prefix
        return self.strerror if self.errno is not None and self.strerror else super().__str__()


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

    Text arrays of object dtype are written as strings and bool attributes as the ints 0 / 1 (as the
    package's own results store flags, e.g. ``attrs["learn"]`` of :func:`bioplastic.rate.simulate`); ``ds``
    itself is not changed.

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
    TypeError
        If an attribute (of the Dataset or of a variable) has a type netCDF cannot store (None, dict, a
        nested or mixed list, an object); the message names the attribute, the variable and the type.
    WriteError
        If the file cannot be written (no space left, quota, permission); the message names the file.
    """
    path = Path(path)
    for name, index in ds.indexes.items():
        if getattr(index, "nlevels", 1) > 1:
            raise ValueError(f"dimension {name!r} has a MultiIndex; reset it before saving")
    ds = _storable(ds)
    return atomic_write(path, lambda tmp: ds.to_netcdf(tmp, engine=ENGINE))


def _attr_value(value: Any, where: str, key: str) -> Any:
    """``value`` as netCDF can store it (bools -> 0 / 1), else a TypeError naming the attribute."""
    def bad(detail: str = "") -> TypeError:
        return TypeError(f"attribute {key!r} of {where} has type {type(value).__name__}{detail}; netCDF attributes "
                         "hold only str, int, float, bool (stored as 0 / 1) or flat lists of numbers or of "
                         "strings (store structured values as JSON text, e.g. json.dumps)")

    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (str, bytes, numbers.Real)):
        return value
    if isinstance(value, np.ndarray):
        if value.ndim != 1:
            raise bad(f" with shape {value.shape} (only 1-d arrays)")
        if value.dtype.kind == "b":
            return value.astype(np.int64)
        if value.dtype.kind in "iufUS":
            return value
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        kinds = {"str" if isinstance(v, str) else "number" if isinstance(v, numbers.Real) else type(v).__name__
                 for v in value}
        if kinds - {"str", "number"}:
            raise bad(f" holding {', '.join(sorted(kinds - {'str', 'number'}))}")
        if len(kinds) > 1:
            raise bad(" mixing strings and numbers")
        return [int(v) if isinstance(v, (bool, np.bool_)) else v for v in value]
    raise bad()


def _text_array(values: np.ndarray) -> np.ndarray | None:
    """An object array whose elements are all ``str`` as fixed-width unicode (``<U..``); else None."""
    if values.dtype != object or not all(isinstance(v, str) for v in values.reshape(-1)):
        return None
    return values.astype(str) if values.size else values.astype("<U1")


def _storable(ds: xr.Dataset) -> xr.Dataset:
    """A shallow copy of ``ds`` with text arrays as ``<U..`` and attrs converted by :func:`_attr_value`."""
    out = ds.copy(deep=False)
    out.attrs = {k: _attr_value(v, "the Dataset", k) for k, v in ds.attrs.items()}
    for name, var in ds.variables.items():
        attrs = {k: _attr_value(v, f"variable {name!r}", k) for k, v in var.attrs.items()}
        text = _text_array(var.values) if var.dtype == object else None
        if text is not None or any(attrs[k] is not v for k, v in var.attrs.items()):  # (0 == False: test identity)
            new = xr.Variable(var.dims, text if text is not None else var.data, attrs, encoding=var.encoding)
            if name in ds.coords:
                out = out.assign_coords({name: new})
            else:
                out[name] = new
    return out


def _text_to_unicode(ds: xr.Dataset) -> xr.Dataset:
    """Text arrays read back from netCDF (object dtype) as fixed-width unicode, which xarray can plot."""
    changed = {}
    for name, var in ds.variables.items():
        if var.dtype == object:
            text = _text_array(var.values)
            if text is not None:
                changed[name] = xr.Variable(var.dims, text, var.attrs, encoding=var.encoding)
    coords = {k: v for k, v in changed.items() if k in ds.coords}
    data = {k: v for k, v in changed.items() if k not in ds.coords}
    return ds.assign_coords(coords).assign(data) if changed else ds


def atomic_write(path: str | os.PathLike, write: Callable[[Path], Any]) -> Path:
    """Write a file atomically: ``write(tmp)`` fills a temporary file in the destination folder, which is then
    renamed to ``path`` (``os.replace``, atomic on one filesystem).

    A crash or Ctrl-C during ``write`` leaves ``path`` as it was (an older version stays intact) and removes the
    temporary file (after SIGKILL it stays, hidden; :func:`remove_temporaries` clears it). The file is
    flushed to disk (``fsync``) before the rename. The temporary name keeps ``path``'s suffix (``savefig`` picks the format from it) and is
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

    Raises
    ------
    WriteError
        An ``OSError`` while writing (no space left, quota, read-only, permission), as one line naming
        ``path`` and the reason (e.g. "no space left on device writing out/results.nc"); the original
        error is its ``__cause__``. Other exceptions of ``write`` propagate unchanged.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WriteError(*_write_error_args(exc, path.parent)) from exc
    tmp = path.parent / f".{path.stem}.{uuid.uuid4().hex}.tmp{path.suffix}"
    try:
        write(tmp)
        _fsync(tmp)  # the data is on disk before the rename (and late ENOSPC / quota errors surface here)
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and not isinstance(exc, WriteError):
            raise WriteError(*_write_error_args(exc, path)) from exc
        raise
    return path


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_error_args(exc: OSError, path: Path) -> tuple[int, str] | tuple[str]:
    """(errno, one-line message naming ``path``) of a failed write; h5py puts the errno in its message."""
    code = exc.errno
    if code is None:
        found = re.search(r"errno = (\d+)", str(exc))
        code = int(found.group(1)) if found else None
    reason = os.strerror(code) if code else (str(exc).splitlines() or [type(exc).__name__])[0]
    if code == _errno.ENOSPC:
        message = f"no space left on device writing {path}"
    elif code == _errno.EDQUOT:
        message = f"disk quota exceeded writing {path}"
    else:
        message = f"cannot write {path}: {reason}"
    return (code, message) if code else (message,)


def remove_temporaries(folder: str | os.PathLike, recursive: bool = True) -> list[Path]:
    """Delete the temporary files that :func:`atomic_write` leaves when its process is killed (SIGKILL,
    power loss) between creating and renaming them, e.g. ``.results.<hex>.tmp.nc``.

    Only names of exactly that form are removed. Call it only while no other process writes in ``folder``
    (:func:`bioplastic.compare` does so under its lock on the output folder).

    Returns
    -------
    list of pathlib.Path
        The files removed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for path in (folder.rglob(".*.tmp*") if recursive else folder.glob(".*.tmp*")):
        if path.is_file() and _TEMPORARY.match(path.name):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


LOCK_FILE = ".bioplastic.lock"
"""Name of the lock file of :func:`lock_folder` (removed on release; left, unlocked, by a killed process)."""


class FolderInUseError(RuntimeError):
    """Another process holds the lock of a folder (:func:`lock_folder`); the message names it and its pid."""


@contextlib.contextmanager
def lock_folder(folder: str | os.PathLike, what: str = "bioplastic") -> Iterator[Path]:
    """Hold an exclusive lock on ``folder`` (``flock`` on ``folder/.bioplastic.lock``) while the block runs.

    The lock belongs to the open file, so the operating system releases it when the process ends in any way
    (normal exit, exception, Ctrl-C, crash, SIGKILL): a stale lock file left by a killed process never blocks a
    later run. The file holds the holder's pid, host and start time, for the message of a process that finds
    it locked; it is removed on a normal release. Without ``fcntl`` (Windows) no lock is taken.

    Parameters
    ----------
    folder : path-like
        An existing folder.
    what : str
        Who holds it, written into the lock file (e.g. ``"bioplastic compare"``).

    Yields
    ------
    pathlib.Path
        The lock file.

    Raises
    ------
    FolderInUseError
        Another process holds the lock; the message names the folder and that process (pid, host, command).
    """
    import socket
    import time

    folder = Path(folder)
    path = folder / LOCK_FILE
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield path
        return
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as exc:
            raise WriteError(*_write_error_args(exc, path)) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = ""
            for _ in range(20):  # the holder writes its line just after taking the lock
                holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
                if holder:
                    break
                time.sleep(0.05)
            os.close(fd)
            raise FolderInUseError(
                f"{folder} is in use by another process ({holder or 'pid unknown'}); wait for it to finish or "
                f"use another output folder") from None
        except BaseException:
            os.close(fd)
            raise
        try:  # the holder before us may have removed the file after we opened it: lock the file at ``path``
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        stamp_line = (f"{what}, pid {os.getpid()} on {socket.gethostname()}, "
                      f"since {time.strftime('%Y-%m-%d %H:%M:%S')}")
        os.pwrite(fd, stamp_line.encode(), 0)
        yield path
    finally:
        try:
            path.unlink()  # still locked by us: nobody else holds or waits for this file
        except OSError:
            pass
        os.close(fd)  # releases the lock


def load(path: str | os.PathLike) -> xr.Dataset:
    """Load a netCDF result fully into memory (the file is closed on return).

    Text arrays come back as fixed-width unicode (``<U..``), not object dtype, so that e.g.
    ``ds.update_cosine.sel(rule="bp").plot.line(x="layer")`` works.

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
            ds = ds.load()
    except Exception as exc:  # h5py / h5netcdf raise several types for corrupt files
        raise ValueError(f"cannot read netCDF file {path}: {exc}") from exc
    return _text_to_unicode(ds)
