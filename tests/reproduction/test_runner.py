"""``bioplastic.reproduce``: claims.nc, resume, missing data, bad input, the report (issue 13)."""
from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import xarray as xr

import bioplastic
from bioplastic import io
from bioplastic.cli import main
from bioplastic.reproduction import claims as claims_mod
from bioplastic.reproduction import runner
from bioplastic.reproduction.claims import CLAIMS, Claim, claim_ids
from bioplastic.reproduction.experiments import BUDGETS, EXPERIMENTS, Experiment, NotAvailable
from bioplastic.reproduction.verdict import Criterion

CALLS: list[str] = []


def _fake_run(ctx, s):
    CALLS.append(ctx.out.name)
    seeds = np.asarray(s["seeds"])
    # the planted quantity: 2 + 0.1 * seed, so at_least 1 is reproduced and at_most 1 is not
    return xr.Dataset({"x": (("seed",), 2.0 + 0.1 * seeds)}, coords={"seed": seeds})


def _broken_run(ctx, s):
    CALLS.append(ctx.out.name)
    raise RuntimeError("planted failure")


def _unavailable_run(ctx, s):
    raise NotAvailable("planted: not built")


def _x(ds, ctx):
    return ds["x"]


def _bad_measure(ds, ctx):
    return ds["no_such_variable"]


@pytest.fixture
def fake_registry(monkeypatch):
    """Replace the claim registry by five cheap claims on planted numbers."""
    CALLS.clear()
    fake = Experiment("fake", "planted numbers", {"smoke": {"seeds": [0, 1, 2]}, "cpu": "too big for this test",
                                                   "gpu": {"seeds": [0]}}, _fake_run)
    monkeypatch.setitem(EXPERIMENTS, "fake", fake)
    monkeypatch.setitem(EXPERIMENTS, "fake_cifar", Experiment("fake_cifar", "needs data", {"smoke": {"seeds": [0]}},
                                                              _fake_run, needs=("cifar10",)))
    monkeypatch.setitem(EXPERIMENTS, "fake_broken", Experiment("fake_broken", "fails", {"smoke": {"seeds": [0]}},
                                                               _broken_run))
    monkeypatch.setitem(EXPERIMENTS, "fake_missing", Experiment("fake_missing", "not built", {"smoke": {"seeds": [0]}},
                                                                _unavailable_run))
    registry = (
        Claim("above", "x is at least 1", "x", Criterion("at_least", 1.0), "fake", _x, published=2.5,
              published_source="planted"),
        Claim("below", "x is at most 1", "x", Criterion("at_most", 1.0), "fake", _x),
        Claim("needs_cifar", "needs CIFAR-10", "x", Criterion("at_least", 1.0), "fake_cifar", _x),
        Claim("broken", "its experiment fails", "x", Criterion("at_least", 1.0), "fake_broken", _x),
        Claim("missing", "its experiment is not built", "x", Criterion("at_least", 1.0), "fake_missing", _x),
        Claim("bad_measure", "its measure fails", "x", Criterion("at_least", 1.0), "fake", _bad_measure),
    )
    monkeypatch.setattr(claims_mod, "CLAIMS", registry)
    monkeypatch.setattr(runner, "CLAIMS", registry)
    monkeypatch.delenv("BIOPLASTIC_SHARED_DATA", raising=False)
    return registry


