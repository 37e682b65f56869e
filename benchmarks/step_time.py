"""Training-step time of every learning rule relative to plain PyTorch, beside its FLOP ratio (issue 14).

One training step = ``zero_grad`` + forward + cross-entropy + backward + optimiser step (SGD with momentum)
(+ ``bioplastic.nn.feedback_step``) on

- ``mlp``: a 7-layer MLP of width 2048 (3072-2048x6-10, ReLU), batch 256 (issue 14's table);
- ``cnn_small``: ``models/cnn_small.toml`` (4 blocks of one 3x3 conv, 32-64-128-256, BN, ReLU, max-pool, GAP,
  linear head), 3x32x32 inputs, batch 128;
- ``vit_small``: ``models/vit_small.toml`` (patch 4, width 128, depth 4), batch 128;
- ``vgg_cifar`` (optional, ``--models``): the authors' VGG-like CNN.

Variants: ``plain`` (the unconverted torch model, autograd), ``bp`` (converted with rule ``bp``: bioplastic's
autograd.Function path), ``fa``, ``sign_symmetry``, ``kolen_pollack``, ``dfa``, ``ldfa_local``,
``ldfa_normative``, ``ldfa_fixed`` (rank 10 on the MLP, 4 on the CNN / ViT; ``--rank-mlp`` / ``--rank-conv``).
The image models are converted as training converts them (:func:`bioplastic.training.flops.convert_like_training`:
the spec's ``exclude``, ``rank_multipliers``, output layer).

Measurement: the variants are **alternated** within each repeat (rotating the order), so that drifting machine
load affects all of them alike; every figure is the median over repeats, with the spread (min-max and the
interquartile range) in the netCDF file. Both wall-clock time and the process's CPU time
(``time.process_time``) are recorded: on a machine shared with other jobs the CPU time of a single-threaded
run (``--threads 1``) is the robust measure of the work a step does, since waiting for a core does not count.
FLOPs of one forward + backward per variant are counted with :func:`bioplastic.training.flops.count_step_flops`
(its ``total``: the **all-layer** count over the whole model, every weight layer including those left on
backprop (``cnn_small``'s head, ``vit_small``'s patch embedding) plus attention; ``FlopCounterMode`` counts
matrix products, convolutions and attention only, so pooling, normalisation, activations, elementwise ops and
the optimiser count 0 FLOPs although they take time). Peak memory of one step above the memory held before it: on CUDA
``torch.cuda.max_memory_allocated``; on CPU the profiler's allocation events (``torch.profiler`` with
``profile_memory=True``, the running sum of the bytes allocated and freed by torch's CPU allocator, which
``tracemalloc`` does not see).

Usage::

    nohup nice -n 5 python benchmarks/step_time.py --out results/bench --threads 1 > bench.log 2>&1 &
    python benchmarks/step_time.py --out /tmp/b --threads 1 --models mlp --repeats 9
    python benchmarks/step_time.py --out /tmp/b --device cuda           # peak memory from the CUDA allocator

Writes ``step_time.nc`` (dims ``model``, ``variant``, ``repeat``; seconds, FLOPs, MiB; ``uptime`` at start and
end in the attributes) and ``step_time.png``.
"""
from __future__ import annotations

import argparse
import copy
import logging
import subprocess
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import xarray as xr

import bioplastic
from bioplastic.nn import feedback_step, param_groups
from bioplastic.training.flops import convert_like_training, count_step_flops

logger = logging.getLogger("bioplastic.benchmarks.step_time")

VARIANTS = ("plain", "bp", "fa", "sign_symmetry", "kolen_pollack", "dfa", "ldfa_local", "ldfa_normative",
            "ldfa_fixed")
MODELS = ("mlp", "cnn_small", "vit_small", "vgg_cifar")
MLP_WIDTHS = (3072,) + (2048,) * 6 + (10,)
BATCH = {"mlp": 256, "cnn_small": 128, "vit_small": 128, "vgg_cifar": 128}


def uptime() -> str:
    """The ``uptime`` line (load averages) of the machine, or '' where the command is missing."""
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return ""


def build(model_name: str) -> tuple[nn.Module, tuple[int, ...], dict | None]:
    """The benchmark model (CPU, float32, seeded), its input shape without batch, and its spec (None: MLP)."""
    torch.manual_seed(0)
    if model_name == "mlp":
        layers: list[nn.Module] = [nn.Flatten()]
        for i in range(len(MLP_WIDTHS) - 1):
            layers.append(nn.Linear(MLP_WIDTHS[i], MLP_WIDTHS[i + 1]))
            if i < len(MLP_WIDTHS) - 2:
                layers.append(nn.ReLU())
        return nn.Sequential(*layers), (3, 32, 32), None
    if model_name in MODELS:
        spec = bioplastic.architectures.load_spec(model_name)
        return bioplastic.architectures.build_model(spec), (3, 32, 32), spec
    raise ValueError(f"unknown model {model_name!r}; allowed: {', '.join(MODELS)}")


