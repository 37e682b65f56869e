"""bioplastic.compare: the grid of runs, xarray results, resume after interruption, bad input.

Two kinds of tests:
- bookkeeping (grid, statuses, resume, errors before training) with a fake training engine that follows
  the trainer contract and records its calls, so a test can tell whether training started at all;
- end to end with the real ``train`` on scikit-learn's digits (small, a few seconds).
"""
from __future__ import annotations

import dataclasses
import json
import zlib
from typing import Any

import numpy as np
import pytest
import torch
import xarray as xr

import bioplastic
from bioplastic import io
from bioplastic.testing import assert_results_equal
from bioplastic.training import comparison as compare_mod
from bioplastic.training import results as R
from bioplastic.training.trainer import RunResult

LAYERS = ["net.0", "net.2", "net.4"]


# ----------------------------------------------------------------------------------- the fake engine
@dataclasses.dataclass(frozen=True)
class FakeConfig:
    model: Any = "mlp_digits"
    rule: str = "bp"
    rule_options: dict = dataclasses.field(default_factory=dict)
    epochs: int = 2
    batch_size: int = 32
    lr: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    feedback_lr: float | None = None
    feedback_weight_decay: float = 0.0
    schedule: str = "constant"
    warmup_epochs: float = 0.0
    amp: bool = False
    compile: bool = False
    seed: int = 0
    device: str = "cpu"
    max_train: int | None = None
    alignment: bool = True

    def to_dict(self):
        return dataclasses.asdict(self)


FakeResult = RunResult  # the engine's own result type (the fake engine fills it with made-up curves)


class FakeEngine:
    """Deterministic curves from (rule, rank, seed); ``fail_at`` raises on the n-th call (1-based);
    rules in ``diverge`` diverge after their first epoch."""

    TrainConfig = FakeConfig
    RunResult = FakeResult

    def __init__(self, fail_at=None, exc=KeyboardInterrupt, diverge=()):
        self.calls: list[FakeConfig] = []
        self.fail_at, self.exc, self.diverge = fail_at, exc, set(diverge)

    def train(self, config, dataset, *, checkpoint_dir=None, progress=True, callbacks=()):
        self.calls.append(config)
        if self.fail_at is not None and len(self.calls) == self.fail_at:
            raise self.exc("simulated interruption")
        rank = config.rule_options.get("rank", 0)
        key = zlib.crc32(f"{config.rule}|{config.rule_options.get('feedback_learning')}|{rank}".encode()) % 1000
        rng = np.random.default_rng(key * 100 + config.seed)
        e = config.epochs
        acc = np.sort(rng.uniform(0.5, 0.99, e))
        loss = np.sort(rng.uniform(0.05, 2.0, e))[::-1].copy()
        cos = rng.uniform(-1, 1, (e, len(LAYERS)))
        cos[:, -1] = 1.0
        status, done = "ok", e
        if config.rule in self.diverge:
            acc[1:], loss[1:], cos[1:] = np.nan, np.nan, np.nan
            status, done = "diverged", 1
        for epoch in range(done):  # as the trainer: callback(epoch from 1, record) after each epoch
            for callback in callbacks:
                callback(epoch + 1, {"train_loss": float(loss[epoch]), "test_loss": float(loss[epoch] + 0.1),
                                     "test_accuracy": float(acc[epoch]), "status": status})
        return FakeResult(config.to_dict(), status, done, loss, loss + 0.1, acc, list(LAYERS),
                          {"update_cosine": cos, "feedback_angle": np.degrees(np.arccos(np.clip(cos, -1, 1)))},
                          torch.nn.Linear(2, 2), seconds=float(rng.uniform(1, 2)))


@pytest.fixture
def engine(monkeypatch):
    """Install a FakeEngine (the real rules validate the grid's options)."""
    fake = FakeEngine()
    monkeypatch.setattr(compare_mod, "_trainer", lambda: fake)
    return fake


@pytest.fixture
def digits_spec(monkeypatch):
    """A tiny MLP spec for the 8x8 digits, registered under a test-only architecture name."""
    from bioplastic.architectures import spec as spec_mod

    def build(widths):
        layers: list[torch.nn.Module] = [torch.nn.Flatten()]
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
        return torch.nn.Sequential(*layers[:-1])

    monkeypatch.setitem(spec_mod._BUILDERS, "test_mlp", build)
    monkeypatch.setattr(spec_mod, "_load_builders", lambda: None)
    return {"name": "test_digits", "architecture": "test_mlp", "widths": [64, 32, 16, 10],
            "training": {"epochs": 3, "batch_size": 64, "lr": 0.01}}


def small(spec, out=None, **kw):
    args = dict(rules=["bp", "fa", "ldfa"], ranks=[1, 4], seeds=[0, 1], epochs=3, dataset="digits", out=out,
                feedback_learning=["normative", "fixed"], model=spec, progress=False, figure=False)
    args.update(kw)
    return bioplastic.compare(**args)