def test_claims_dataset_verdicts_and_reasons(fake_registry, tmp_path):
    ds = bioplastic.reproduce(budget="smoke", out=tmp_path)
    assert list(ds["claim"].values) == ["above", "below", "needs_cifar", "broken", "missing", "bad_measure"]
    assert ds["claim"].dtype.kind == "U"
    v = dict(zip(ds["claim"].values, ds["verdict"].values))
    assert v == {"above": "reproduced", "below": "not reproduced", "needs_cifar": "not run at this budget",
                 "broken": "not run at this budget", "missing": "not run at this budget",
                 "bad_measure": "not run at this budget"}
    assert "no_such_variable" in str(ds["reason"].sel(claim="bad_measure").values)
    reasons = dict(zip(ds["claim"].values, ds["reason"].values))
    assert "--data-path" in reasons["needs_cifar"]
    assert "planted failure" in reasons["broken"] and "planted: not built" in reasons["missing"]
    above = ds.sel(claim="above")
    assert float(above["seed_mean"]) == pytest.approx(2.1) and float(above["sd"]) == pytest.approx(0.1)
    assert int(above["n"]) == 3 and float(above["published"]) == 2.5 and str(above["budget"].values) == "smoke"
    np.testing.assert_allclose(above["value"].sel(seed=[0, 1, 2]).values, [2.0, 2.1, 2.2])
    assert ">= 1" in str(above["criterion"].values)
    assert str(above["command"].values).startswith("bioplastic reproduce --budget smoke --out ")
    assert "--claims above" in str(above["command"].values)
    assert int(ds.sel(claim="needs_cifar")["n"]) == 0 and math.isnan(float(ds.sel(claim="needs_cifar")["seed_mean"]))
    # the file on disk is the returned Dataset
    saved = io.load(tmp_path / "claims.nc")
    for name in ("verdict", "reason", "statement", "criterion", "n", "value", "seed_mean", "sd"):
        np.testing.assert_array_equal(saved[name].values, ds[name].values)


def test_rerun_does_no_training_and_rewrites_no_claim_file(fake_registry, tmp_path):
    bioplastic.reproduce(budget="smoke", out=tmp_path, claims="above,below")
    assert CALLS == ["fake"]  # one experiment run answers both claims
    files = sorted((tmp_path / "claims").glob("*.nc"))
    assert [f.name for f in files] == ["above.nc", "below.nc"]
    stamps = {f.name: (f.stat().st_mtime_ns, f.stat().st_ino) for f in files}
    before = runner.STATS["experiments_run"]
    ds = bioplastic.reproduce(budget="smoke", out=tmp_path, claims="above,below")
    assert CALLS == ["fake"] and runner.STATS["experiments_run"] == before
    assert {f.name: (f.stat().st_mtime_ns, f.stat().st_ino) for f in files} == stamps
    assert list(ds["verdict"].values) == ["reproduced", "not reproduced"]


def test_report_only_runs_nothing_and_lists_the_rest_as_not_run(fake_registry, tmp_path, capsys):
    bioplastic.reproduce(budget="smoke", out=tmp_path, claims="above")
    CALLS.clear()
    ds = bioplastic.reproduce(budget="smoke", out=tmp_path, claims="above,below,needs_cifar", run=False,
                              not_run_reason="still running")
    assert CALLS == []
    assert list(ds["verdict"].values) == ["reproduced", "not run at this budget", "not run at this budget"]
    assert "still running" in str(ds["reason"].sel(claim="below").values)
    assert not (tmp_path / "claims" / "below.nc").exists()
    assert main(["reproduce", "--budget", "smoke", "--out", str(tmp_path), "--claims", "above,below",
                 "--report-only", "--reason", "later"]) == 0
    assert CALLS == [] and "not run at this budget" in capsys.readouterr().out


def test_a_stopped_reproduction_resumes_with_the_missing_claims_only(fake_registry, tmp_path):
    bioplastic.reproduce(budget="smoke", out=tmp_path, claims="above")
    ds = bioplastic.reproduce(budget="smoke", out=tmp_path)  # all: "above" is loaded, the experiment result reused
    assert CALLS == ["fake", "fake_broken"]  # the fake experiment was not run again (its result.nc was reused)
    assert set(ds["claim"].values) == {c.id for c in fake_registry}


def test_claims_measured_earlier_stay_in_claims_nc(fake_registry, tmp_path):
    bioplastic.reproduce(budget="smoke", out=tmp_path, claims="above")
    ds = bioplastic.reproduce(budget="smoke", out=tmp_path, claims="below")
    assert list(ds["claim"].values) == ["above", "below"]


def test_budget_without_the_experiment_is_not_run_at_this_budget(fake_registry, tmp_path):
    ds = bioplastic.reproduce(budget="cpu", out=tmp_path, claims="above")
    assert str(ds["verdict"].values[0]) == "not run at this budget"
    assert "too big for this test" in str(ds["reason"].values[0])
    assert CALLS == []


def test_one_seed_gives_partly(fake_registry, tmp_path):
    ds = bioplastic.reproduce(budget="smoke", out=tmp_path, claims="above", seeds=[4])
    assert str(ds["verdict"].values[0]) == "partly" and int(ds["n"].values[0]) == 1


