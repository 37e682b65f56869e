"""Training-step time of each learning rule relative to backprop (issue 2's benchmark).

One training step = ``zero_grad`` + forward + cross-entropy + backward + optimiser step (+
``bioplastic.nn.feedback_step``), batch 128, on

- ``mlp``: a 4-layer MLP of width 4096 (3072-4096-4096-4096-10, ReLU), and
- ``vgg``: the VGG-like CNN of Hanut & Kadmon (2025, arXiv:2502.20580), ``models/vgg_cifar.toml``
  (4 blocks of two 3x3 convs, 64-128-256-512, BN, ReLU, max-pool, GAP, FC head), 3x32x32 inputs.

Variants: ``plain`` (the unconverted torch model, plain autograd), ``bp`` (converted with rule ``bp``: our
autograd.Function path), ``fa``, ``ldfa_normative`` and ``ldfa_local`` (rank 10). The variants are
**alternated** within each repeat (rotating the order) so that a drifting machine load affects all of them
alike; the reported figure is the median over repeats of each variant's time divided by the median of ``bp``
(and ``bp`` / ``plain``). Both wall-clock time and the process's CPU time (``time.process_time``) are
recorded: on a machine shared with other jobs the CPU time of a single-threaded run (``--threads 1``) is the
robust measure of the work a step does, since waiting for a core does not count.

Expected: LDFA skips each layer's backward input-gradient product (one of its three equal-cost products), so
for weight layers with an input gradient the step costs about 2/3 of backprop's. Layers without an input
gradient (the first layer), non-weight work (BatchNorm, ReLU, pooling, the optimiser) and the extra
normative cost ``2 r out in`` per layer (independent of the batch) keep the whole step above 2/3; the script
prints the FLOP-count bound for the MLP alongside the measurement.

Usage::

    python benchmarks/step_time.py --out results/bench                 # both models, 5 repeats
    taskset -c 0 python benchmarks/step_time.py --out /tmp/b --threads 1 --models mlp --repeats 9
    python benchmarks/step_time.py --out /tmp/b --device cuda           # also peak memory per variant

Writes ``step_time.nc`` (dims ``model``, ``variant``, ``repeat``; seconds) and ``step_time.png``.
"""
from __future__ import annotations

import argparse
import copy
import logging
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import xarray as xr

import bioplastic
from bioplastic.nn import feedback_step, param_groups

logger = logging.getLogger("bioplastic.benchmarks.step_time")

VARIANTS = ("plain", "bp", "fa", "ldfa_normative", "ldfa_local")
RANK = 10


def build(model_name: str) -> tuple[nn.Module, tuple[int, ...]]:
    """The benchmark model (CPU, float32, seeded) and its input shape without batch."""
    torch.manual_seed(0)
    if model_name == "mlp":
        widths = [3072, 4096, 4096, 4096, 10]
        layers: list[nn.Module] = [nn.Flatten()]
        for i in range(len(widths) - 1):
            layers.append(nn.Linear(widths[i], widths[i + 1]))
            if i < len(widths) - 2:
                layers.append(nn.ReLU())
        return nn.Sequential(*layers), (3, 32, 32)
    if model_name == "vgg":
        return bioplastic.architectures.build_model("vgg_cifar"), (3, 32, 32)
    raise ValueError(f"unknown model {model_name!r}; allowed: 'mlp', 'vgg'")


def make_variant(model: nn.Module, variant: str) -> nn.Module:
    if variant == "plain":
        return copy.deepcopy(model)
    rule = {
        "bp": bioplastic.rules.make("bp"),
        "fa": bioplastic.rules.make("fa"),
        "ldfa_normative": bioplastic.rules.make("ldfa", rank=RANK, feedback_learning="normative"),
        "ldfa_local": bioplastic.rules.make("ldfa", rank=RANK, feedback_learning="local"),
    }[variant]
    return bioplastic.convert(model, rule, seed=0)


def mlp_flop_bound(batch: int) -> dict[str, float]:
    """Multiply-accumulate counts of the MLP's weight layers, LDFA / BP (activation and optimiser work ignored)."""
    widths = [3072, 4096, 4096, 4096, 10]
    fwd = grad_w = grad_x = thin = normative = 0.0
    for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
        fwd += batch * n_in * n_out
        grad_w += batch * n_in * n_out
        if i > 0:  # the first layer's input needs no gradient, under any rule
            grad_x += batch * n_in * n_out
            thin += batch * RANK * (n_in + n_out)
        normative += 2 * RANK * n_in * n_out + 2 * RANK * RANK * (n_in + n_out)
    bp = fwd + grad_w + grad_x
    local_thin = thin + sum(batch * RANK * (a + b) * 1.5 for a, b in zip(widths[:-1], widths[1:]))
    return {"ldfa_local": (fwd + grad_w + local_thin) / bp, "ldfa_normative": (fwd + grad_w + thin + normative) / bp}