# ----------------------------------------------------------------------------------- the Dataset
def test_grid_dims_coords_and_values(engine, digits_spec, tmp_path):
    ds = small(digits_spec, tmp_path / "out")
    assert dict(ds.sizes) == {"rule": 4, "rank": 3, "seed": 2, "epoch": 3, "layer": 3}
    assert list(ds.rule.values) == ["bp", "fa", "ldfa_normative", "ldfa_fixed"]
    assert list(ds.base_rule.values) == ["bp", "fa", "ldfa", "ldfa"]
    assert list(ds.feedback_learning.values) == ["", "", "normative", "fixed"]
    assert list(ds["rank"].values) == [R.NO_RANK, 1, 4]
    assert list(ds.epoch.values) == [1, 2, 3] and list(ds.layer.values) == LAYERS
    # 2 full-feedback rules x 1 + 2 LDFA variants x 2 ranks, x 2 seeds = 12 runs, each trained once
    assert len(engine.calls) == 12
    st = ds.status.values
    assert (st[:2, 0] == "ok").all() and (st[:2, 1:] == "not_applicable").all()
    assert (st[2:, 0] == "not_applicable").all() and (st[2:, 1:] == "ok").all()
    assert np.isnan(ds.test_accuracy.sel(rule="bp", rank=4)).all()
    # every value lands in its own cell: recompute one run with the fake and compare
    cfg = next(c for c in engine.calls if c.rule == "ldfa" and c.seed == 1 and c.rule_options["rank"] == 4
               and c.rule_options["feedback_learning"] == "fixed")
    ref = FakeEngine().train(cfg, None)
    cell = ds.sel(rule="ldfa_fixed", rank=4, seed=1)
    np.testing.assert_array_equal(cell.test_accuracy.values, ref.test_accuracy)
    np.testing.assert_array_equal(cell.update_cosine.values, ref.alignment["update_cosine"])
    assert json.loads(str(cell.run_config.values)) == cfg.to_dict()
    # only what the caller gave is passed on; TrainConfig resolves the rest from the spec's recipe
    assert cfg.epochs == 3 and cfg.seed == 1 and cfg.batch_size == FakeConfig.batch_size
    assert cfg.rule_options == {"rank": 4, "feedback_learning": "fixed"}
    conf = io.config_of(ds)
    assert conf["rules"] == ["bp", "fa", "ldfa"] and conf["ranks"] == [1, 4] and conf["dataset"] == "digits"
    assert ds.attrs["bioplastic_version"] == bioplastic.__version__
    for name in ds.variables:  # netCDF-able attrs only
        for v in ds[name].attrs.values():
            assert isinstance(v, (str, int, float, list))


def test_netcdf_round_trip_is_identical(engine, digits_spec, tmp_path):
    ds = small(digits_spec, tmp_path / "out", seeds=[0], figure=True)
    on_disk = bioplastic.training.load_results(tmp_path / "out")
    xr.testing.assert_identical(ds, on_disk)
    io.save(on_disk, tmp_path / "again.nc")
    xr.testing.assert_identical(ds, io.load(tmp_path / "again.nc"))
    assert (tmp_path / "out" / "figure.png").stat().st_size > 10_000