def test_other_settings_in_the_same_folder_are_refused_and_nothing_is_lost(fake_registry, tmp_path):
    bioplastic.reproduce(budget="smoke", out=tmp_path, claims="above")
    path = tmp_path / "claims" / "above.nc"
    before = path.read_bytes()
    with pytest.raises(ValueError, match="other settings"):
        bioplastic.reproduce(budget="smoke", out=tmp_path, claims="above", seeds="0,1")
    with pytest.raises(ValueError, match="other settings"):
        bioplastic.reproduce(budget="gpu", out=tmp_path, claims="above")
    assert path.read_bytes() == before


def test_unknown_claim_or_budget_lists_the_valid_ones(tmp_path):
    with pytest.raises(ValueError, match="unknown claim id 'nope'; valid: linear_fixed_stalls, "):
        bioplastic.reproduce(budget="smoke", out=tmp_path, claims=["nope"])
    with pytest.raises(ValueError, match="unknown budget 'huge'; valid: smoke, cpu, gpu"):
        bioplastic.reproduce(budget="huge", out=tmp_path)
    with pytest.raises(ValueError, match="seeds"):
        bioplastic.reproduce(budget="smoke", out=tmp_path, seeds="0,x")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        bioplastic.reproduce(budget="smoke", out=tmp_path, claims="linear_fixed_stalls", data_path=tmp_path / "no")
    assert not (tmp_path / "claims.nc").exists()


@pytest.mark.parametrize("argv, words", [
    (["--budget", "huge"], ["unknown budget 'huge'", "smoke, cpu, gpu"]),
    (["--budget", "smoke", "--claims", "linear_fixed_stalls,nope"], ["unknown claim id 'nope'", "mnist_fixed_low_rank_worse"]),
])
def test_cli_bad_input_is_one_line_exit_2(argv, words, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["reproduce", "--out", str(tmp_path / "o"), *argv])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and all(w in err for w in words), err


def test_report_has_the_summary_table_and_one_section_per_claim(fake_registry, tmp_path):
    ds = bioplastic.reproduce(budget="smoke", out=tmp_path)
    text = (tmp_path / "report.html").read_text()
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert len(re.findall(r"<section id='", text)) == ds.sizes["claim"] == 6
    summary = text.split("<h2>Summary</h2>")[1].split("</table>")[0]
    assert all(f"<a href='#{c}'>" in summary for c in ds["claim"].values)
    assert summary.index("reproduced") < text.index("<section")  # verdicts at the top
    # figures are embedded, nothing links to a file
    assert "data:image/png;base64," in text and "src='figures/" not in text
    assert "bioplastic reproduce --budget smoke" in text


def test_markdown_twin(fake_registry, tmp_path):
    from bioplastic.reproduction import write_markdown

    ds = bioplastic.reproduce(budget="smoke", out=tmp_path / "run")
    md = write_markdown(ds, tmp_path / "run", tmp_path / "docs" / "reproduction.md", label="planted test run")
    text = md.read_text()
    assert "planted test run" in text and text.count("\n## ") == 6
    assert "](reproduction/above.png)" in text and (tmp_path / "docs" / "reproduction" / "above.png").exists()


def test_registry_is_consistent():
    ids = claim_ids()
    assert len(ids) == len(set(ids)) == len(CLAIMS)
    for claim in CLAIMS:
        exp = EXPERIMENTS[claim.experiment]
        assert set(exp.settings) == set(BUDGETS), claim.id
        assert claim.statement and claim.quantity and claim.published_source, claim.id
    # the named claims are there
    for needed in ("linear_fixed_stalls", "linear_q_only_stalls", "linear_adaptive_top_modes",
                   "linear_rank_d_matches_bp", "mnist_adaptive_rank_d_matches_bp", "mnist_fixed_low_rank_worse",
                   "cnn_ldfa_tracks_bp", "cnn_fa_dfa_behind", "vit_high_rank_near_bp", "compute_weight_flop_ratio",
                   "compute_flops_to_90", "compute_flops_to_90_cnn", "compute_flops_to_90_mnist",
                   "rf_low_rank_centre_surround", "rf_bottleneck_centre_surround", "rate_matches_autograd_twin",
                   "it_ldfa_like_bp"):
        assert needed in ids
    # the authors' ViT table is the published value of the ViT claims
    vit = next(c for c in CLAIMS if c.id == "vit_high_rank_near_bp")
    assert vit.published == pytest.approx(91.34 - 90.77)


