"""``benchmarks/step_time.py``: the ratios, the pooling of rounds and the per-step FLOPs of ``feedback_every``
(the timing itself is not tested: speed is measured in benchmarks, never asserted)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import xarray as xr

import bioplastic
from bioplastic.training.flops import count_step_flops

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "step_time.py"


@pytest.fixture(scope="module")
def step_time():
    spec = importlib.util.spec_from_file_location("benchmarks_step_time", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["benchmarks_step_time"] = module
    spec.loader.exec_module(module)
    return module


def planted(cpu: np.ndarray, flops: list[float]) -> xr.Dataset:
    """A step_time Dataset of one model with the given (variant, repeat) CPU times."""
    variants = ["plain", "bp", "ldfa_local"][: cpu.shape[0]]
    t = cpu[None]
    return xr.Dataset(
        {"wall_time": (("model", "variant", "repeat"), 2 * t), "cpu_time": (("model", "variant", "repeat"), t),
         "cpu_time_fwd_bwd": (("model", "variant", "repeat"), 0.5 * t),
         "flops": (("model", "variant"), np.array([flops])), "peak_memory": (("model", "variant"), np.ones((1, 3)))},
        coords={"model": ["mlp"], "variant": variants, "repeat": np.arange(cpu.shape[1]), "batch": ("model", [256]),
                "rank": ("model", [10])})


def test_ratios_are_medians_over_repeats_of_the_time_over_plain_median(step_time):
    cpu = np.array([[1.0, 2.0, 3.0], [1.0, 3.0, 2.5], [0.5, 1.0, 4.0]])  # plain median 2
    ds = step_time.with_ratios(planted(cpu, [10.0, 10.0, 7.0]))
    np.testing.assert_allclose(ds.cpu_ratio.sel(model="mlp").values, [1.0, 2.5 / 2, 1.0 / 2])
    np.testing.assert_allclose(ds.cpu_ratio_min.sel(model="mlp").values, [0.5, 0.5, 0.25])
    np.testing.assert_allclose(ds.cpu_ratio_max.sel(model="mlp").values, [1.5, 1.5, 2.0])
    # every time scaled alike (wall = 2 cpu, fwd+bwd = cpu / 2): the same ratios
    np.testing.assert_allclose(ds.wall_ratio.values, ds.cpu_ratio.values)
    np.testing.assert_allclose(ds.cpu_fwd_bwd_ratio.values, ds.cpu_ratio.values)
    np.testing.assert_allclose(ds.flop_ratio.sel(model="mlp").values, [1.0, 1.0, 0.7])
    text = step_time.table(ds)
    assert "| ldfa_local | 0.500 [0.38-1.25] | 0.500 | 0.500 | 0.700 | 1 |" in text


def test_pooled_files_give_the_ratios_of_all_repeats_together(step_time, tmp_path):
    a = np.array([[1.0, 2.0], [1.0, 3.0], [0.5, 1.0]])
    b = np.array([[3.0], [2.5], [4.0]])
    for name, cpu in (("a", a), ("b", b)):
        bioplastic.io.save(step_time.with_ratios(planted(cpu, [10.0, 10.0, 7.0])), tmp_path / f"{name}.nc")
    pooled = step_time.pooled([tmp_path / "a.nc", tmp_path / "b.nc"])
    whole = step_time.with_ratios(planted(np.concatenate([a, b], axis=1), [10.0, 10.0, 7.0]))
    assert pooled.sizes["repeat"] == 3
    for var in ("cpu_ratio", "cpu_ratio_q25", "wall_ratio", "cpu_fwd_bwd_ratio", "flop_ratio"):
        np.testing.assert_allclose(pooled[var].values, whole[var].values)


def test_mean_step_flops_averages_one_feedback_every_cycle(step_time):
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4))
    x, y = torch.randn(8, 12), torch.randint(0, 4, (8,))

    def net(every):
        rule = bioplastic.rules.make("ldfa", rank=2, feedback_learning="normative", feedback_every=every)
        return bioplastic.convert(plain, rule, seed=0)

    with_fb = count_step_flops(net(1), x, y)["total"]  # every step computes the P, Q gradients
    skipping = net(3)
    for layer in (m for _, m in bioplastic.nn.feedback_layers(skipping)):
        layer.steps = 1  # a step that skips them
    without_fb = count_step_flops(skipping, x, y)["total"]
    assert without_fb < with_fb
    fresh = net(3)
    assert step_time.mean_step_flops(fresh, x, y) == pytest.approx((with_fb + 2 * without_fb) / 3)
    assert all(layer.steps == 0 for _, layer in bioplastic.nn.feedback_layers(fresh))  # counters restored
    assert step_time.mean_step_flops(net(1), x, y) == with_fb


def test_variant_names_build_the_rules_they_name(step_time):
    rule = step_time.make_rule("ldfa_normative_every4", 3)
    assert (rule.name, rule.feedback_learning, rule.rank, rule.feedback_every) == ("ldfa", "normative", 3, 4)
    assert step_time.make_rule("ldfa_local", 3).feedback_every == 1
    assert step_time.make_rule("plain", 3) is None
