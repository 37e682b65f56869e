"""compare's output folder under stress: runs that did not learn, two processes, a full disk.

Issue 16 item 13 (a run at chance level is not "ok"), issue 15 cases 9 (lock on --out) and 10 (no space left).
"""
from __future__ import annotations

import errno
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

import bioplastic
from bioplastic import io
from bioplastic.testing import assert_results_equal
from bioplastic.training import comparison as compare_mod
from bioplastic.training import results as R

from tests.training.test_compare import FakeEngine, engine, digits_spec, small  # noqa: F401 (fixtures)

TINY = dict(rules=["bp", "fa"], seeds=[0], epochs=2, dataset="digits", device="cpu", progress=False)


def _no_temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if ".tmp" in p.name)


# ------------------------------------------------------------------------------ runs that did not learn
def test_chance_level_is_the_most_common_class_plus_three_standard_errors():
    labels = np.array([0] * 50 + [1] * 30 + [2] * 20)
    assert R.chance_accuracy(labels) == 0.5
    assert R.chance_threshold(0.5, 100) == pytest.approx(0.5 + 3 * 0.05)  # sqrt(.25 / 100) = 0.05
    assert R.chance_threshold(0.1135, 10_000) == pytest.approx(0.12301609, abs=1e-8)  # embedded MNIST test set
    with pytest.raises(ValueError):
        R.chance_accuracy([])


class AtChance(FakeEngine):
    """The planted failure: rules in ``chance`` end with finite losses at the given final accuracy."""

    def __init__(self, chance):
        super().__init__()
        self.chance = chance

    def train(self, config, dataset, **kw):
        result = super().train(config, dataset, **kw)
        if config.rule in self.chance:
            result.test_accuracy = np.array([0.12, 0.11, self.chance[config.rule]])
        return result


@pytest.mark.parametrize("final, status", [(0.1022, "at_chance"), (0.1450, "at_chance"), (0.1452, "ok")])
def test_run_at_chance_level_is_flagged_not_ok(engine, digits_spec, tmp_path, monkeypatch, final, status):
    """digits: 450 test images, most common class 46 (10.22 %): threshold 0.10222 + 3 sqrt(p(1-p)/450) = 0.14506."""
    fake = AtChance({"fa": final})
    monkeypatch.setattr(compare_mod, "_trainer", lambda: fake)
    ds = small(digits_spec, tmp_path / "out", rules=["bp", "fa"], seeds=[0, 1], figure=True)
    assert set(ds.status.sel(rule="fa", rank=R.NO_RANK).values) == {status}
    assert set(ds.status.sel(rule="bp", rank=R.NO_RANK).values) == {"ok"}
    assert ds.test_accuracy.attrs["chance_accuracy"] == pytest.approx(46 / 450)
    assert ds.test_accuracy.attrs["chance_threshold"] == pytest.approx(46 / 450 + 3 * np.sqrt(46 / 450 * 404 / 450) / np.sqrt(450))
    table = R.format_table(ds)
    fa_row = next(line for line in table.splitlines() if line.startswith("fa "))
    back = R.load_results(tmp_path / "out")
    xr.testing.assert_identical(back, ds)
    assert torch.load(tmp_path / "out" / "models" / "fa-s0.pt", weights_only=True)["status"] == status
    if status == "at_chance":
        assert "at_chance (!)" in fa_row
        assert "(!) runs that did not learn: fa-s0 at_chance, fa-s1 at_chance" in table
        assert "at_chance: final test accuracy <= 14.51% (chance level 10.22%" in table
        assert R.flagged_runs(ds) == [("fa-s0", "at_chance"), ("fa-s1", "at_chance")]
    else:
        assert "(!)" not in table and R.flagged_runs(ds) == []
    from bioplastic.training.plots import plot_comparison

    label = plot_comparison(ds)._supxlabel
    assert (label is not None and "fa-s0 (at_chance)" in label.get_text()) == (status == "at_chance")


