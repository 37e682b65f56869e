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


# ----------------------------------------------------------------------- text arrays plot after a round trip
def test_text_coordinates_come_back_as_unicode_and_plot(tmp_path):
    """Issue 16 item 5: object-dtype text (as h5netcdf reads variable-length strings) comes back as <U.., and
    the user's plot of results.nc works after the round trip."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    rng = np.random.default_rng(0)
    ds = xr.Dataset(
        {"update_cosine": (("rule", "seed", "epoch", "layer"), rng.uniform(-1, 1, (2, 3, 2, 4))),
         "status": (("rule", "seed"), np.array([["ok"] * 3, ["ok", "diverged", "ok"]], dtype=object))},
        coords={"rule": np.array(["bp", "ldfa_normative"], dtype=object), "seed": [0, 1, 2], "epoch": [1, 2],
                "layer": np.array(["net.0", "net.2", "net.4", "net.6"], dtype=object),
                "base_rule": ("rule", np.array(["bp", "ldfa"], dtype=object))})
    back = io.load(io.save(ds, tmp_path / "r.nc"))
    assert_identical(back, ds)
    assert {name: back[name].dtype.str[1:] for name in ("rule", "layer", "base_rule", "status")} == {
        "rule": "U14", "layer": "U5", "base_rule": "U4", "status": "U8"}
    line = back.update_cosine.isel(epoch=-1).mean("seed").sel(rule="ldfa_normative")
    ax = Figure().subplots()
    (artist,) = line.plot.line(x="layer", ax=ax)
    np.testing.assert_allclose(artist.get_ydata(), ds.update_cosine.values[1, :, -1].mean(0))
    assert [t.get_text() for t in ax.get_xticklabels()] == ["net.0", "net.2", "net.4", "net.6"]
    assert ds.rule.dtype == object  # save does not change the caller's Dataset


# ----------------------------------------------------------------------- attributes netCDF cannot hold
def test_bool_attributes_are_stored_as_0_and_1(tmp_path):
    """Issue 15 case 6: bools become the ints 0 / 1, as the package's own results store flags."""
    ds = _ds().assign_attrs(learn=True, flags=[True, False], arr=np.array([False, True]))
    ds["accuracy"].attrs["masked"] = np.bool_(False)
    back = io.load(io.save(ds, tmp_path / "r.nc"))
    assert back.attrs["learn"] == 1 and list(back.attrs["flags"]) == [1, 0] and list(back.attrs["arr"]) == [0, 1]
    assert back.accuracy.attrs["masked"] == 0
    assert ds.attrs["learn"] is True  # the caller's Dataset is unchanged


@pytest.mark.parametrize("value, type_name", [
    (None, "NoneType"), ({"a": 1}, "dict"), ([1, "a"], "list"), ([[1, 2]], "list"), (object(), "object"),
    (1 + 2j, "complex"), (np.zeros((2, 2)), "ndarray"),
])
@pytest.mark.parametrize("on_variable", [False, True])
def test_unsupported_attributes_are_refused_naming_attribute_variable_and_type(tmp_path, value, type_name,
                                                                               on_variable):
    ds = _ds()
    if on_variable:
        ds["accuracy"].attrs["bad_attr"] = value
    else:
        ds.attrs["bad_attr"] = value
    where = "variable 'accuracy'" if on_variable else "the Dataset"
    with pytest.raises(TypeError, match=rf"attribute 'bad_attr' of {where} has type {type_name}"):
        io.save(ds, tmp_path / "r.nc")
    assert list(tmp_path.iterdir()) == []  # nothing written


# ----------------------------------------------------------------------- disk full, temporaries
@pytest.mark.parametrize("code, words", [(28, "no space left on device writing"),
                                         (122, "disk quota exceeded writing"),
                                         (30, "cannot write .*: Read-only file system")])
