"""Per-epoch training times (``train_wall_time``, ``train_cpu_time``): recorded by the loop without evaluation,
kept across a resume, carried into the results, NaN for old files; and the time to a target accuracy."""
from __future__ import annotations

import math
import time
import types

import numpy as np
import pytest
import xarray as xr

import bioplastic
from bioplastic import io
from bioplastic.data import load_dataset
from bioplastic.testing import assert_results_equal
from bioplastic.training import trainer as trainer_module
from bioplastic.training.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from bioplastic.training.flops import epochs_to_target, flops_to_target, time_to_target
from bioplastic.training.results import (EPOCH_TIMES, NO_RANK, WALL_CLOCK_VARIABLES, merge_runs, run_to_dataset,
                                        upgrade_results)
from bioplastic.training.trainer import TrainConfig, train


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def fast(**kw):
    base = dict(model="mlp_digits", epochs=2, batch_size=64, device="cpu", alignment=False, schedule="constant")
    return TrainConfig(**{**base, **kw})


class _Clock:
    """A process clock under test control: each reading advances it by 1 s (the training of an epoch reads it
    twice: 1 s), evaluation advances it by 100 s."""

    def __init__(self):
        self.now = 0.0

    def process_time(self):
        self.now += 1.0
        return self.now


def test_cpu_time_counts_the_training_steps_not_the_evaluation(monkeypatch, digits):
    clock = _Clock()
    real_evaluate = trainer_module.evaluate

    def evaluate(*args, **kwargs):
        clock.now += 100.0  # CPU time spent evaluating must not enter train_cpu_time
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "time", types.SimpleNamespace(perf_counter=time.perf_counter,
                                                                      process_time=clock.process_time))
    monkeypatch.setattr(trainer_module, "evaluate", evaluate)
    result = train(fast(epochs=3), digits, progress=False)
    # start and end readings of each epoch are consecutive: exactly 1 s per epoch, the 100 s never counted
    np.testing.assert_array_equal(result.train_cpu_time, [1.0, 1.0, 1.0])
    # the wall time is the same measurement as epoch_seconds (training steps only)
    np.testing.assert_array_equal(result.train_wall_time, result.epoch_seconds)


def test_real_times_are_positive_and_bounded_by_the_call(digits):
    t0, c0 = time.perf_counter(), time.process_time()
    result = train(fast(epochs=2), digits, progress=False)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert (result.train_wall_time > 0).all() and (result.train_cpu_time > 0).all()
    assert result.train_wall_time.sum() <= wall and result.train_cpu_time.sum() <= cpu


class _Interrupt(Exception):
    pass


def _stop_after(k):
    def callback(epoch, record):
        if epoch == k:
            raise _Interrupt
    return callback


def test_times_of_restored_epochs_survive_a_resume(tmp_path, digits):
    cfg = fast(epochs=3)
    with pytest.raises(_Interrupt):
        train(cfg, digits, checkpoint_dir=tmp_path, progress=False, callbacks=[_stop_after(1)])
    saved = load_checkpoint(tmp_path / CHECKPOINT_NAME)["history"]
    resumed = train(cfg, digits, checkpoint_dir=tmp_path, progress=False)
    # epoch 1 ran in the first call: its times come from the checkpoint, unchanged
    assert resumed.train_wall_time[0] == saved["train_wall_time"][0]
    assert resumed.train_cpu_time[0] == saved["train_cpu_time"][0]
    assert np.isnan(resumed.epoch_seconds[0])  # epoch_seconds stays "this call only"
    assert np.isfinite(resumed.train_cpu_time).all() and np.isfinite(resumed.train_wall_time).all()
    # a finished run returns from its checkpoint with every epoch's times
    again = train(cfg, digits, checkpoint_dir=tmp_path, progress=False)
    np.testing.assert_array_equal(again.train_cpu_time, resumed.train_cpu_time)
    assert np.isnan(again.epoch_seconds).all()