def test_flagged_runs_are_finished_not_retrained(engine, digits_spec, tmp_path, monkeypatch):
    fake = AtChance({"fa": 0.1})
    monkeypatch.setattr(compare_mod, "_trainer", lambda: fake)
    first = small(digits_spec, tmp_path / "out", rules=["bp", "fa"], seeds=[0])
    fake.calls.clear()
    again = small(digits_spec, tmp_path / "out", rules=["bp", "fa"], seeds=[0])
    assert fake.calls == []
    assert_results_equal(again, first)
    # a later comparison without fa would drop the at_chance run: refused like a finished one
    with pytest.raises(ValueError, match="fa-s0"):
        small(digits_spec, tmp_path / "out", rules=["bp"], seeds=[0])


def test_diverged_and_at_chance_both_named_in_the_table(engine, digits_spec, monkeypatch):
    fake = AtChance({"bp": 0.1})
    fake.diverge = {"fa"}
    monkeypatch.setattr(compare_mod, "_trainer", lambda: fake)
    table = R.format_table(small(digits_spec, rules=["bp", "fa"], seeds=[0]))
    assert "(!) runs that did not learn: bp-s0 at_chance, fa-s0 diverged" in table
    assert "diverged: the training or test loss became NaN/Inf" in table


def test_real_engine_huge_learning_rate_ends_at_chance_not_ok(tmp_path):
    """Issue 16 item 13: Adam at lr 1e4 keeps finite losses but learns nothing (the issue's mnist run: 11.6 %)."""
    ds = bioplastic.compare(rules=["bp"], seeds=[0], epochs=1, dataset="digits", lr=1e4, device="cpu",
                            progress=False, figure=False)
    status = str(ds.status.item())
    acc = float(ds.test_accuracy.isel(epoch=-1).item())
    if np.isfinite(ds.train_loss).all():
        assert status == "at_chance" and acc <= ds.test_accuracy.attrs["chance_threshold"]
    else:
        assert status == "diverged"


# ------------------------------------------------------------------------------ two processes, one folder
def test_second_compare_into_the_same_out_refuses_naming_the_first(tmp_path, capsys):
    """Issue 15 case 9: process A (the CLI) holds out; this process's compare and CLI refuse at once, exit 2,
    one line naming the folder and A's pid; A's results equal a single run's."""
    out = tmp_path / "out"
    args = ["compare", "--rules", "bp,fa", "--dataset", "digits", "--epochs", "3", "--device", "cpu",
            "--threads", "1", "--no-progress", "-q", "--out", str(out)]
    first = subprocess.Popen([sys.executable, "-m", "bioplastic.cli", *args], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        lock = out / io.LOCK_FILE
        deadline = time.monotonic() + 120
        while not (lock.exists() and f"pid {first.pid}" in lock.read_text()):
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.01)
        with pytest.raises(io.FolderInUseError, match=rf"{out} is in use by another process \(bioplastic compare, "
                                                      rf"pid {first.pid} "):
            bioplastic.compare(out=out, **{**TINY, "epochs": 3})
        from bioplastic.cli import main

        capsys.readouterr()
        with pytest.raises(SystemExit) as info:
            main(args)
        err = capsys.readouterr().err
        assert info.value.code == 2
        assert err.count("\n") == 1 and f"pid {first.pid}" in err and str(out) in err and "Traceback" not in err
        assert first.poll() is None  # A was running all along
    finally:
        stdout, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr
    assert not lock.exists()  # released
    reference = bioplastic.compare(out=tmp_path / "ref", **{**TINY, "epochs": 3})
    assert_results_equal(R.load_results(out), reference)


# ------------------------------------------------------------------------------ no space left
def _inject_enospc(monkeypatch, target: str, nth: int = 1):
    """The nth write of a file whose name contains ``target`` fails half-way with ENOSPC, in the writer itself
    (torch.save for models / checkpoints, Dataset.to_netcdf for netCDF)."""
    seen = {"n": 0}
    real_save, real_to_netcdf = torch.save, xr.Dataset.to_netcdf

    def hit(name) -> bool:
        if target in str(name):
            seen["n"] += 1
            return seen["n"] == nth
        return False

    def save(obj, f, *a, **kw):
        if hit(getattr(f, "name", f)):
            f.write(b"PK\x03\x04 half a zip")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *a, **kw)

    def to_netcdf(self, path=None, *a, **kw):
        if hit(path):
            Path(path).write_bytes(b"\x89HDF half")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_to_netcdf(self, path, *a, **kw)

    monkeypatch.setattr(torch, "save", save)
    monkeypatch.setattr(xr.Dataset, "to_netcdf", to_netcdf)
    return seen


