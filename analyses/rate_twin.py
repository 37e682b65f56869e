"""The rate network against its autograd twin (issue 13): same network, digits, order, rule and step sizes.

Runs :func:`bioplastic.rate.twin.compare_with_twin` one seed at a time (each seed's result saved as it finishes,
so a stopped run keeps what it measured; a rerun skips the seeds already saved), then writes the combined
``rate_twin.nc``, ``rate_twin.png`` (accuracy curves overlaid) and prints the table.

Criterion (fixed before the runs, docs/rate.md): the autograd twin minus the rate network, final test accuracy,
mean over seeds, within 1 percentage point in absolute value.

Usage::

    python analyses/rate_twin.py --out DIR [--seeds 0,1,2] [--epochs 3] [--bp-step-scales 1,4,16] [--twin-step-scales 1,4]
        [--rate-scale 4] [--twins-only]
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch
import xarray as xr

from bioplastic import io
from bioplastic.architectures.spec import load_spec
from bioplastic.rate.twin import compare_with_twin, plot_twin, twin_table

log = logging.getLogger("rate_twin")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--spec", default="rate_mnist", help="rate-network spec (models/rate_*.toml)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=None, help="default: the spec's recipe")
    parser.add_argument("--bp-step-scales", default="1")
    parser.add_argument("--twin-step-scales", default="1")
    parser.add_argument("--n-train", type=int, default=None, help="a fixed random subset (default: all 5,000)")
    parser.add_argument("--n-test", type=int, default=None, help="the first test digits (default: all 10,000)")
    parser.add_argument("--twins-only", action="store_true", help="skip the rate network (gap NaN)")
    parser.add_argument("--rate-scale", type=float, default=1.0,
                        help="multiply the spec's forward and feedback learning rates (the twin's steps follow)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    scales = [float(f) for f in args.bp_step_scales.split(",")]
    spec = load_spec(args.spec)
    if args.rate_scale != 1.0:
        spec["learning_rate"] = spec["learning_rate"] * args.rate_scale
        spec["feedback"] = {**spec["feedback"], "learning_rate": spec["feedback"]["learning_rate"] * args.rate_scale}
        spec["name"] = f"{spec['name']}_rates_x{args.rate_scale:g}"
    parts = []
    for seed in (int(s) for s in args.seeds.split(",")):
        path = args.out / f"seed{seed}.nc"
        if path.exists():
            parts.append(io.load(path))
            continue
        ds = compare_with_twin(spec, seeds=[seed], epochs=args.epochs, n_train=args.n_train,
                               n_test=args.n_test, bp_step_scales=scales,
                               twin_step_scales=[float(f) for f in args.twin_step_scales.split(",")],
                               with_rate=not args.twins_only)
        io.save(ds, path)
        parts.append(ds)
        log.info("seed %d: gap %.2f pp (twin minus rate)", seed, float(ds["gap"].sel(seed=seed)))
    ds = xr.concat(parts, "seed", data_vars="minimal", coords="minimal", compat="override", combine_attrs="override")
    io.save(ds, args.out / "rate_twin.nc")
    plot_twin(ds, args.out / "rate_twin.png")
    for row in twin_table(ds):
        print(f"{row['condition']:55s} {row['final test accuracy (%)']:8.2f} +- {row['s.d.']:.2f} (n={row['n']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