def test_checkpoint_without_times_resumes_with_nan(tmp_path, digits):
    cfg = fast(epochs=2)
    with pytest.raises(_Interrupt):
        train(cfg, digits, checkpoint_dir=tmp_path, progress=False, callbacks=[_stop_after(1)])
    state = load_checkpoint(tmp_path / CHECKPOINT_NAME)
    for name in EPOCH_TIMES:  # as written before bioplastic recorded the times
        del state["history"][name]
    save_checkpoint(state, tmp_path / CHECKPOINT_NAME)
    resumed = train(cfg, digits, checkpoint_dir=tmp_path, progress=False)
    assert np.isnan(resumed.train_cpu_time[0]) and np.isfinite(resumed.train_cpu_time[1])
    assert np.isnan(resumed.train_wall_time[0]) and np.isfinite(resumed.train_wall_time[1])


def _fake_result(epochs, **times):
    return types.SimpleNamespace(
        status="ok", epochs_completed=epochs, train_loss=np.ones(epochs), test_loss=np.ones(epochs),
        test_accuracy=np.linspace(0.5, 0.9, epochs), layers=[], alignment={}, config={"lr": 0.1}, seconds=9.0,
        **times)


def test_results_carry_the_times_and_old_runs_read_nan():
    new = run_to_dataset(_fake_result(3, train_wall_time=[1.0, 2.0, 3.0], train_cpu_time=[0.5, 1.0, 1.5]),
                         rule="bp", feedback_learning=None, rank=NO_RANK, seed=0, epochs=3)
    old = run_to_dataset(_fake_result(3), rule="bp", feedback_learning=None, rank=NO_RANK, seed=1, epochs=3)
    np.testing.assert_array_equal(new["train_cpu_time"].values, [0.5, 1.0, 1.5])
    assert new["train_wall_time"].attrs["units"] == "s"
    assert np.isnan(old["train_cpu_time"].values).all()  # a RunResult without times (made before them)
    saved_old = old.drop_vars(list(EPOCH_TIMES))  # a run file saved before the times were recorded
    grid = merge_runs([new, saved_old], rules=[("bp", None)], ranks=[NO_RANK], seeds=[0, 1], epochs=3)
    assert grid["train_cpu_time"].dims == ("rule", "rank", "seed", "epoch")
    np.testing.assert_array_equal(grid["train_cpu_time"].sel(seed=0).values.ravel(), [0.5, 1.0, 1.5])
    assert np.isnan(grid["train_cpu_time"].sel(seed=1)).all()
    assert grid["train_cpu_time"].attrs["units"] == "s"
    assert set(EPOCH_TIMES) <= set(WALL_CLOCK_VARIABLES)
    # a whole results file written before: upgraded with NaN and a note, nothing else changed
    legacy = grid.drop_vars(list(EPOCH_TIMES))
    up = upgrade_results(legacy)
    for name in EPOCH_TIMES:
        assert up[name].dims == ("rule", "rank", "seed", "epoch") and np.isnan(up[name]).all()
        assert "before" in up[name].attrs["note"]
    xr.testing.assert_identical(up.drop_vars(list(EPOCH_TIMES)), legacy)


def test_compare_records_the_times_and_results_equal_ignores_them(tmp_path):
    kw = dict(rules=["bp"], dataset="digits", model="mlp_digits", epochs=2, seeds=[0], alignment=False,
              progress=False)
    a = bioplastic.compare(out=tmp_path / "a", **kw)
    b = bioplastic.compare(out=tmp_path / "b", **kw)
    for ds in (a, io.load(tmp_path / "a" / "results.nc")):
        for name in EPOCH_TIMES:
            assert np.isfinite(ds[name].sel(rule="bp", rank=NO_RANK)).all()
    assert not np.array_equal(a["train_wall_time"].values, b["train_wall_time"].values)  # machine time
    assert_results_equal(a, b, ignore_attrs=("created",))