def main(argv: list[str] | None = None) -> xr.Dataset:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--models", default="mlp,vgg", help="comma-separated: mlp, vgg")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("bioplastic.nn.convert").setLevel(logging.WARNING)  # conversion tables are long
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    times = np.full((len(models), len(VARIANTS), args.repeats), np.nan)
    cpu = np.full_like(times, np.nan)
    peak = np.full((len(models), len(VARIANTS)), np.nan)
    gen = torch.Generator().manual_seed(0)
    for mi, model_name in enumerate(models):
        base, in_shape = build(model_name)
        nets = {v: make_variant(base, v).to(device) for v in VARIANTS}
        opts = {v: torch.optim.SGD(param_groups(nets[v], lr=1e-3) if v != "plain" else nets[v].parameters(),
                                   lr=1e-3, momentum=0.9) for v in VARIANTS}
        x = torch.randn(args.batch, *in_shape, generator=gen).to(device)
        y = torch.randint(0, 10, (args.batch,), generator=gen).to(device)

        def step(v: str) -> tuple[float, float]:
            net, opt = nets[v], opts[v]
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            c0 = time.process_time()
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(net(x), y).backward()
            opt.step()
            if v != "plain":
                feedback_step(net)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            return time.perf_counter() - t0, time.process_time() - c0

        for v in VARIANTS:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            for _ in range(args.warmup):
                step(v)
            if device.type == "cuda":
                peak[mi, VARIANTS.index(v)] = torch.cuda.max_memory_allocated(device) / 2**20
        for rep in range(args.repeats):
            order = VARIANTS[rep % len(VARIANTS):] + VARIANTS[: rep % len(VARIANTS)]
            for v in order:
                times[mi, VARIANTS.index(v), rep], cpu[mi, VARIANTS.index(v), rep] = step(v)
            logger.info("%s repeat %d (wall / cpu): %s", model_name, rep, ", ".join(
                f"{v} {times[mi, VARIANTS.index(v), rep]:.3f}/{cpu[mi, VARIANTS.index(v), rep]:.3f}s"
                for v in VARIANTS))
        med = {v: statistics.median(times[mi, VARIANTS.index(v)]) for v in VARIANTS}
        med_cpu = {v: statistics.median(cpu[mi, VARIANTS.index(v)]) for v in VARIANTS}
        logger.info("%s, batch %d, %d threads, medians of %d repeats (wall-clock | CPU time):", model_name,
                    args.batch, torch.get_num_threads(), args.repeats)
        logger.info("  bp (ours) / plain PyTorch : %.3f | %.3f", med["bp"] / med["plain"],
                    med_cpu["bp"] / med_cpu["plain"])
        for v in ("fa", "ldfa_normative", "ldfa_local"):
            logger.info("  %-14s / bp       : %.3f | %.3f", v, med[v] / med["bp"], med_cpu[v] / med_cpu["bp"])
        if model_name == "mlp":
            bound = mlp_flop_bound(args.batch)
            logger.info("  FLOP bound (weight layers only): ldfa_local %.3f, ldfa_normative %.3f",
                        bound["ldfa_local"], bound["ldfa_normative"])
        del nets, opts
    ds = xr.Dataset(
        {
            "step_time": (("model", "variant", "repeat"), times, {"units": "s", "long_name": "wall-clock time"}),
            "cpu_time": (("model", "variant", "repeat"), cpu, {"units": "s", "long_name": "process CPU time"}),
            "peak_memory": (("model", "variant"), peak, {"units": "MiB", "long_name": "CUDA peak memory"}),
        },
        coords={"model": models, "variant": list(VARIANTS), "repeat": np.arange(args.repeats)},
        attrs={"batch": args.batch, "threads": torch.get_num_threads(), "device": str(device), "rank": RANK},
    )
    ds["ratio_to_bp"] = ds.step_time.median("repeat") / ds.step_time.sel(variant="bp").median("repeat")
    ds["cpu_ratio_to_bp"] = ds.cpu_time.median("repeat") / ds.cpu_time.sel(variant="bp").median("repeat")
    ds = bioplastic.io.stamp(ds, vars(args) | {"out": str(args.out)})
    args.out.mkdir(parents=True, exist_ok=True)
    bioplastic.io.save(ds, args.out / "step_time.nc")
    _plot(ds, args.out / "step_time.png")
    return ds


def _plot(ds: xr.Dataset, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ds.sizes["model"], figsize=(4.5 * ds.sizes["model"], 3.5), squeeze=False)
    for ax, model in zip(axes[0], ds.model.values):
        pos = np.arange(ds.sizes["variant"])
        ax.bar(pos - 0.2, ds.ratio_to_bp.sel(model=model).values, 0.4, color="0.6", label="wall-clock")
        ax.bar(pos + 0.2, ds.cpu_ratio_to_bp.sel(model=model).values, 0.4, color="0.3", label="CPU time")
        ax.axhline(1.0, color="k", lw=0.8)
        ax.axhline(2 / 3, color="C3", lw=0.8, ls="--", label="2/3 (weight-layer limit)")
        ax.set_xticks(pos, ds.variant.values, rotation=30, ha="right")
        ax.set_ylabel("step time / bp")
        ax.set_title(f"{model}, batch {ds.attrs['batch']}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)


if __name__ == "__main__":
    main()
