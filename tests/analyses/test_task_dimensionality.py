"""analyses/task_dimensionality.py: the smoke budget writes results and figure and resumes; a bad budget exits
with a message."""
from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from bioplastic.training import task_dimensionality as td


def test_script_smoke_budget_writes_results_and_figure_and_resumes(analysis_script, tmp_path, capsys):
    script = analysis_script("task_dimensionality")
    out = tmp_path / "td"
    assert script.main(["--out", str(out), "--budget", "smoke", "--threads", "1"]) == 0
    ds = xr.load_dataset(out / td.RESULTS_FILE)
    assert (out / td.FIGURE_FILE).stat().st_size > 0 and (out / "task_dimensionality.md").exists()
    plan = td.BUDGETS["smoke"]["teacher"]
    assert list(ds.K.values) == sorted(plan.task_dims) and list(ds.seed.values) == list(plan.seeds)
    # every planned cell ran: BP and every mode at every K (base width) and every width (width_task_dim)
    for k in plan.task_dims:
        assert np.isfinite(ds.bp_accuracy.sel(K=k, width=plan.width)).all()
        assert np.isfinite(ds.accuracy.sel(K=k, width=plan.width)).all()
    for w in plan.widths:
        ranks = [r for r in plan.ranks if r <= w]
        assert np.isfinite(ds.accuracy.sel(K=plan.width_task_dim, width=w, rank=ranks)).all()
    assert np.isfinite(ds.narrow_bp_accuracy.sel(K=plan.width_task_dim)).all()
    assert list(ds.layer.values) == ["fc2", "out"]  # fc1's feedback reaches no layer
    assert np.isfinite(ds.layer_accuracy).all()
    assert set(ds.mode.values) == {"normative", "local", "fixed"}
    assert ds.attrs["criterion"] == td.R_STAR_CRITERION
    # r* is the estimate's on the stored accuracies
    again = td.minimal_sufficient_rank(ds.accuracy, ds.bp_accuracy)
    np.testing.assert_array_equal(again.r_star.values, ds.r_star.values)
    # the headline numbers: the narrow-network gap by hand; r* slopes on planted r* values
    summary = td.summarize(ds, "normative")
    kw, w = ds.attrs["width_task_dim"], ds.attrs["base_width"]
    by_hand = 100 * (ds.accuracy.sel(mode="normative", K=kw, width=w).mean("seed")
                     - ds.narrow_bp_accuracy.sel(K=kw).mean("seed"))
    assert summary["narrow_gap_pp"] == pytest.approx(float(by_hand.mean()))
    planted = ds.copy(deep=True)
    planted["r_star"].loc[dict(mode="normative", width=w)] = [2.0, 4.0]  # K = 3, 6: r* = 2K/3
    s2 = td.summarize(planted, "normative")
    assert s2["r_star_slope"] == pytest.approx(2 / 3) and s2["r_star_loglog_slope"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="mode.*normative"):
        td.summarize(ds, "oja")
    # the run went through compare: every part has its results.nc; a second call retrains nothing
    runs = sorted((out / "compare").glob("*/runs/*.nc"))
    stamps = {p: p.stat().st_mtime_ns for p in runs}
    assert script.main(["--out", str(out), "--budget", "smoke", "--threads", "1"]) == 0
    assert {p: p.stat().st_mtime_ns for p in runs} == stamps
    xr.testing.assert_identical(xr.load_dataset(out / td.RESULTS_FILE).drop_attrs(), ds.drop_attrs())


def test_script_bad_budget_exits_with_a_message(analysis_script, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        analysis_script("task_dimensionality").main(["--out", str(tmp_path / "o"), "--budget", "gpu"])
    assert exc.value.code == 2 and "budget" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
