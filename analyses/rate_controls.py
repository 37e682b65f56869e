"""Rate network on MNIST: controls that isolate the adaptivity of the feedback (issue 11, case 6).

The headline comparison of docs/rate.md (adaptive Oja feedback through 10 units vs fixed feedback through 1 unit)
changes the rank and the adaptivity at once; and with direct wiring at ``r = d`` fixed random feedback is plain DFA.
This script runs the controls with everything else equal (the ``rate_mnist`` spec: 784-256-10, relu, sigmoid
output, direct wiring, the same tau of the feedback units, learning rates and presentation protocol): each
feedback learning rule at each rank, ``r = d = 10`` and ``r < d``, from the same initial weights and digit
order per seed.

Protocol (fixed before the runs): one epoch of online learning on the embedded MNIST (5,000 training digits,
one digit per presentation, the spec's recipe with ``epochs = 1``), then the test accuracy (most active output
unit at the end of a presentation) on the first ``--n-test`` test digits (default 2,000). Seeds 0, 1, 2 set the
network (weights, feedback) and the digit order.

Usage::

    python analyses/rate_controls.py --out DIR [--ranks 10,2] [--rules oja,fixed] [--seeds 0,1,2] [--n-test 2000]

``--rules`` lists feedback-learning modes of ``bioplastic.rules`` (``fixed``, ``q_only``, ``local``, ``oja``).
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from bioplastic import io
from bioplastic.architectures.spec import load_spec
from bioplastic.data import load_dataset
from bioplastic.rate import RateNetwork, train_online

log = logging.getLogger("rate_controls")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--spec", default="rate_mnist")
    parser.add_argument("--rules", default="oja,fixed")
    parser.add_argument("--ranks", default="10,2")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--n-test", type=int, default=2000)
    parser.add_argument("--n-train", type=int, default=None,
                        help="a fixed random subset of the training digits (default: all 5,000)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    mnist = load_dataset("mnist")
    x_train = mnist.x_train.reshape(len(mnist.x_train), -1).float() / 255
    x_test = mnist.x_test.reshape(len(mnist.x_test), -1).float()[: args.n_test] / 255
    y_train, y_test = mnist.y_train, mnist.y_test[: args.n_test]
    if args.n_train is not None:  # the embedded training digits are sorted by class: a fixed random subset
        keep = torch.randperm(len(y_train), generator=torch.Generator().manual_seed(0))[: args.n_train]
        x_train, y_train = x_train[keep], y_train[keep]
    spec = load_spec(args.spec)
    recipe = {**spec["training"], "epochs": args.epochs}
    rules = args.rules.split(",")
    ranks = [int(r) for r in args.ranks.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    acc = np.full((len(rules), len(ranks), len(seeds)), np.nan)
    seconds = np.full_like(acc, np.nan)
    args.out.mkdir(parents=True, exist_ok=True)
    for k, seed in enumerate(seeds):
        for j, rank in enumerate(ranks):
            for i, rule in enumerate(rules):
                t0 = time.perf_counter()
                feedback = {**spec["feedback"], "rank": rank, "feedback_learning": rule}
                net = RateNetwork.from_spec(args.spec, feedback=feedback, seed=seed)
                curve = train_online(net, x_train, y_train, x_test, y_test, eval_every=len(y_train) * args.epochs,
                                     seed=seed, **recipe)
                acc[i, j, k] = float(curve.test_accuracy.isel(step=-1))
                seconds[i, j, k] = time.perf_counter() - t0
                log.info("seed %d rank %d %-13s test accuracy %.4f (%.0f s)", seed, rank, rule, acc[i, j, k],
                         seconds[i, j, k])
                _save(args, spec, recipe, rules, ranks, seeds, acc, seconds)  # after every run: usable if stopped
    for i, rule in enumerate(rules):
        for j, rank in enumerate(ranks):
            a = acc[i, j]
            print(f"{rule:13s} r={rank:<3d} test accuracy {a.mean():.4f} +- {a.std(ddof=1) if len(a) > 1 else 0:.4f} "
                  f"(seeds {', '.join(f'{v:.4f}' for v in a)})")
    return 0


def _save(args, spec, recipe, rules, ranks, seeds, acc, seconds) -> None:
    ds = xr.Dataset({"test_accuracy": (("feedback_learning", "rank", "seed"), acc),
                     "wall_time": (("feedback_learning", "rank", "seed"), seconds, {"units": "s"})},
                    coords={"feedback_learning": rules, "rank": ranks, "seed": seeds})
    ds = io.stamp(ds, {"spec": args.spec, "recipe": recipe, "n_test": args.n_test, "feedback": spec["feedback"]})
    io.save(ds, args.out / "rate_controls.nc")


if __name__ == "__main__":
    sys.exit(main())