def test_failed_write_is_one_line_naming_the_file_and_leaves_nothing(tmp_path, code, words):
    """Issue 15 case 10: an OSError (ENOSPC / EDQUOT / EROFS) while writing: a WriteError naming the file,
    no temporary left, the older file intact."""
    import errno

    path = io.save(_ds(), tmp_path / "r.nc")
    before = path.read_bytes()

    def full(tmp):
        tmp.write_bytes(b"partial")
        raise OSError(code, os.strerror(code))

    with pytest.raises(io.WriteError, match=words) as info:
        io.atomic_write(path, full)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert info.value.errno == code and isinstance(info.value, OSError)
    assert code != 28 or info.value.errno == errno.ENOSPC
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.nc"]


def test_h5py_style_error_without_errno_is_decoded(tmp_path):
    """h5py reports a full disk as an OSError without errno whose text holds 'errno = 28'."""
    def full(tmp):
        raise OSError("Unable to synchronously write data (file write failed: time = x, filename = 'f', "
                      "file descriptor = 5, errno = 28, error message = 'No space left on device')")

    with pytest.raises(io.WriteError, match="no space left on device writing .*new.nc"):
        io.atomic_write(tmp_path / "new.nc", full)
    assert list(tmp_path.iterdir()) == []


def test_netcdf_writer_out_of_space_is_a_write_error(tmp_path, monkeypatch):
    """io.save with the netCDF writer failing with ENOSPC mid-file (monkeypatched)."""
    import errno

    def to_netcdf(self, tmp, **kw):
        with open(tmp, "wb") as f:
            f.write(b"\x89HDF half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(xr.Dataset, "to_netcdf", to_netcdf)
    with pytest.raises(io.WriteError, match=r"no space left on device writing .*results.nc"):
        io.save(_ds(), tmp_path / "results.nc")
    assert list(tmp_path.iterdir()) == []


def test_remove_temporaries_removes_only_atomic_write_leftovers(tmp_path):
    keep = ["results.nc", ".hidden", "notes.tmp", ".results.nc.tmp", ".x.0123.tmp.nc"]
    gone = [".results.0123456789abcdef0123456789abcdef.tmp.nc", "runs/.bp-s0.0123456789abcdef0123456789abcdef.tmp.nc",
            "models/.bp-s0.fedcba9876543210fedcba9876543210.tmp.pt", ".fig.0123456789abcdef0123456789abcdef.tmp"]
    for name in keep + gone:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    removed = io.remove_temporaries(tmp_path)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in removed) == sorted(gone)
    assert all((tmp_path / name).exists() for name in keep)


# ----------------------------------------------------------------------- folder lock
def test_lock_folder_refuses_a_second_holder_naming_the_pid_and_is_released(tmp_path):
    with io.lock_folder(tmp_path, "first") as lock_file:
        assert f"pid {os.getpid()}" in lock_file.read_text()
        with pytest.raises(io.FolderInUseError, match=rf"{tmp_path} is in use by another process \(first, "
                                                      rf"pid {os.getpid()} "):
            with io.lock_folder(tmp_path, "second"):
                pass  # pragma: no cover
    assert not (tmp_path / io.LOCK_FILE).exists()  # removed on release
    with io.lock_folder(tmp_path):  # and free again
        pass


def test_stale_lock_file_of_a_killed_process_does_not_block(tmp_path):
    """A process killed with SIGKILL leaves its lock file; flock died with it."""
    import signal
    import subprocess
    import sys

    code = ("import sys, time; from bioplastic import io\n"
            "with io.lock_folder(sys.argv[1], 'victim'):\n"
            "    print('locked', flush=True); time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(io.FolderInUseError, match=f"victim, pid {proc.pid}"):
            with io.lock_folder(tmp_path):
                pass  # pragma: no cover
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert (tmp_path / io.LOCK_FILE).exists()  # stale file left behind ...
    with io.lock_folder(tmp_path, "next") as lock_file:  # ... does not block
        assert "next" in lock_file.read_text()