def test_no_out_writes_nothing(engine, digits_spec, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ds = small(digits_spec, None, rules=["bp"], seeds=[0])
    assert list(ds.rule.values) == ["bp"] and list(ds["rank"].values) == [R.NO_RANK]
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------------- relative ranks
def test_rank_fractions_are_relative_ranks_in_the_rank_dim(engine, digits_spec, tmp_path):
    ds = small(digits_spec, tmp_path / "out", ranks=[4], rank_fractions="0.5,0.25", seeds=[0])
    # absolute ranks first, then the relative ones (smallest fraction first) at their codes
    assert list(ds["rank"].values) == [R.NO_RANK, 4, -12500, -15000]
    assert ds["rank"].dtype == np.int64 and list(ds.sizes) == ["rule", "rank", "seed", "epoch", "layer"]
    np.testing.assert_array_equal(ds.rank_fraction.values, [np.nan, np.nan, 0.25, 0.5])
    assert R.fraction_rank(0.25) == -12500 and R.rank_fraction_of(-12500) == 0.25
    assert R.rank_fraction_of(4) is None and R.rank_fraction_of(R.NO_RANK) is None
    # the rule core gets rank_fraction (ceil(fraction * width) per layer), not a rank
    opts = [(c.rule_options.get("rank"), c.rule_options.get("rank_fraction")) for c in engine.calls
            if c.rule == "ldfa" and c.rule_options["feedback_learning"] == "fixed"]
    assert opts == [(4, None), (None, 0.25), (None, 0.5)]
    assert (ds.status.sel(rule=["ldfa_normative", "ldfa_fixed"], rank=[4, -12500, -15000]).values == "ok").all()
    assert (ds.status.sel(rule=["bp", "fa"], rank=-12500).values == "not_applicable").all()
    quarter = ds.where(ds.rank_fraction == 0.25, drop=True)
    assert list(quarter["rank"].values) == [-12500]
    assert io.config_of(ds)["rank_fractions"] == [0.25, 0.5] and io.config_of(ds)["ranks"] == [4]
    assert sorted(p.name for p in (tmp_path / "out" / "runs").iterdir()) == sorted(
        ["bp-s0.nc", "fa-s0.nc"] + [f"ldfa_{fl}-{r}-s0.nc" for fl in ("normative", "fixed")
                                    for r in ("r4", "f0.25", "f0.5")])
    assert sorted(bioplastic.training.list_models(tmp_path / "out"))[:3] == [
        ("bp", -1, 0), ("fa", -1, 0), ("ldfa_fixed", -15000, 0)]
    # netCDF round trip, no MultiIndex
    xr.testing.assert_identical(ds, bioplastic.training.load_results(tmp_path / "out"))
    # the table names relative ranks by their fraction of the width
    body = [line.split()[:2] for line in R.format_table(ds).splitlines()[2:10]]
    assert ["ldfa_normative", "0.25w"] in body and ["ldfa_fixed", "0.5w"] in body
    # resume: nothing retrained; adding a fraction trains only the new runs
    n = len(engine.calls)
    again = small(digits_spec, tmp_path / "out", ranks=[4], rank_fractions=[0.25, 0.5], seeds=[0])
    assert len(engine.calls) == n
    assert_results_equal(ds, again)
    small(digits_spec, tmp_path / "out", ranks=[4], rank_fractions=[0.125, 0.25, 0.5], seeds=[0])
    assert len(engine.calls) == n + 2


def test_rank_fractions_alone_replace_the_default_ranks(engine, digits_spec):
    ds = small(digits_spec, None, ranks=None, rank_fractions=[1], rules=["bp", "ldfa"],
               feedback_learning=["normative"], seeds=[0])
    assert list(ds["rank"].values) == [R.NO_RANK, -20000]
    assert [c.rule_options for c in engine.calls if c.rule == "ldfa"] == [
        {"rank_fraction": 1.0, "feedback_learning": "normative"}]
    from bioplastic.training import plot_comparison

    fig = plot_comparison(ds)
    curves, vs_rank = fig.axes[:2]
    assert "LDFA adaptive (normative) r=1w, reads W" in {line.get_label() for line in curves.get_lines()}
    assert vs_rank.get_xlabel() == "feedback rank / layer width"
    ldfa = [c for c in vs_rank.containers if c.get_label() == "LDFA adaptive (normative), reads W"][0]
    np.testing.assert_allclose(np.asarray(ldfa.lines[0].get_xdata(), float), [1.0])


@pytest.mark.parametrize("fractions, words", [
    ([0], ["rank fraction", "(0, 1]", "0"]),
    ([1.5], ["rank fraction", "(0, 1]", "1.5"]),
    ("0.25,-0.1", ["rank fraction", "-0.1"]),
    ([float("nan")], ["rank fraction", "nan"]),
    ("0.25,abc", ["rank_fractions", "abc"]),
    ([0.25, 0.25], ["duplicate"]),
    ([0.333333], ["four decimals"]),
    ([True], ["rank_fractions", "True"]),
])
def test_bad_rank_fractions_fail_before_training(engine, digits_spec, tmp_path, fractions, words):
    with pytest.raises(ValueError) as info:
        small(digits_spec, tmp_path / "out", rank_fractions=fractions)
    for word in words:
        assert word in str(info.value)
    assert engine.calls == [] and not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs, words", [
    ({"rules": ["bp", "backprop"]}, ["'backprop'", "'bp'", "'fa'", "'ldfa'", "'direct_ldfa'"]),
    ({"feedback_learning": ["normative", "hebb"]}, ["'hebb'", "'fixed'", "'oja'", "'local'"]),
    ({"dataset": "imagenet"}, ["'imagenet'", "'mnist'", "'digits'", "'cifar10'"]),
    ({"ranks": [0, 4]}, ["rank", "1..32"]),
    ({"ranks": [33]}, ["rank", "1..32"]),
    ({"ranks": "1,2.5"}, ["ranks", "2.5"]),
    ({"ranks": [1, 1]}, ["duplicate"]),
    ({"seeds": [-1]}, ["seed"]),
    ({"epochs": 0}, ["epochs"]),
    ({"rules": []}, ["empty"]),
    ({"ranks": []}, ["need at least one rank"]),
    ({"device": "cuda:7" if not torch.cuda.is_available() else "nonsense"}, ["device"]),
    ({"train_options": {"learning_rate": 1}}, ["learning_rate", "TrainConfig fields"]),
    ({"rule_options": {"rank": 3}}, ["rank"]),
])
def test_bad_input_fails_before_training(engine, digits_spec, tmp_path, kwargs, words):
    with pytest.raises(ValueError) as info:
        small(digits_spec, tmp_path / "out", **kwargs)
    for word in words:
        assert word in str(info.value)
    assert engine.calls == []