def test_linear_theory_claims_measure_the_simulation(tmp_path, monkeypatch):
    """The real smoke run of two linear-theory claims: the measured values are the simulation's loss ratios."""
    ds = bioplastic.reproduce(budget="smoke", out=tmp_path, claims="linear_fixed_stalls,linear_rank_d_matches_bp")
    res = io.load(tmp_path / "experiments" / "smoke" / "linear_theory" / "result.nc")
    fraction = res["loss"].isel(step=-1) / res["loss"].isel(step=0)
    np.testing.assert_allclose(ds["value"].sel(claim="linear_fixed_stalls").values,
                               fraction.sel(rule="ldfa_fixed", rank=2).values)
    worst = fraction.sel(rank=4, rule=["ldfa_fixed", "ldfa_q_only", "ldfa_normative"]).max("rule")
    np.testing.assert_allclose(ds["value"].sel(claim="linear_rank_d_matches_bp").values, worst.values)
    # BP learns the teacher in every seed (a sanity check of the experiment itself)
    assert float(fraction.sel(rule="bp").max()) < 1e-3
    assert int(ds["n"].sel(claim="linear_fixed_stalls")) == 3


@pytest.mark.slow
def test_full_smoke_budget_and_resume(tmp_path, monkeypatch):
    """Every claim at the smoke budget (CIFAR-10 / IT claims where ../shared/data is present, else "not run"),
    then a rerun that trains nothing and rewrites no claim file."""
    from tests.conftest import SHARED_DATA

    data = SHARED_DATA if SHARED_DATA.is_dir() else None
    monkeypatch.delenv("BIOPLASTIC_SHARED_DATA", raising=False)
    ds = bioplastic.reproduce(budget="smoke", out=tmp_path, data_path=data)
    assert list(ds["claim"].values) == list(claim_ids())
    text = (tmp_path / "report.html").read_text()
    assert len(re.findall(r"<section id='", text)) == len(CLAIMS)
    measured = [str(c) for c, n in zip(ds["claim"].values, ds["n"].values) if n > 0]
    for cid in ("linear_fixed_stalls", "mnist_adaptive_rank_d_matches_bp", "compute_weight_flop_ratio"):
        assert cid in measured
    if data is not None:
        for cid in ("cnn_ldfa_tracks_bp", "vit_high_rank_near_bp", "compute_flops_to_90", "it_ldfa_like_bp"):
            assert cid in measured, ds["reason"].sel(claim=cid).values
    else:
        assert "--data-path" in str(ds["reason"].sel(claim="cnn_ldfa_tracks_bp").values)
    files = sorted((tmp_path / "claims").glob("*.nc"))
    stamps = [(f.stat().st_mtime_ns, f.stat().st_ino) for f in files]
    before = runner.STATS["experiments_run"]
    again = bioplastic.reproduce(budget="smoke", out=tmp_path, data_path=data)
    assert runner.STATS["experiments_run"] == before
    assert [(f.stat().st_mtime_ns, f.stat().st_ino) for f in files] == stamps
    assert list(again["verdict"].values) == list(ds["verdict"].values)


def test_data_path_is_the_shared_folder_or_a_cifar_folder(tmp_path, monkeypatch):
    from bioplastic.reproduction.experiments import find_data

    monkeypatch.delenv("BIOPLASTIC_SHARED_DATA", raising=False)
    assert find_data(None) == (None, None)
    shared = tmp_path / "shared"
    (shared / "cifar10").mkdir(parents=True)
    assert find_data(shared) == (shared, None)  # no CIFAR-10 files in it
    (shared / "cifar10" / "cifar10-jpeg-train.zip").write_bytes(b"")
    assert find_data(shared) == (shared, shared / "cifar10")
    assert find_data(shared / "cifar10") == (shared, shared / "cifar10")
    monkeypatch.setenv("BIOPLASTIC_SHARED_DATA", str(shared))
    assert find_data(None) == (shared, shared / "cifar10")