# ------------------------------------------------------------------------------------------- time to target
def test_time_to_target_closed_form():
    t = [10.0, 20.0, 30.0]
    assert time_to_target(t, 0.0) == 0.0
    assert time_to_target(t, 0.25) == pytest.approx(2.5)  # a quarter of epoch 1
    assert time_to_target(t, 1.0) == 10.0
    assert time_to_target(t, 2.5) == pytest.approx(10.0 + 20.0 + 15.0)
    assert time_to_target(t, 3.0) == 60.0
    assert math.isnan(time_to_target(t, math.nan))
    assert math.isnan(time_to_target([10.0, math.nan, 30.0], 2.5))  # needs epoch 2's time
    assert time_to_target([10.0, math.nan, 30.0], 1.0) == 10.0  # does not
    with pytest.raises(ValueError, match="outside the 3 epochs"):
        time_to_target(t, 3.5)
    with pytest.raises(ValueError, match="outside"):
        time_to_target(t, -0.1)
    with pytest.raises(ValueError, match="1-D"):
        time_to_target([[1.0]], 0.5)


def test_time_to_target_is_read_like_the_flops():
    """With equal epoch times, time / (time of one epoch) = FLOPs / (FLOPs of one epoch) = epochs to target."""
    acc = [0.2, 0.5, 0.8, 0.9]
    ep = epochs_to_target(acc, 0.65)
    assert ep == pytest.approx(2.5)
    assert time_to_target([4.0] * 4, ep) == pytest.approx(4.0 * ep)


def test_flops_to_target_reads_times_at_the_epoch_to_target():
    """Planted curves: BP reaches 90 % of its final 0.9 (0.81) at epoch 1 + (0.81 - 0.6) / 0.3 = 1.7; LDFA at
    epoch 2 + (0.81 - 0.7) / 0.2 = 2.55. Times: BP 2 s/epoch wall, 1 s CPU; LDFA 3, 2, 4 s CPU."""
    from bioplastic.architectures import load_spec

    def run(accuracy, wall, cpu, **config):
        result = _fake_result(3, train_wall_time=wall, train_cpu_time=cpu)
        result.test_accuracy, result.config = np.array(accuracy), config
        return result

    bp = run_to_dataset(run([0.6, 0.9, 0.9], [2.0, 2.0, 2.0], [1.0, 1.0, 1.0], rule="bp"), rule="bp",
                        feedback_learning=None, rank=NO_RANK, seed=0, epochs=3)
    ldfa = run_to_dataset(run([0.5, 0.7, 0.9], [5.0, 5.0, 5.0], [3.0, 2.0, 4.0], rule="ldfa",
                              rule_options={"rank": 2, "feedback_learning": "normative"}),
                          rule="ldfa", feedback_learning="normative", rank=2, seed=0, epochs=3)
    grid = merge_runs([bp, ldfa], rules=[("bp", None), ("ldfa", "normative")], ranks=[NO_RANK, 2], seeds=[0],
                      epochs=3, config={"model": load_spec("mlp_digits"), "n_train": 640,
                                        "train": {"batch_size": 64}})
    res = flops_to_target(grid, target="bp", fraction=0.9)
    sel_bp, sel_ld = dict(rule="bp", rank=NO_RANK, seed=0), dict(rule="ldfa_normative", rank=2, seed=0)
    assert float(res["epochs_to_target"].sel(sel_bp)) == pytest.approx(1.7)
    assert float(res["epochs_to_target"].sel(sel_ld)) == pytest.approx(2.55)
    assert float(res["cpu_time_to_target"].sel(sel_bp)) == pytest.approx(1.7)
    assert float(res["wall_time_to_target"].sel(sel_bp)) == pytest.approx(3.4)
    assert float(res["cpu_time_to_target"].sel(sel_ld)) == pytest.approx(3.0 + 2.0 + 0.55 * 4.0)
    assert float(res["wall_time_to_target"].sel(sel_ld)) == pytest.approx(5.0 * 2.55)
    # the FLOPs are read at the same fractional epoch: 10 steps per epoch
    assert float(res["flops_to_target"].sel(sel_ld)) == pytest.approx(
        2.55 * 10 * float(res["flops_per_step"].sel(rule="ldfa_normative", rank=2)))
    # curves saved before the times were recorded: FLOPs as before, times NaN
    old = flops_to_target(grid.drop_vars(list(EPOCH_TIMES)), target="bp", fraction=0.9)
    xr.testing.assert_identical(old["flops_to_target"], res["flops_to_target"])
    assert np.isnan(old["cpu_time_to_target"]).all() and np.isnan(old["wall_time_to_target"]).all()