def test_model_that_does_not_fit_the_data_fails_before_training(engine, digits_spec, tmp_path):
    wrong_in = {**digits_spec, "widths": [784, 32, 10]}
    with pytest.raises(ValueError, match="does not accept digits inputs"):
        small(wrong_in, tmp_path)
    wrong_out = {**digits_spec, "widths": [64, 32, 7]}
    with pytest.raises(ValueError, match="10 classes"):
        small(wrong_out, tmp_path)
    assert engine.calls == []


def test_missing_data_file_is_named(engine, tmp_path):
    pytest.importorskip("bioplastic.data.cifar10")
    missing = tmp_path / "no_such_cifar"
    with pytest.raises((FileNotFoundError, ValueError), match="no_such_cifar"):
        bioplastic.compare(rules=["bp"], dataset="cifar10", data_path=missing, out=tmp_path / "o",
                           progress=False)
    with pytest.raises(ValueError, match="data_path"):
        bioplastic.compare(rules=["bp"], dataset="cifar10", out=tmp_path / "o", progress=False)
    assert engine.calls == []


def test_corrupt_data_file_is_named(engine, tmp_path):
    pytest.importorskip("bioplastic.data.cifar10")
    folder = tmp_path / "cifar"
    folder.mkdir()
    for name in ("cifar10-jpeg-train.zip", "cifar10-jpeg-test.zip"):
        (folder / name).write_bytes(b"this is not a zip file")
    with pytest.raises((ValueError, OSError), match="cifar10-jpeg-(train|test).zip"):
        bioplastic.compare(rules=["bp"], dataset="cifar10", data_path=folder, out=tmp_path / "o",
                           progress=False)
    assert engine.calls == []


# ----------------------------------------------------------------------------------- divergence
def test_divergence_is_recorded_and_others_go_on(engine, digits_spec, tmp_path):
    engine.diverge = {"fa"}
    ds = small(digits_spec, tmp_path / "out")
    assert (ds.status.sel(rule="fa", rank=R.NO_RANK).values == "diverged").all()
    assert (ds.epochs_completed.sel(rule="fa", rank=R.NO_RANK).values == 1).all()
    assert np.isnan(ds.test_accuracy.sel(rule="fa", rank=R.NO_RANK, epoch=[2, 3])).all()
    assert np.isfinite(ds.test_accuracy.sel(rule="fa", rank=R.NO_RANK, epoch=1)).all()
    assert (ds.status.sel(rule="bp", rank=R.NO_RANK).values == "ok").all()
    assert len(engine.calls) == 12
    table = R.format_table(ds)
    assert "diverged" in table


# ----------------------------------------------------------------------------------- interruption
@pytest.mark.parametrize("exc", [KeyboardInterrupt, RuntimeError])
def test_interrupt_keeps_finished_runs_and_resume_equals_uninterrupted(engine, digits_spec, tmp_path, exc):
    reference = small(digits_spec, tmp_path / "ref", seeds=[0], ranks=[4])
    n_runs = len(engine.calls)

    engine.calls.clear()
    engine.fail_at, engine.exc = 3, exc
    with pytest.raises(exc):
        small(digits_spec, tmp_path / "out", seeds=[0], ranks=[4])
    partial = bioplastic.training.load_results(tmp_path / "out")  # a valid file with the 2 finished runs
    assert (partial.status.values == "ok").sum() == 2
    assert (partial.status.values == "pending").sum() == n_runs - 2
    done = partial.status.values == "ok"
    np.testing.assert_array_equal(partial.test_accuracy.values[done], reference.test_accuracy.values[done])
    assert not (tmp_path / "out" / "figure.png").exists()

    engine.calls.clear()
    engine.fail_at = None
    resumed = small(digits_spec, tmp_path / "out", seeds=[0], ranks=[4])
    assert len(engine.calls) == n_runs - 2  # finished runs skipped
    assert_results_equal(resumed, reference)
    on_disk = bioplastic.training.load_results(tmp_path / "out")
    assert_results_equal(on_disk, reference)

    engine.calls.clear()  # a third call trains nothing
    small(digits_spec, tmp_path / "out", seeds=[0], ranks=[4])
    assert engine.calls == []


def test_checkpoint_dir_is_per_run_under_out(digits_spec, tmp_path, monkeypatch, engine):
    seen = []
    original = engine.train

    def train(config, dataset, *, checkpoint_dir=None, progress=True, callbacks=()):
        seen.append(checkpoint_dir)
        return original(config, dataset, checkpoint_dir=checkpoint_dir, progress=progress, callbacks=callbacks)

    monkeypatch.setattr(engine, "train", train)
    small(digits_spec, tmp_path / "out", rules=["bp", "ldfa"], ranks=[4], seeds=[0],
          feedback_learning=["fixed"])
    assert seen == [tmp_path / "out" / "checkpoints" / "bp-s0",
                    tmp_path / "out" / "checkpoints" / "ldfa_fixed-r4-s0"]


def test_resume_with_another_config_refuses_and_keeps_files(engine, digits_spec, tmp_path):
    small(digits_spec, tmp_path / "out", rules=["bp"], seeds=[0])
    before = {p: p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()}
    with pytest.raises(ValueError, match=r"bp-s0\.nc.*lr"):
        small(digits_spec, tmp_path / "out", rules=["bp"], seeds=[0], lr=0.5)
    after = {p: p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()}
    assert before == after