@pytest.mark.parametrize("target, nth, named", [
    (".fa-s0.", 1, "models/fa-s0.pt"),                 # the trained model (written first)
    (".checkpoint.", 3, "checkpoints/fa-s0/checkpoint.pt"),  # fa's first epoch checkpoint (bp wrote 2)
    (".results.", 3, "results.nc"),                    # after bp: pending grid, bp, then fa's write
])
def test_disk_full_is_one_line_naming_the_file_no_partial_file_and_finished_runs_kept(
        tmp_path, monkeypatch, capsys, target, nth, named):
    out = tmp_path / "out"
    reference = bioplastic.compare(out=tmp_path / "ref", figure=False, **TINY)
    seen = _inject_enospc(monkeypatch, target, nth)
    from bioplastic.cli import main

    with pytest.raises(SystemExit) as info:
        main(["compare", "--rules", "bp,fa", "--dataset", "digits", "--epochs", "2", "--device", "cpu",
              "--no-progress", "-q", "--out", str(out)])
    err = capsys.readouterr().err
    assert seen["n"] >= nth and info.value.code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1] == f"bioplastic compare: error: no space left on device writing {out / named}", err
    assert "Traceback" not in err
    assert _no_temporaries(out) == []  # no partial file, no temporary
    for path in out.rglob("*.nc"):
        io.load(path)  # every file there is whole
    for path in out.rglob("*.pt"):
        torch.load(path, weights_only=True)
    assert (out / "runs" / "bp-s0.nc").exists()  # the finished run is kept
    if named != "results.nc":
        assert "1 of 2 runs finished and saved in" in err
        assert R.load_results(out).status.sel(rule="bp").item() == "ok"
    else:
        assert "2 of 2 runs finished and kept in" in err  # fa finished but results.nc could not be rewritten

    monkeypatch.undo()  # space again: the same command resumes to the uninterrupted result
    resumed = bioplastic.compare(out=out, figure=False, **TINY)
    assert_results_equal(resumed, reference)


def test_checkpoint_left_by_a_kill_after_the_run_was_saved_is_removed_on_resume(engine, digits_spec, tmp_path):
    """Found by the SIGKILL test: killed after writing runs/<run>.nc but before removing the run's checkpoint,
    the rerun skips the finished run and must not leave its checkpoint behind."""
    out = tmp_path / "out"
    small(digits_spec, out, rules=["bp"], seeds=[0])
    stale = out / "checkpoints" / "bp-s0"
    stale.mkdir(parents=True)
    (stale / "checkpoint.pt").write_bytes(b"an epoch's checkpoint")
    engine.calls.clear()
    small(digits_spec, out, rules=["bp"], seeds=[0])
    assert engine.calls == [] and not stale.exists()


# ------------------------------------------------------------------------------ results people plot
def test_results_nc_plots_by_layer_and_by_rank_after_the_round_trip(engine, digits_spec, tmp_path):
    """Issue 16 item 5, the user's commands on results.nc (Agg): text coordinates are unicode, not object."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    ds = small(digits_spec, tmp_path / "out")
    back = R.load_results(tmp_path / "out")
    for name in ("rule", "base_rule", "feedback_learning", "layer", "status", "run_config"):
        assert back[name].dtype.kind == "U" and ds[name].dtype.kind == "U", name
    ax = Figure().subplots()
    line = back.update_cosine.isel(epoch=-1).mean("seed").sel(rule="ldfa_normative", rank=4)
    (artist,) = line.plot.line(x="layer", ax=ax)
    np.testing.assert_allclose(artist.get_ydata(), ds.update_cosine.sel(rule="ldfa_normative", rank=4)
                               .isel(epoch=-1).values.mean(0))
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(x) for x in ds.layer.values]
    by_rank = back.test_accuracy.isel(epoch=-1).mean("seed").sel(rule="ldfa_fixed", rank=[1, 4])
    (artist,) = by_rank.plot.line(x="rank", ax=Figure().subplots())
    assert list(artist.get_xdata()) == [1, 4]
    assert list(back["rank"].values) == [R.NO_RANK, 1, 4]  # ds["rank"]: ds.rank is xarray's method