def make_rule(variant: str, rank: int):
    """The rule object of a variant (``None`` for ``plain``)."""
    if variant == "plain":
        return None
    if variant.startswith("ldfa_"):
        return bioplastic.rules.make("ldfa", rank=rank, feedback_learning=variant[len("ldfa_"):])
    return bioplastic.rules.make(variant)


def make_variant(model: nn.Module, spec: dict | None, variant: str, rank: int, example: torch.Tensor) -> nn.Module:
    """A copy of ``model`` converted to the variant's rule (``plain``: an unconverted copy)."""
    rule = make_rule(variant, rank)
    if rule is None:
        return copy.deepcopy(model)
    if spec is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return bioplastic.convert(model, rule, seed=0)
    return convert_like_training(spec, model, rule, example_input=example[:2], seed=0)


def _cpu_peak_bytes(fn) -> float:
    """Peak bytes held by torch's CPU allocator during ``fn()``, above the level at its start."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                    key=lambda e: e.start_ns())
    level = peak = 0
    for e in events:  # nbytes: + allocated, - freed
        level += e.nbytes()
        peak = max(peak, level)
    return float(peak)


def main(argv: list[str] | None = None) -> xr.Dataset:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--models", default="mlp,cnn_small,vit_small", help=f"comma-separated: {', '.join(MODELS)}")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of the variants")
    parser.add_argument("--rank-mlp", type=int, default=10)
    parser.add_argument("--rank-conv", type=int, default=4, help="LDFA rank of the CNN and ViT")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--label", default="", help="free text stored in the attributes (e.g. the commit)")
    parser.add_argument("--table", type=Path, default=None,
                        help="print the table of an existing step_time.nc and exit (no measurement)")
    args = parser.parse_args(argv)
    if args.table is not None:
        ds = bioplastic.io.load(args.table)
        print(table(ds))  # noqa: T201 (a script's output)
        return ds
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("bioplastic.nn.convert").setLevel(logging.WARNING)  # conversion tables are long
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    for v in variants:
        if v not in VARIANTS:
            raise ValueError(f"unknown variant {v!r}; allowed: {', '.join(VARIANTS)}")
    if "plain" not in variants:
        raise ValueError("the variants must include 'plain' (the reference of every ratio)")
    uptime_start = uptime()
    logger.info("start: %s", uptime_start)
    shape = (len(models), len(variants), args.repeats)
    wall, cpu = np.full(shape, np.nan), np.full(shape, np.nan)
    flops = np.full(shape[:2], np.nan)
    peak = np.full(shape[:2], np.nan)
    gen = torch.Generator().manual_seed(0)
    for mi, model_name in enumerate(models):
        base, in_shape, spec = build(model_name)
        rank = args.rank_mlp if spec is None else args.rank_conv
        batch = BATCH[model_name]
        x = torch.randn(batch, *in_shape, generator=gen)
        y = torch.randint(0, 10, (batch,), generator=gen)
        nets = {v: make_variant(base, spec, v, rank, x).to(device) for v in variants}
        x, y = x.to(device), y.to(device)
        for vi, v in enumerate(variants):
            flops[mi, vi] = count_step_flops(nets[v], x, y)["total"]
        opts = {v: torch.optim.SGD(param_groups(nets[v], lr=1e-3) if v != "plain" else nets[v].parameters(),
                                   lr=1e-3, momentum=0.9) for v in variants}

        def step(v: str) -> None:
            net, opt = nets[v], opts[v]
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(net(x), y).backward()
            opt.step()
            if v != "plain":
                feedback_step(net)

        def timed(v: str) -> tuple[float, float]:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            c0, t0 = time.process_time(), time.perf_counter()
            step(v)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            return time.perf_counter() - t0, time.process_time() - c0

        for vi, v in enumerate(variants):
            for _ in range(args.warmup):
                step(v)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
                base_mem = torch.cuda.memory_allocated(device)
                torch.cuda.reset_peak_memory_stats(device)
                step(v)
                torch.cuda.synchronize(device)
                peak[mi, vi] = (torch.cuda.max_memory_allocated(device) - base_mem) / 2**20
            else:
                peak[mi, vi] = _cpu_peak_bytes(lambda v=v: step(v)) / 2**20
        for rep in range(args.repeats):
            order = variants[rep % len(variants):] + variants[: rep % len(variants)]
            for v in order:
                vi = variants.index(v)
                wall[mi, vi, rep], cpu[mi, vi, rep] = timed(v)
            logger.info("%s repeat %d/%d (cpu s): %s", model_name, rep + 1, args.repeats,
                        ", ".join(f"{v} {cpu[mi, variants.index(v), rep]:.3f}" for v in variants))
        del nets, opts
    ds = xr.Dataset(
        {
            "wall_time": (("model", "variant", "repeat"), wall,
                          {"units": "s", "long_name": "wall-clock time per step"}),
            "cpu_time": (("model", "variant", "repeat"), cpu, {"units": "s", "long_name": "process CPU time per step"}),
            "flops": (("model", "variant"), flops,
                      {"units": "FLOP", "long_name": "FLOPs of forward + backward (count_step_flops total)"}),
            "peak_memory": (("model", "variant"), peak,
                            {"units": "MiB", "long_name": "peak memory of one step above its start"}),
        },
        coords={"model": models, "variant": variants, "repeat": np.arange(args.repeats),
                "batch": ("model", [BATCH[m] for m in models]),
                "rank": ("model", [args.rank_mlp if m == "mlp" else args.rank_conv for m in models])},
    )
    for kind in ("wall", "cpu"):
        t = ds[f"{kind}_time"]
        ratio = t / t.sel(variant="plain").median("repeat")
        ds[f"{kind}_ratio"] = ratio.median("repeat").assign_attrs(
            long_name=f"median {kind} time / median {kind} time of plain PyTorch")
        ds[f"{kind}_ratio_q25"] = ratio.quantile(0.25, "repeat").drop_vars("quantile")
        ds[f"{kind}_ratio_q75"] = ratio.quantile(0.75, "repeat").drop_vars("quantile")
        ds[f"{kind}_ratio_min"] = ratio.min("repeat")
        ds[f"{kind}_ratio_max"] = ratio.max("repeat")
    ds["flop_ratio"] = (ds.flops / ds.flops.sel(variant="plain")).assign_attrs(long_name="FLOPs / plain FLOPs")
    uptime_end = uptime()
    logger.info("end: %s", uptime_end)
    ds.attrs.update({"threads": torch.get_num_threads(), "device": str(device), "uptime_start": uptime_start,
                     "uptime_end": uptime_end, "label": args.label, "optimizer": "SGD momentum 0.9",
                     "torch": str(torch.__version__)})
    ds = bioplastic.io.stamp(ds, vars(args) | {"out": str(args.out)})
    args.out.mkdir(parents=True, exist_ok=True)
    bioplastic.io.save(ds, args.out / "step_time.nc")
    logger.info("%s", table(ds))
    _plot(ds, args.out / "step_time.png")
    return ds


def table(ds: xr.Dataset) -> str:
    """A Markdown table: per variant and model, CPU-time ratio (IQR) | wall ratio | FLOP ratio | peak MiB."""
    models = list(ds.model.values)
    lines = ["| rule | " + " | ".join(f"{m} (r={int(ds['rank'].sel(model=m))}) CPU [IQR] \\| wall \\| FLOPs \\| MiB"
                                       for m in models) + " |",
             "|---|" + "---|" * len(models)]
    for v in ds.variant.values:
        cells = []
        for m in models:
            s = ds.sel(model=m, variant=v)
            cells.append(f"{float(s.cpu_ratio):.3f} [{float(s.cpu_ratio_q25):.2f}-{float(s.cpu_ratio_q75):.2f}] \\| "
                         f"{float(s.wall_ratio):.3f} \\| {float(s.flop_ratio):.3f} \\| {float(s.peak_memory):.0f}")
        lines.append(f"| {v} | " + " | ".join(cells) + " |")
    plain = [f"{m}: {float(ds.cpu_time.sel(model=m, variant='plain').median()) * 1e3:.0f} ms" for m in models]
    lines.append("")
    lines.append("plain PyTorch step (median CPU time): " + ", ".join(plain))
    return "\n".join(lines)


def _plot(ds: xr.Dataset, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ds.sizes["model"], figsize=(5 * ds.sizes["model"], 3.5), squeeze=False)
    for ax, model in zip(axes[0], ds.model.values):
        s = ds.sel(model=model)
        pos = np.arange(ds.sizes["variant"])
        err = np.stack([s.cpu_ratio - s.cpu_ratio_q25, s.cpu_ratio_q75 - s.cpu_ratio])
        ax.bar(pos - 0.27, s.cpu_ratio.values, 0.27, yerr=err, color="0.3", label="CPU time")
        ax.bar(pos, s.wall_ratio.values, 0.27, color="0.6", label="wall-clock")
        ax.bar(pos + 0.27, s.flop_ratio.values, 0.27, color="C3", label="FLOPs")
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_xticks(pos, ds.variant.values, rotation=40, ha="right")
        ax.set_ylabel("/ plain PyTorch")
        ax.set_title(f"{model}, batch {int(s['batch'])}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


if __name__ == "__main__":
    main()