def test_out_folder_of_another_comparison_is_not_overwritten(engine, digits_spec, tmp_path):
    small(digits_spec, tmp_path / "out", rules=["bp"], seeds=[0])
    before = (tmp_path / "out" / "results.nc").read_bytes()
    with pytest.raises(ValueError, match=r"results.nc holds finished runs .*bp-s0"):
        small(digits_spec, tmp_path / "out", rules=["fa"], seeds=[0])
    assert (tmp_path / "out" / "results.nc").read_bytes() == before
    engine.calls.clear()  # extending the comparison is fine: bp is resumed, fa trained
    ds = small(digits_spec, tmp_path / "out", rules=["bp", "fa"], seeds=[0])
    assert [c.rule for c in engine.calls] == ["fa"] and (ds.status.values[:, 0] == "ok").all()


def test_corrupt_run_file_is_named(engine, digits_spec, tmp_path):
    small(digits_spec, tmp_path / "out", rules=["bp"], seeds=[0])
    (tmp_path / "out" / "runs" / "bp-s0.nc").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="bp-s0.nc"):
        small(digits_spec, tmp_path / "out", rules=["bp"], seeds=[0])


def test_corrupt_results_file_is_named(tmp_path):
    (tmp_path / "results.nc").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="results.nc"):
        bioplastic.training.load_results(tmp_path)
    with pytest.raises(FileNotFoundError, match="nothing_here"):
        bioplastic.training.load_results(tmp_path / "nothing_here")


# ----------------------------------------------------------------------------------- results module
def test_merge_rejects_runs_outside_the_grid_or_twice(engine, digits_spec):
    cfg = FakeConfig(rule="bp", epochs=2)
    run = R.run_to_dataset(FakeEngine().train(cfg, None), rule="bp", feedback_learning=None, rank=R.NO_RANK,
                           seed=0, epochs=2)
    grid = dict(rules=[("bp", None)], ranks=[R.NO_RANK], seeds=[0], epochs=2)
    with pytest.raises(ValueError, match="two runs"):
        R.merge_runs([run, run], **grid)
    with pytest.raises(ValueError, match="outside the grid"):
        R.merge_runs([run], **{**grid, "seeds": [1]})
    with pytest.raises(ValueError, match="epochs"):
        R.merge_runs([run], **{**grid, "epochs": 3})


def test_run_to_dataset_checks_shapes():
    res = FakeEngine().train(FakeConfig(epochs=2), None)
    res.alignment["update_cosine"] = res.alignment["update_cosine"][:, :2]
    with pytest.raises(ValueError, match="update_cosine"):
        R.run_to_dataset(res, rule="bp", feedback_learning=None, rank=R.NO_RANK, seed=0, epochs=2)


def test_layers_differing_between_runs_are_united_in_order():
    a = FakeEngine().train(FakeConfig(epochs=1), None)
    b = FakeEngine().train(FakeConfig(rule="fa", epochs=1), None)
    b.layers = ["net.2", "net.4"]  # e.g. net.0 excluded from conversion
    b.alignment = {k: v[:, 1:] for k, v in b.alignment.items()}
    runs = [R.run_to_dataset(a, rule="bp", feedback_learning=None, rank=-1, seed=0, epochs=1),
            R.run_to_dataset(b, rule="fa", feedback_learning=None, rank=-1, seed=0, epochs=1)]
    ds = R.merge_runs(runs, rules=[("bp", None), ("fa", None)], ranks=[-1], seeds=[0], epochs=1)
    assert list(ds.layer.values) == LAYERS
    assert np.isnan(ds.update_cosine.sel(rule="fa", layer="net.0")).all()
    np.testing.assert_array_equal(ds.update_cosine.sel(rule="fa", layer="net.4").values.ravel(),
                                  b.alignment["update_cosine"][:, 1])


def test_table_lists_each_run_row(engine, digits_spec):
    ds = small(digits_spec, None)
    lines = R.format_table(ds).splitlines()
    assert lines[0].split()[:3] == ["rule", "rank", "test"]
    body = [line.split()[:2] for line in lines[2:8]]
    assert lines[8] == "" and lines[9].startswith("upd:<layer> = cosine similarity")
    assert body == [["bp", "-"], ["fa", "-"], ["ldfa_normative", "1"], ["ldfa_normative", "4"],
                    ["ldfa_fixed", "1"], ["ldfa_fixed", "4"]]
    acc = ds.test_accuracy.sel(rule="ldfa_fixed", rank=4).isel(epoch=-1).values * 100
    row = lines[2 + 5]
    assert f"{acc.mean():.2f} +- {acc.std(ddof=1):.2f}" in row
    cos = ds.update_cosine.sel(rule="ldfa_fixed", rank=4).isel(epoch=-1).mean("seed").values
    assert row.split()[-3:] == [f"{c:.3f}" for c in cos]