def test_bad_device_is_refused_before_anything_runs(tmp_path):
    with pytest.raises(ValueError, match="unknown device"):
        bioplastic.reproduce(budget="smoke", out=tmp_path / "o", device="gpu0")
    assert not (tmp_path / "o").exists()


def test_log_slope_of_r_star_on_planted_values():
    """r* = K gives slope 1, r* independent of K slope 0, r* = sqrt(K) slope 0.5; a rank never reached (inf)
    leaves that seed without a value."""
    from bioplastic.reproduction.claims import _log_slope

    k = np.array([5.0, 10.0, 20.0, 40.0])
    r = xr.DataArray(np.stack([k, np.full(4, 8.0), np.sqrt(k), np.r_[k[:3], np.inf]], axis=1),
                     dims=("K", "seed"), coords={"K": k, "seed": [0, 1, 2, 3]})
    slope = _log_slope(r, "K")
    np.testing.assert_allclose(slope.values[:3], [1.0, 0.0, 0.5], atol=1e-12)
    assert np.isnan(slope.values[3])


def test_cli_runs_prints_the_verdicts_and_writes_the_markdown_twin(fake_registry, tmp_path, capsys):
    md = tmp_path / "docs" / "reproduction.md"
    assert main(["reproduce", "--budget", "smoke", "--out", str(tmp_path / "o"), "--claims", "above,below",
                 "--threads", "1", "--markdown", str(md), "--label", "a test"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^above\s+reproduced\s+2\.1 \(n=3\)$", out, re.M), out
    assert re.search(r"^below\s+not reproduced", out, re.M)
    assert (tmp_path / "o" / "claims.nc").exists() and (tmp_path / "o" / "report.html").exists()
    assert "a test" in md.read_text()


SETUP = {"epochs": 4}


def test_a_result_of_another_set_up_is_never_reused(fake_registry, tmp_path, monkeypatch):
    """The set-up an experiment's settings name only indirectly (``Experiment.setup``, e.g. an analysis script's
    budget) is part of the settings: changing it refuses the stored claims and reruns the experiment."""
    monkeypatch.setitem(SETUP, "epochs", 4)
    exp = Experiment("fake", "planted numbers", {"smoke": {"seeds": [0, 1, 2]}}, _fake_run, setup=lambda s: dict(SETUP))
    monkeypatch.setitem(EXPERIMENTS, "fake", exp)
    assert exp.settings_for("smoke")["setup"] == {"epochs": 4}
    bioplastic.reproduce(budget="smoke", out=tmp_path, claims="above")
    assert CALLS == ["fake"]
    bioplastic.reproduce(budget="smoke", out=tmp_path, claims="above")  # same set-up: nothing reruns
    assert CALLS == ["fake"]
    path = tmp_path / "claims" / "above.nc"
    before = path.read_bytes()
    SETUP["epochs"] = 20
    with pytest.raises(ValueError, match="other settings"):
        bioplastic.reproduce(budget="smoke", out=tmp_path, claims="above")
    assert path.read_bytes() == before and CALLS == ["fake"]
    path.unlink()  # the user moves the old claim away: the stored experiment result is not reused either
    bioplastic.reproduce(budget="smoke", out=tmp_path, claims="above")
    assert CALLS == ["fake", "fake"]
    assert '"epochs": 20' in io.load(tmp_path / "claims" / "above.nc").attrs["settings_key"]


def test_setup_that_cannot_be_resolved_is_left_out():
    def unavailable(s):
        raise NotAvailable("no analysis script here")

    exp = Experiment("fake", "planted", {"smoke": {"seeds": [0]}}, _fake_run, setup=unavailable)
    assert exp.settings_for("smoke") == {"seeds": [0]}


def test_receptive_field_settings_carry_the_analysis_budget_set_up(monkeypatch):
    from bioplastic.reproduction.experiments import analysis_module

    mod = analysis_module("receptive_fields.py")
    exp = EXPERIMENTS["receptive_fields"]
    for budget in BUDGETS:
        s = exp.settings_for(budget)
        assert s["setup"] == json.loads(json.dumps(mod.setup(s["analysis_budget"])))
        spec = s["setup"]["spec"]
        assert spec["architecture"] == "retina_vvs" and "training" in spec
    before = exp.settings_for("cpu")
    monkeypatch.setitem(mod.BUDGETS, "cpu", {**mod.BUDGETS["cpu"], "epochs": mod.BUDGETS["cpu"]["epochs"] + 1})
    after = exp.settings_for("cpu")
    assert after["setup"]["epochs"] == before["setup"]["epochs"] + 1 and after != before


def test_receptive_field_seeds_are_reused_by_runs_with_other_seed_lists(tmp_path, monkeypatch):
    """One seed's result does not depend on the other seeds of the run: a run of seeds 0, 1, 2 reuses the seeds
    0 and 1 of an earlier run (e.g. seeds run in parallel by separate processes), and trains only seed 2."""
    from bioplastic.reproduction.experiments import Context, _run_receptive_fields, analysis_module

    mod = analysis_module("receptive_fields.py")
    trained = []

    def fake_run(*, out, seed, **kwargs):
        trained.append(seed)
        return xr.Dataset({"centre_surround_index": (("rule", "layer", "neuron"), np.full((1, 1, 2), 0.1 * seed))},
                          coords={"rule": ["bp"], "layer": ["retina.relu2"], "neuron": [0, 1]})

    monkeypatch.setattr(mod, "run", fake_run)
    ctx = Context(out=tmp_path, budget="smoke")
    exp = EXPERIMENTS["receptive_fields"]
    _run_receptive_fields(ctx, exp.settings_for("smoke", [0, 1]))
    assert trained == [0, 1]
    ds = _run_receptive_fields(ctx, exp.settings_for("smoke", [0, 1, 2]))
    assert trained == [0, 1, 2]
    np.testing.assert_allclose(ds["centre_surround_index"].sel(rule="bp", layer="retina.relu2", neuron=0).values,
                               [0.0, 0.1, 0.2])
    other = exp.settings_for("smoke", [0])
    other["ranks"] = [2]  # other settings: nothing is reused
    _run_receptive_fields(ctx, other)
    assert trained == [0, 1, 2, 0]


def test_console_names_why_a_claim_was_not_run_and_the_folder_searched(fake_registry, tmp_path, capsys,
                                                                         monkeypatch):
    monkeypatch.delenv("BIOPLASTIC_SHARED_DATA", raising=False)
    empty = tmp_path / "data"
    empty.mkdir()
    assert main(["reproduce", "--budget", "smoke", "--out", str(tmp_path / "r"), "--claims", "above,needs_cifar",
                 "--data-path", str(empty)]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("needs_cifar"))
    assert "not run at this budget" in line and "CIFAR-10 not found" in line and str(empty) in line
    assert "smoke budget" in out  # the caveat that smoke verdicts mean nothing
    above = next(ln for ln in out.splitlines() if ln.startswith("above"))
    assert "(" not in above.split("reproduced", 1)[1].replace("(n=", "")  # measured claims carry no reason


def test_it_settings_carry_the_analysis_budget_set_up(monkeypatch):
    """The IT comparison's settings hold analyses/rsa_it.py's resolved set-up: editing its budget or the model's
    recipe changes the settings, so a stored result of the old set-up is not reused."""
    from bioplastic.architectures import load_spec
    from bioplastic.reproduction.experiments import analysis_module

    mod = analysis_module("rsa_it.py")
    exp = EXPERIMENTS["rsa_it"]
    for budget in BUDGETS:
        s = exp.settings_for(budget)
        assert s["setup"] == json.loads(json.dumps(mod.setup(s["analysis_budget"], epochs=s.get("epochs"),
                                                             max_train=s.get("max_train"))))
        assert s["setup"]["model"] == "cnn_small" and s["setup"]["spec"] == json.loads(json.dumps(dict(load_spec("cnn_small"))))
    assert exp.settings_for("cpu")["setup"]["epochs"] == 4  # the experiment's own epochs win over the budget's
    before = exp.settings_for("gpu")  # takes its epochs from the analysis budget
    monkeypatch.setitem(mod.BUDGETS, "full", {**mod.BUDGETS["full"], "epochs": mod.BUDGETS["full"]["epochs"] + 1})
    after = exp.settings_for("gpu")
    assert after["setup"]["epochs"] == before["setup"]["epochs"] + 1 and after != before
