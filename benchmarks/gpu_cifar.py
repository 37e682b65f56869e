"""GPU benchmark (at most about 8 minutes on one modern GPU): the small ViT and the CNN on CIFAR-10, BP versus
LDFA at rank 10, a few epochs each; step times, peak memory and accuracies into one netCDF file.

Every run goes through :func:`bioplastic.training.trainer.train` (the spec's recipe: AdamW / Adam, warm-up +
cosine, crop + flip on the device), on the full CIFAR-10 training set unless ``--max-train`` is given. Per
run it records the test accuracy and training loss per epoch, the wall-clock seconds per epoch of the
training steps (``RunResult.epoch_seconds``) and, on CUDA, ``torch.cuda.max_memory_allocated`` (reset before
each run). A time guard (``--time-limit``, seconds) skips the remaining runs once it is exceeded, so the
script stays inside its slot; skipped runs have status "skipped".

Usage::

    python benchmarks/gpu_cifar.py --out results/gpu_cifar --device cuda              # ~3 epochs each
    python benchmarks/gpu_cifar.py --out /tmp/smoke --smoke                           # CPU, tiny, < 2 min

Writes ``OUT/gpu_cifar.nc`` (dims ``model``, ``rule``, ``epoch``) and logs a table. LDFA uses the spec's
``[rule]`` table (ViT: patch embedding on backprop, fused qkv at rank 3 r) and normative feedback learning.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

log = logging.getLogger("bioplastic.benchmarks.gpu_cifar")


def _default_data() -> Path:
    shared = os.environ.get("BIOPLASTIC_SHARED_DATA")
    base = Path(shared) if shared else Path(__file__).resolve().parents[1].parent / "shared" / "data"
    return base / "cifar10"


def main(argv: Sequence[str] | None = None) -> xr.Dataset:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--data", default=None)
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--models", default="vit_small,vgg_cifar")
    parser.add_argument("--rules", default="bp,ldfa")
    parser.add_argument("--rank", type=int, default=10)
    parser.add_argument("--feedback-learning", default="normative")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--warmup-epochs", type=float, default=0.5, help="linear warm-up before the cosine decay")
    parser.add_argument("--max-train", type=int, default=None)
    parser.add_argument("--n-test", type=int, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--amp", action="store_true", help="mixed precision (bf16 on CPU, fp16 on CUDA)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the models")
    parser.add_argument("--time-limit", type=float, default=450.0, help="skip remaining runs after this (s)")
    parser.add_argument("--smoke", action="store_true",
                        help="CPU smoke test: cnn_small + a 2-block vit_small, 256 images, 1 epoch")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("bioplastic.nn.convert").setLevel(logging.WARNING)

    import torch

    from bioplastic import io
    from bioplastic.architectures import load_spec
    from bioplastic.data.cifar10 import load_cifar10
    from bioplastic.training import TrainConfig, train

    t_start = time.perf_counter()
    models = [m for m in args.models.split(",") if m]
    if args.smoke:
        models = ["cnn_small", "vit_small"]
        args.epochs, args.max_train, args.n_test, args.batch_size = 1, 256, 256, 64
        args.device = "cpu" if args.device == "auto" else args.device
    rules = [r for r in args.rules.split(",") if r]
    specs = {}
    for m in models:
        spec = load_spec(m)
        if args.smoke and spec["architecture"] == "vit":
            spec = {**spec, "depth": 2, "dim": 64, "heads": 4}
        specs[m] = spec
    dataset = load_cifar10(Path(args.data) if args.data else _default_data(), augment="crop_flip",
                           cache_dir=args.cache_dir)
    if args.n_test:
        dataset.x_test, dataset.y_test = dataset.x_test[: args.n_test], dataset.y_test[: args.n_test]
    n_train = min(len(dataset.y_train), args.max_train or len(dataset.y_train))
    steps = math.ceil(n_train / args.batch_size)
    shape = (len(models), len(rules))
    acc = np.full(shape + (args.epochs,), np.nan)
    loss = np.full_like(acc, np.nan)
    epoch_s = np.full_like(acc, np.nan)
    peak = np.full(shape, np.nan)
    total_s = np.full(shape, np.nan)
    status = np.full(shape, "skipped", dtype=object)
    device_name = "cpu"
    for i, m in enumerate(models):
        for j, rule in enumerate(rules):
            if time.perf_counter() - t_start > args.time_limit:
                log.warning("time limit %.0f s reached: skipping %s / %s", args.time_limit, m, rule)
                continue
            options = {"rank": args.rank, "feedback_learning": args.feedback_learning} if rule in ("ldfa", "direct_ldfa") else {}
            cfg = TrainConfig(model=specs[m], rule=rule, rule_options=options, epochs=args.epochs,
                              batch_size=args.batch_size, max_train=args.max_train, device=args.device,
                              warmup_epochs=min(args.warmup_epochs, args.epochs), schedule="cosine",
                              amp=args.amp, compile=args.compile, alignment=False, seed=0)
            cuda = torch.cuda.is_available() and args.device != "cpu"
            if cuda:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
                device_name = torch.cuda.get_device_name()
            result = train(cfg, dataset, progress=False)
            if cuda:
                peak[i, j] = torch.cuda.max_memory_allocated()
            acc[i, j], loss[i, j] = result.test_accuracy, result.train_loss
            epoch_s[i, j] = result.epoch_seconds
            total_s[i, j] = result.seconds
            status[i, j] = result.status
            log.info("%s %s: accuracy %s, %.1f ms/step (epochs after the first), peak %.2f GiB", m, rule,
                     np.round(100 * result.test_accuracy, 2).tolist(),
                     1e3 * np.nanmean(result.epoch_seconds[1:] if args.epochs > 1 else result.epoch_seconds) / steps,
                     peak[i, j] / 2**30 if np.isfinite(peak[i, j]) else float("nan"))
    later = epoch_s[:, :, 1:] if args.epochs > 1 else epoch_s
    with np.errstate(invalid="ignore"):
        step_s = np.nanmean(later, axis=2) / steps
    ds = xr.Dataset(
        {
            "test_accuracy": (("model", "rule", "epoch"), acc, {"units": "1"}),
            "train_loss": (("model", "rule", "epoch"), loss, {"units": "nats"}),
            "epoch_seconds": (("model", "rule", "epoch"), epoch_s, {"units": "s"}),
            "step_seconds": (("model", "rule"), step_s,
                             {"units": "s", "long_name": "mean training-step time, epochs after the first"}),
            "peak_memory": (("model", "rule"), peak, {"units": "byte", "long_name": "torch.cuda.max_memory_allocated"}),
            "run_seconds": (("model", "rule"), total_s, {"units": "s"}),
            "status": (("model", "rule"), status.astype(str)),
            "time_ratio": (("model",), step_s[:, rules.index("ldfa")] / step_s[:, rules.index("bp")]
                           if {"bp", "ldfa"} <= set(rules) else np.full(len(models), np.nan),
                           {"long_name": "LDFA / BP step time"}),
        },
        coords={"model": models, "rule": rules, "epoch": np.arange(1, args.epochs + 1)},
        attrs={"device": device_name, "torch_version": str(torch.__version__), "rank": int(args.rank),
               "batch_size": int(args.batch_size), "n_train": int(n_train), "steps_per_epoch": int(steps),
               "smoke": int(args.smoke), "wall_seconds": float(time.perf_counter() - t_start)},
    )
    ds = io.stamp(ds, {k: v for k, v in vars(args).items()} | {"specs": json.loads(json.dumps(specs, default=str))})
    io.save(ds, Path(args.out) / "gpu_cifar.nc")
    log.info("results in %s (%.0f s)", Path(args.out) / "gpu_cifar.nc", time.perf_counter() - t_start)
    return ds


if __name__ == "__main__":
    main(sys.argv[1:])