def test_figure_panels_show_the_data(engine, digits_spec):
    from bioplastic.training import plot_comparison

    ds = small(digits_spec, None)
    fig = plot_comparison(ds)
    curves, vs_rank, align = fig.axes[:3]
    lines = {line.get_label(): line for line in curves.get_lines()}
    assert set(lines) == {"backprop, reads W", "FA", "LDFA adaptive (normative) r=1, reads W",
                          "LDFA adaptive (normative) r=4, reads W", "LDFA fixed r=1", "LDFA fixed r=4"}
    np.testing.assert_allclose(lines["LDFA fixed r=4"].get_ydata(),
                               ds.test_accuracy.sel(rule="ldfa_fixed", rank=4).mean("seed") * 100)
    # accuracy against rank: LDFA as points over r, full-feedback rules as horizontal lines
    by_label = {line.get_label(): line for line in vs_rank.get_lines()}
    np.testing.assert_allclose(by_label["backprop, reads W"].get_ydata(),
                               float(ds.test_accuracy.sel(rule="bp", rank=-1).isel(epoch=-1).mean() * 100))
    ldfa = [c for c in vs_rank.containers if c.get_label() == "LDFA adaptive (normative), reads W"][0]
    np.testing.assert_allclose(np.asarray(ldfa.lines[0].get_xdata(), float), [1, 4])
    np.testing.assert_allclose(np.asarray(ldfa.lines[0].get_ydata(), float),
                               ds.test_accuracy.sel(rule="ldfa_normative", rank=[1, 4]).isel(epoch=-1).mean("seed") * 100)
    assert [t.get_text() for t in align.get_xticklabels()] == LAYERS


# ----------------------------------------------------------------------------------- the real engine
# All 1,347 training digits: with 256 (4 steps) FA and fixed LDFA stayed at chance level, now flagged "at_chance".
REAL = dict(rules=["bp", "fa", "ldfa"], ranks=[2], seeds=[0], epochs=1, dataset="digits",
            feedback_learning=["normative", "fixed"], device="cpu", progress=False, figure=False)


def test_real_engine_end_to_end_and_saved_models_reload(tmp_path):
    from bioplastic.data import load_dataset

    out = tmp_path / "out"
    ds = bioplastic.compare(out=out, **REAL)
    assert (ds.status.sel(rank=R.NO_RANK, rule=["bp", "fa"]).values == "ok").all()
    assert (ds.status.sel(rank=2, rule=["ldfa_normative", "ldfa_fixed"]).values == "ok").all()
    # backprop's update is the gradient; every rule's output layer gets its exact error
    np.testing.assert_allclose(ds.update_cosine.sel(rule="bp", rank=R.NO_RANK), 1.0, atol=1e-5)
    out_layer = str(ds.layer.values[-1])
    done = ds.status.values == "ok"
    np.testing.assert_allclose(ds.update_cosine.sel(layer=out_layer).values[done], 1.0, atol=1e-5)
    assert (ds.update_cosine.sel(rule="fa", rank=R.NO_RANK).values[..., :-1] < 0.999).all()
    assert not list((out / "checkpoints").glob("*/*.pt"))  # finished runs leave no checkpoint behind
    assert sorted(bioplastic.training.list_models(out)) == sorted(
        [("bp", -1, 0), ("fa", -1, 0), ("ldfa_normative", 2, 0), ("ldfa_fixed", 2, 0)])

    data = load_dataset("digits")
    torch.manual_seed(123)
    expected_draw = torch.rand(3)
    torch.manual_seed(123)
    bioplastic.training.load_model(out, "fa")
    assert torch.equal(torch.rand(3), expected_draw)  # loading leaves the global RNG alone
    for rule, rank, kw in [("bp", None, {}), ("ldfa", 2, {}), ("ldfa", 2, {"feedback_learning": "fixed"})]:
        model = bioplastic.training.load_model(out, rule, rank, 0, **kw)
        label = model.bioplastic_run["label"]
        assert label == ("bp" if rule == "bp" else f"ldfa_{kw.get('feedback_learning', 'normative')}")
        with torch.no_grad():
            correct = int((model(data.transform(data.x_test)).argmax(1) == data.y_test).sum())
        stored = ds.test_accuracy.sel(rule=label, rank=R.NO_RANK if rank is None else rank, seed=0)
        # the trainer reports the fraction in float32: compare counts of correct test digits
        assert correct == round(float(stored.isel(epoch=-1)) * len(data.y_test))

    with pytest.raises(FileNotFoundError, match="saved runs: .*bp-s0"):
        bioplastic.training.load_model(out, "dfa")
    with pytest.raises(FileNotFoundError, match="ldfa_normative-r7-s0"):
        bioplastic.training.load_model(out, "ldfa", rank=7)
    record = torch.load(out / "models" / "bp-s0.pt", weights_only=True)
    record["state_dict"].pop(next(iter(record["state_dict"])))  # e.g. saved by another version
    torch.save(record, out / "models" / "bp-s0.pt")
    with pytest.raises(ValueError, match="bp-s0.pt does not fit"):
        bioplastic.training.load_model(out, "bp")
    (out / "models" / "fa-s0.pt").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="fa-s0.pt"):
        bioplastic.training.load_model(out, "fa")


