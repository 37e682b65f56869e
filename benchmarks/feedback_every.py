"""Accuracy and step time of normative LDFA with ``feedback_every`` = 1, 4, 16 (issue 14).

Trains ``models/mlp_digits.toml`` (scikit-learn's 8x8 digits, 64-128-128-10 MLP, its own recipe: 20 epochs,
Adam) with ``ldfa`` ``normative`` rank 10 for each ``feedback_every`` and 3 seeds through
:func:`bioplastic.compare`, single-threaded, and writes ``feedback_every.nc`` (the final test accuracy per
``feedback_every`` and seed, the final feedback angle (``P Q`` vs ``W``, mean over layers) and the runs'
wall time).

Usage::

    nohup nice -n 5 python benchmarks/feedback_every.py --out results/feedback_every > fe.log 2>&1 &
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import xarray as xr

import bioplastic


def main(argv: list[str] | None = None) -> xr.Dataset:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--every", default="1,4,16")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--rank", type=int, default=10)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    everies = [int(k) for k in args.every.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    acc = np.full((len(everies), len(seeds)), np.nan)
    angle = np.full_like(acc, np.nan)
    wall = np.full(len(everies), np.nan)
    for i, k in enumerate(everies):
        t0 = time.perf_counter()
        ds = bioplastic.compare(rules=["ldfa"], ranks=[args.rank], seeds=seeds, dataset="digits", model="mlp_digits",
                                feedback_learning=["normative"], rule_options={"feedback_every": k},
                                progress=False, figure=False, keep_models=False)
        wall[i] = time.perf_counter() - t0
        final = ds["test_accuracy"].isel(epoch=-1).squeeze(drop=True)
        acc[i] = final.values.reshape(-1)[: len(seeds)]
        angle[i] = ds["feedback_angle"].isel(epoch=-1).mean("layer").values.reshape(-1)[: len(seeds)]
        print(f"feedback_every={k}: final test accuracy {acc[i]} (mean {acc[i].mean():.4f}), feedback angle "
              f"{angle[i].mean():.1f} deg, {wall[i]:.0f} s",
              flush=True)  # noqa: T201
    out = xr.Dataset({"test_accuracy": (("feedback_every", "seed"), acc),
                      "feedback_angle": (("feedback_every", "seed"), angle, {"units": "degree",
                                         "long_name": "final angle between P Q and W, mean over layers"}),
                      "wall_time": ("feedback_every", wall, {"units": "s"})},
                     coords={"feedback_every": everies, "seed": seeds},
                     attrs={"model": "mlp_digits", "rule": "ldfa normative", "rank": args.rank})
    out = bioplastic.io.stamp(out, vars(args) | {"out": str(args.out)})
    bioplastic.io.save(out, args.out / "feedback_every.nc")
    return out


if __name__ == "__main__":
    main()
