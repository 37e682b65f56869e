"""bioplastic.io: atomic netCDF writes, stamps, and clear errors."""
import os
import stat

import numpy as np
import pytest
import xarray as xr
from xarray.testing import assert_identical

from bioplastic import io


def _ds():
    return xr.Dataset(
        {"accuracy": (("rule", "epoch"), np.arange(6.0).reshape(2, 3))},
        coords={"rule": ["bp", "fa"], "epoch": [1, 2, 3]},
    )


def test_round_trip_with_stamp(tmp_path):
    ds = io.stamp(_ds(), {"lr": 0.001, "rules": ["bp", "fa"]})
    path = io.save(ds, tmp_path / "sub" / "r.nc")
    back = io.load(path)
    assert_identical(back, ds)
    assert io.config_of(back) == {"lr": 0.001, "rules": ["bp", "fa"]}
    assert back.attrs["bioplastic_version"]


def test_failed_write_keeps_the_existing_file_and_leaves_no_temporary(tmp_path):
    path = io.save(_ds(), tmp_path / "r.nc")
    before = path.read_bytes()
    bad = _ds().assign_attrs(unstorable={"a": object()})  # netCDF cannot store a dict attribute
    with pytest.raises(Exception):
        io.save(bad, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.nc"]


def test_written_file_respects_umask(tmp_path):
    old = os.umask(0o022)
    try:
        path = io.save(_ds(), tmp_path / "r.nc")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_multiindex_is_refused(tmp_path):
    ds = _ds().stack(run=("rule", "epoch"))
    with pytest.raises(ValueError, match="MultiIndex"):
        io.save(ds, tmp_path / "r.nc")
    assert not (tmp_path / "r.nc").exists()


def test_missing_and_corrupt_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.nc"):
        io.load(tmp_path / "nope.nc")
    bad = tmp_path / "bad.nc"
    bad.write_bytes(b"not a netCDF file")
    with pytest.raises(ValueError, match="bad.nc"):
        io.load(bad)


def test_atomic_write_keeps_the_suffix_and_cleans_up_after_a_failure(tmp_path):
    seen = []

    def write(tmp):
        seen.append(tmp)
        tmp.write_text("new")

    path = io.atomic_write(tmp_path / "fig.png", write)
    assert path.read_text() == "new" and seen[0].suffix == ".png" and seen[0].parent == tmp_path

    def fail(tmp):
        tmp.write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        io.atomic_write(path, fail)
    assert path.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig.png"]
