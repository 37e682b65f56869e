"""``bioplastic reproduce``'s compute_to_target on planted curves: FLOPs, CPU and wall seconds to 90 % of BP's
final accuracy, read at the same fractional epoch; a result saved before CPU time was recorded still tables."""
from __future__ import annotations

import json
import types

import numpy as np
import pytest

from bioplastic import io
from bioplastic.architectures import load_spec
from bioplastic.reproduction import experiments as E
from bioplastic.training.results import NO_RANK, fraction_rank, merge_runs, run_to_dataset

# BP: 0.6, 0.9, 0.9 -> target 0.9 x 0.9 = 0.81 at epoch 1 + 0.21 / 0.3 = 1.7;
# LDFA: 0.5, 0.7, 0.9 -> 2 + 0.11 / 0.2 = 2.55
BP_CURVE, LDFA_CURVE = [0.6, 0.9, 0.9], [0.5, 0.7, 0.9]
EP_BP, EP_LDFA = 1.7, 2.55
SEEDS = [0, 1, 2]


def _run(accuracy, seed, wall, cpu, rule, feedback_learning, rank, options):
    result = types.SimpleNamespace(
        status="ok", epochs_completed=3, train_loss=np.ones(3), test_loss=np.ones(3),
        test_accuracy=np.array(accuracy), layers=[], alignment={}, seconds=99.0,
        config={"rule": rule, "rule_options": options}, train_wall_time=np.array(wall),
        train_cpu_time=np.array(cpu))
    return run_to_dataset(result, rule=rule, feedback_learning=feedback_learning, rank=rank, seed=seed, epochs=3)


def _curves(model, ldfa_rank, ldfa_options):
    """BP and adaptive LDFA curves; seed k's epoch times are (k + 1) x the base times (BP wall 2, CPU 1 s per
    epoch; LDFA wall 5, CPU 3, 2, 4 s)."""
    runs = []
    for k in SEEDS:
        f = k + 1.0
        runs.append(_run(BP_CURVE, k, [2 * f] * 3, [f] * 3, "bp", None, NO_RANK, {}))
        runs.append(_run(LDFA_CURVE, k, [5 * f] * 3, [3 * f, 2 * f, 4 * f], "ldfa", "normative", ldfa_rank,
                         {"feedback_learning": "normative", **ldfa_options}))
    return merge_runs(runs, rules=[("bp", None), ("ldfa", "normative")], ranks=[NO_RANK, ldfa_rank], seeds=SEEDS,
                      epochs=3, config={"model": load_spec(model), "n_train": 640, "train": {"batch_size": 16}})


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """The compute_to_target result of the cpu budget computed from planted MNIST and CNN curves."""
    root = tmp_path_factory.mktemp("repro") / "experiments" / "cpu"
    for name, model, rank, options in (("mnist_mlp", "mlp_mnist", 10, {"rank": 10}),
                                       ("cnn_cifar", "cnn_small", fraction_rank(0.25), {"rank_fraction": 0.25})):
        ds = _curves(model, rank, options)
        ds.attrs["reproduce_settings"] = json.dumps(E.EXPERIMENTS[name].settings_for("cpu", SEEDS), sort_keys=True)
        io.save(ds, root / name / "result.nc")
    ctx = E.Context(out=root / "compute_to_target", budget="cpu", cifar10=root)  # cifar10: only checked to exist
    settings = E.EXPERIMENTS["compute_to_target"].settings_for("cpu", SEEDS)
    return E.EXPERIMENTS["compute_to_target"].run(ctx, settings)


def test_times_to_target_follow_the_closed_form(planted):
    f = np.array([1.0, 2.0, 3.0])  # seed scale
    for model in ("mlp_mnist", "cnn_small"):
        d = planted.sel(model=model)
        np.testing.assert_allclose(d["epochs_to_target"].sel(rule="bp"), EP_BP)
        np.testing.assert_allclose(d["epochs_to_target"].sel(rule="ldfa"), EP_LDFA)
        np.testing.assert_allclose(d["cpu_time_to_target"].sel(rule="bp"), EP_BP * f)
        np.testing.assert_allclose(d["wall_time_to_target"].sel(rule="bp"), 2 * EP_BP * f)
        np.testing.assert_allclose(d["cpu_time_to_target"].sel(rule="ldfa"), (3 + 2 + 0.55 * 4) * f)
        np.testing.assert_allclose(d["wall_time_to_target"].sel(rule="ldfa"), 5 * EP_LDFA * f)
        # FLOPs at the same fractional epoch: 640 / 16 = 40 steps per epoch
        assert int(d["steps_per_epoch"]) == 40
        np.testing.assert_allclose(d["flops_to_target"].sel(rule="ldfa"),
                                   EP_LDFA * 40 * float(d["flops_per_step"].sel(rule="ldfa")))
        assert d["cpu_time_to_target"].attrs["units"] == "s"
    assert str(planted["ldfa_rank"].sel(model="cnn_small").values) == "0.25w"


def test_table_gives_cpu_and_wall_seconds_with_spread(planted):
    rows = {r["condition"]: r for r in E._compute_table(planted)}
    row = rows["mlp_mnist ldfa r=10"]
    cpu = (3 + 2 + 0.55 * 4) * np.array([1.0, 2.0, 3.0])
    assert row["CPU s to 90 %"] == pytest.approx(cpu.mean())
    assert row["CPU s to 90 % s.d."] == pytest.approx(cpu.std(ddof=1))
    assert row["wall s to 90 %"] == pytest.approx(5 * EP_LDFA * 2.0)
    assert row["n"] == 3 and row["n (times)"] == 3
    assert "cnn_small ldfa r=0.25w" in rows


def test_a_result_saved_before_cpu_time_still_tables(planted):
    old = planted.drop_vars(["cpu_time_to_target"]).rename(wall_time_to_target="wall_to_target")
    rows = E._compute_table(old)
    assert len(rows) == 4
    assert all(np.isnan(r["CPU s to 90 %"]) and np.isnan(r["wall s to 90 %"]) for r in rows)
    assert all(r["n (times)"] == 0 and r["n"] == 3 for r in rows)
    assert rows[0]["FLOPs to 90 %"] == pytest.approx(float(planted["flops_to_target"].isel(model=0, rule=0).mean()))


def test_figure_against_flops_and_cpu_time(planted, tmp_path):
    np.testing.assert_allclose(planted["train_cpu_time"].sel(model="mlp_mnist", rule="ldfa", seed=0), [3.0, 2.0, 4.0])
    E._plot_compute(planted, tmp_path / "compute.png")
    assert (tmp_path / "compute.png").stat().st_size > 0
    # curves saved before CPU time was recorded: the FLOP panels alone
    E._plot_compute(planted.drop_vars("train_cpu_time"), tmp_path / "old.png")
    assert (tmp_path / "old.png").stat().st_size > 0