@pytest.mark.slow
def test_real_engine_interrupted_mid_run_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    """Ctrl-C in the middle of a run (after epoch 1 of the 2nd run): the next call skips the finished run,
    continues the interrupted one from the trainer's checkpoint, and the result equals an uninterrupted
    comparison's (except wall_time)."""
    real = compare_mod._trainer()
    kw = {**REAL, "rules": ["bp", "ldfa"], "feedback_learning": ["normative"], "epochs": 2}
    reference = bioplastic.compare(out=tmp_path / "ref", **kw)

    calls = []

    class Interrupting:
        TrainConfig, RunResult = real.TrainConfig, real.RunResult

        @staticmethod
        def train(config, dataset, **options):
            calls.append((config.rule, options["checkpoint_dir"]))

            def stop(epoch, record):
                if len(calls) == 2 and epoch == 1:
                    raise KeyboardInterrupt

            return real.train(config, dataset, callbacks=[stop], **options)

    monkeypatch.setattr(compare_mod, "_trainer", lambda: Interrupting)
    with pytest.raises(KeyboardInterrupt):
        bioplastic.compare(out=tmp_path / "out", **kw)
    partial = bioplastic.training.load_results(tmp_path / "out")
    assert list(partial.status.sel(seed=0).values[partial.status.sel(seed=0).values != "not_applicable"]) == [
        "ok", "pending"]
    assert (tmp_path / "out" / "checkpoints" / "ldfa_normative-r2-s0" / "checkpoint.pt").exists()

    monkeypatch.setattr(compare_mod, "_trainer", lambda: real)
    resumed = bioplastic.compare(out=tmp_path / "out", **kw)
    assert_results_equal(resumed, reference)
    # the weights too, not only the curves
    a = bioplastic.training.load_model(tmp_path / "out", "ldfa", 2).state_dict()
    b = bioplastic.training.load_model(tmp_path / "ref", "ldfa", 2).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a if isinstance(a[k], torch.Tensor))


def test_real_engine_divergence_is_recorded(tmp_path):
    """SGD at lr 1e30 overflows in the first epoch: every run stops with status "diverged", the file is
    written, and nothing raises."""
    ds = bioplastic.compare(rules=["bp", "fa"], seeds=[0], epochs=2, dataset="digits", max_train=64, lr=1e30,
                            optimizer="sgd", device="cpu", out=tmp_path / "out", progress=False, figure=False)
    assert (ds.status.values == "diverged").all() and (ds.epochs_completed.values == 0).all()
    assert np.isnan(ds.test_accuracy).all()
    xr.testing.assert_identical(ds, bioplastic.training.load_results(tmp_path / "out"))
    assert "diverged" in R.format_table(ds)


