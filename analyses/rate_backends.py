"""Run one small rate network with a feedback population on the torch and the brian2 backend and compare.

Usage::

    python analyses/rate_backends.py --out DIR [--spec rate_small] [--presentations 4] [--seed 0]
                                     [--codegen-target numpy|cython]

Writes ``DIR/rate_backends.nc``: the rates of every population (``rate``: backend x time x neuron) and the
change of every plastic weight since the start (``weight_change``: backend x time x synapse) of both
backends on the same time grid, and ``DIR/rate_backends.png``: the rates of the hidden, output, error and
feedback populations (torch solid, brian2 dashed), weight-change traces and the absolute difference of the
two backends. The same network (same seed, same initial weights), stimuli and targets are used by both;
the model is the LDFA rate network of :mod:`bioplastic.rate` (Hanut & Kadmon 2025, arXiv:2502.20580).
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import xarray as xr  # noqa: E402

from bioplastic.architectures.spec import load_spec  # noqa: E402
from bioplastic.io import atomic_write, save, stamp  # noqa: E402
from bioplastic.rate import RateNetwork  # noqa: E402

log = logging.getLogger("rate_backends")


def run(spec: str = "rate_small", presentations: int = 4, seed: int = 0, codegen_target: str = "numpy",
        record_every: int = 1) -> xr.Dataset:
    """Simulate the spec on both backends; return the combined Dataset (dim ``backend``)."""
    config = load_spec(spec)
    training = config.get("training", {})
    presentation = float(training.get("presentation", 0.05))
    dt = float(training.get("dt", 0.0005))
    net = RateNetwork.from_spec(config, dtype="float64")
    gen = torch.Generator().manual_seed(seed)
    stimuli = torch.rand(presentations, net.input.size, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, net.output.size, (presentations,), generator=gen)
    recs, timings, final = {}, {}, {}
    for backend in ("torch", "brian2"):
        copy = net.copy()
        start = time.perf_counter()
        recs[backend] = copy.run(stimuli, labels, backend=backend, presentation=presentation, dt=dt,
                                 record=("rate", "apical"), record_weights=True, record_every=record_every,
                                 codegen_target=codegen_target)
        timings[backend] = time.perf_counter() - start
        final[backend] = copy.weights
        log.info("%s backend: %.2f s wall for %.3f s simulated", backend, timings[backend],
                 presentations * presentation)
    ds = xr.concat([recs["torch"], recs["brian2"]], dim=xr.DataArray(["torch", "brian2"], dims="backend",
                                                                      name="backend"),
                   coords="minimal", compat="override", combine_attrs="drop")
    diff_rate = float(np.nanmax(np.abs(ds.rate.sel(backend="torch") - ds.rate.sel(backend="brian2"))))
    diff_w = float(np.abs(ds.weight_change.sel(backend="torch") - ds.weight_change.sel(backend="brian2")).max())
    diff_final = max(float((final["torch"][k] - final["brian2"][k]).abs().max()) for k in final["torch"])
    ds["stimulus_index"] = recs["torch"].stimulus_index  # identical on both backends
    ds["stimulus"] = (("presentation", "input_neuron"), stimuli.numpy())
    ds["label"] = ("presentation", labels.numpy())
    ds.attrs.update({
        "max_abs_rate_difference": diff_rate, "max_abs_weight_change_difference": diff_w,
        "max_abs_final_weight_difference": diff_final,
        "wall_seconds_torch": timings["torch"], "wall_seconds_brian2": timings["brian2"],
        "dt": dt, "presentation": presentation, "codegen_target": codegen_target, "spec": spec,
        "model": "LDFA rate network (Hanut & Kadmon 2025, arXiv:2502.20580)",
    })
    log.info("max |torch - brian2|: rates %.3g, weight changes %.3g, final weights %.3g", diff_rate, diff_w,
             diff_final)
    return stamp(ds, {"spec": config, "presentations": presentations, "seed": seed,
                      "codegen_target": codegen_target, "record_every": record_every})


def plot(ds: xr.Dataset, path: Path) -> Path:
    """Rates per population, weight-change traces and the backend difference; PNG at ``path``."""
    pops = list(dict.fromkeys(ds.population.values.tolist()))
    fig, axes = plt.subplots(2, 3, figsize=(14, 7), constrained_layout=True)
    t = ds.time.values
    shown = [pops[0], pops[pops.index("error") - 1], "error", [p for p in pops if p.startswith("feedback")][-1]]
    for ax, pop in zip(axes.flat[:4], shown):
        sel = ds.rate.where(ds.population == pop, drop=True)
        for k in range(min(sel.sizes["neuron"], 4)):
            ax.plot(t, sel.sel(backend="torch").isel(neuron=k), color=f"C{k}", lw=1.5)
            ax.plot(t, sel.sel(backend="brian2").isel(neuron=k), color="k", lw=0.8, ls="--")
        ax.set_title(f"{pop} rates (torch solid, brian2 dashed)")
        ax.set_xlabel("time (s)")
        ax.set_ylabel("rate (dimensionless)")
    ax = axes.flat[4]
    for i, proj in enumerate(dict.fromkeys(ds.projection.values.tolist())):
        idx = np.flatnonzero(ds.projection.values == proj)[:2]
        for j in idx:
            ax.plot(t, ds.weight_change.sel(backend="torch").isel(synapse=j), color=f"C{i}", lw=1.5,
                    label=proj if j == idx[0] else None)
            ax.plot(t, ds.weight_change.sel(backend="brian2").isel(synapse=j), color="k", lw=0.8, ls="--")
    ax.legend(fontsize=7, ncol=2)
    ax.set_title("weight change since start (2 synapses per projection)")
    ax.set_xlabel("time (s)")
    ax = axes.flat[5]
    dr = np.abs(ds.rate.sel(backend="torch") - ds.rate.sel(backend="brian2")).max("neuron")
    dw = np.abs(ds.weight_change.sel(backend="torch") - ds.weight_change.sel(backend="brian2")).max("synapse")
    ax.semilogy(t, np.maximum(dr, 1e-18), label="rates")
    ax.semilogy(t, np.maximum(dw, 1e-18), label="weight changes")
    ax.set_title("max |torch - brian2|")
    ax.set_xlabel("time (s)")
    ax.legend()
    fig.suptitle(f"rate network {ds.attrs.get('spec', '')}: torch vs brian2 "
                 f"({ds.attrs.get('codegen_target', '')} target), dt = {ds.attrs['dt'] * 1e3:g} ms")
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110))
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--spec", default="rate_small", help="rate-network spec (models/rate_*.toml)")
    parser.add_argument("--presentations", type=int, default=4, help="stimuli presented one after another")
    parser.add_argument("--seed", type=int, default=0, help="seed of the stimuli and labels")
    parser.add_argument("--codegen-target", default="numpy", choices=("numpy", "cython"))
    parser.add_argument("--record-every", type=int, default=1, help="record every N steps")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    ds = run(args.spec, args.presentations, args.seed, args.codegen_target, args.record_every)
    nc = save(ds, args.out / "rate_backends.nc")
    png = plot(ds, args.out / "rate_backends.png")
    log.info("wrote %s and %s", nc, png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