# ----------------------------------------------------------------------------------- user frictions
def test_list_models_sorts_ranks_numerically(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    for name in ("bp-s0.pt", "ldfa_normative-r10-s0.pt", "ldfa_normative-r3-s0.pt", "ldfa_normative-r1-s0.pt",
                 "ldfa_normative-f0.5-s0.pt", "ldfa_normative-f0.25-s0.pt", "ldfa_normative-r1-s10.pt",
                 "ldfa_normative-r1-s2.pt"):
        (models / name).write_bytes(b"")
    assert bioplastic.training.list_models(tmp_path) == [
        ("bp", R.NO_RANK, 0), ("ldfa_normative", 1, 0), ("ldfa_normative", 1, 2), ("ldfa_normative", 1, 10),
        ("ldfa_normative", 3, 0), ("ldfa_normative", 10, 0),
        ("ldfa_normative", R.fraction_rank(0.25), 0), ("ldfa_normative", R.fraction_rank(0.5), 0)]


def test_cifar10_path_from_shared_data_variable_is_used_and_recorded(engine, digits_spec, tmp_path, monkeypatch):
    import bioplastic.data as data_mod

    monkeypatch.delenv("BIOPLASTIC_SHARED_DATA", raising=False)
    with pytest.raises(ValueError, match="data_path.*BIOPLASTIC_SHARED_DATA"):
        bioplastic.compare(rules=["bp"], dataset="cifar10", out=tmp_path / "o", progress=False)
    monkeypatch.setenv("BIOPLASTIC_SHARED_DATA", str(tmp_path / "shared"))
    seen = {}
    digits = data_mod.load_dataset("digits")

    def fake_load(name, path=None, **kw):
        seen.update(name=name, path=path)
        return digits

    monkeypatch.setattr(data_mod, "load_dataset", fake_load)
    ds = small(digits_spec, tmp_path / "o", rules=["bp"], seeds=[0], dataset="cifar10")
    assert seen == {"name": "cifar10", "path": tmp_path / "shared" / "cifar10"}
    assert json.loads(ds.attrs["config"])["data_path"] == str(tmp_path / "shared" / "cifar10")
    # the same comparison with the path given explicitly is the same configuration: it resumes
    engine.calls.clear()
    monkeypatch.delenv("BIOPLASTIC_SHARED_DATA")
    small(digits_spec, tmp_path / "o", rules=["bp"], seeds=[0], dataset="cifar10",
          data_path=str(tmp_path / "shared" / "cifar10"))
    assert engine.calls == []


def test_rule_option_of_one_feedback_mode_names_the_run_and_suggests_restricting(engine, digits_spec):
    from bioplastic import rules

    try:
        rules.make("ldfa", rank=2, feedback_learning="fixed", reinit_every=100)
    except (TypeError, ValueError):
        pass
    else:
        pytest.skip("the rule core accepts reinit_every for fixed feedback")
    with pytest.raises(ValueError, match=r"ldfa_fixed-r1-s0.*'fixed'.*--feedback-learning") as info:
        small(digits_spec, None, rule_options={"reinit_every": 100})
    assert "reinit_every" in str(info.value)
    assert engine.calls == []
    # the documented example: the option with its feedback mode alone
    small(digits_spec, None, rule_options={"reinit_every": 100}, feedback_learning=["normative"])
    assert engine.calls and all(c.rule_options["reinit_every"] == 100 for c in engine.calls if c.rule == "ldfa")


def test_refusal_to_drop_runs_comes_before_resuming_and_log_is_plural_aware(engine, digits_spec, tmp_path, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="bioplastic.training.comparison")
    small(digits_spec, tmp_path / "out", rules=["bp", "fa"], seeds=[0], epochs=1)
    assert "bp-s0: ok after 1 epoch," in caplog.text and "1 epochs" not in caplog.text
    caplog.clear()
    with pytest.raises(ValueError, match=r"results.nc holds finished runs .*fa-s0"):
        small(digits_spec, tmp_path / "out", rules=["bp"], seeds=[0], epochs=1)
    assert "resuming" not in caplog.text
    small(digits_spec, tmp_path / "out", rules=["bp", "fa"], seeds=[0], epochs=1)
    assert "2 of 2 runs already finished" in caplog.text


def test_figure_labels_and_integer_epoch_ticks(engine, digits_spec):
    from bioplastic.training import plot_comparison

    for epochs in (1, 3):
        fig = plot_comparison(small(digits_spec, None, epochs=epochs))
        curves, _, align = fig.axes[:3]
        ticks = [t for t in curves.get_xticks() if curves.get_xlim()[0] <= t <= curves.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
        assert align.get_ylabel() == "cosine(update, backprop gradient)"
        assert not align.texts  # no caption inside the panel, over the markers


def test_direct_rule_on_a_conv_net_with_the_head_on_backprop_trains_and_reloads(tmp_path):
    # The spec keeps the classifier on backprop (as the paper did for LDFA); DFA still needs the output layer
    # as the source of e, and its conv layers' D are sized from an example input, also when reloading.
    from bioplastic.data import load_dataset

    # widths [4, 8], 1 epoch at lr 1e-3 left DFA at chance level (8.9 %, now flagged "at_chance"); this learns
    spec = {"name": "tiny_cnn", "architecture": "vgg", "in_channels": 1, "widths": [8, 16], "convs_per_block": 1,
            "rule": {"exclude": ["head"]}}
    out = tmp_path / "out"
    ds = bioplastic.compare(rules=["dfa", "ldfa"], ranks=[2], feedback_learning=["normative"], seeds=[0],
                            epochs=2, lr=1e-2, dataset="digits", model=spec, out=out, progress=False)
    assert (ds.status.sel(rule="dfa", rank=R.NO_RANK).values == "ok").all()
    data = load_dataset("digits")
    for rule, rank, label in [("dfa", None, "dfa"), ("ldfa", 2, "ldfa_normative")]:
        model = bioplastic.training.load_model(out, rule, rank, 0)
        assert hasattr(model.get_submodule("head.out"), "feedback_names") == (rule == "dfa")
        with torch.no_grad():
            correct = int((model(data.transform(data.x_test)).argmax(1) == data.y_test).sum())
        stored = ds.test_accuracy.sel(rule=label, rank=R.NO_RANK if rank is None else rank, seed=0).isel(epoch=-1)
        assert correct == round(float(stored) * len(data.y_test))


def test_model_file_whose_configuration_cannot_be_rebuilt_is_named(tmp_path):
    out = tmp_path / "out"
    bioplastic.compare(rules=["bp"], seeds=[0], epochs=1, dataset="digits", out=out, progress=False)
    path = out / "models" / "bp-s0.pt"
    record = torch.load(path, weights_only=True)
    record["train_config"]["no_such_option"] = 1  # e.g. written by another version
    torch.save(record, path)
    with pytest.raises(ValueError, match="bp-s0.pt: cannot rebuild its conversion"):
        bioplastic.training.load_model(out, "bp")


def test_unwritable_out_is_one_line_error_before_training(tmp_path):
    from bioplastic.training import comparison as C

    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match="not writable"):
        C._check_writable(blocker / "sub")
