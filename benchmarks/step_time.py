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
``ldfa_normative``, ``ldfa_normative_every4`` (LDFA's option ``feedback_every=4``: the P, Q gradients on every
4th step; its FLOPs are the mean over 4 consecutive steps), ``ldfa_fixed`` (rank 10 on the MLP, 4 on the CNN /
ViT; ``--rank-mlp`` / ``--rank-conv``).
Peer (issue 14: "beat the peer on every rule"): where BioTorch (Sanfiz & Akrout 2021,
https://github.com/jsalbert/biotorch) is importable, ``biotorch_fa``, ``biotorch_usf`` (its sign-symmetry rule,
uniform sign-concordant feedback scaled by the initialisation's s.d.) and ``biotorch_dfa`` run in the same
interleaved loop (``--peer biotorch``, the default ``auto`` adds them when importable). BioTorch is not a
dependency of bioplastic; install it for a benchmark run only, without its dependencies (which would replace
torch): ``pip install --no-deps biotorch==0.0.16``. ``biotorch_dfa`` follows BioTorch's own protocol (the model's
forward takes the targets and the loss function, and computes the output error with ``torch.autograd.grad``).
The image models are converted as training converts them (:func:`bioplastic.training.flops.convert_like_training`:
the spec's ``exclude``, ``rank_multipliers``, output layer).

Measurement: the variants are **alternated** within each repeat (rotating the order), so that drifting machine
load affects all of them alike; a repeat times ``--steps`` consecutive steps of a variant (per-step mean); every
figure is the median over repeats, with the spread (min-max and the
interquartile range) in the netCDF file. Both wall-clock time and the process's CPU time
(``time.process_time``) are recorded: on a machine shared with other jobs the CPU time of a single-threaded
run (``--threads 1``) is the robust measure of the work a step does, since waiting for a core does not count.
Each step is also split into ``forward + backward`` (``zero_grad``, forward, loss, ``backward``) and
``update`` (``optimizer.step`` + ``feedback_step``): the FLOP ratio counts forward + backward only, so
``cpu_ratio_fwd_bwd`` is the time figure to hold against it, while the optimiser's passes over the parameters
(memory-bound, the same for every rule) pull the whole-step ratio towards 1.
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
end in the attributes) and ``step_time.png``. ``--table`` prints the Markdown table of one or more such files
(several: their repeats are pooled, e.g. the rounds of an interleaved before/after run of two source trees, see
``benchmarks/step_time_ab.sh``).
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import io
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
            "ldfa_normative_every4", "ldfa_fixed")
PEER_VARIANTS = ("biotorch_fa", "biotorch_usf", "biotorch_dfa")
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


def biotorch_available() -> bool:
    """Whether BioTorch's model converter can be imported (the peer of issue 14)."""
    try:
        import biotorch.module.biomodule  # noqa: F401
    except ImportError:
        return False
    return True


def make_peer(model: nn.Module, variant: str) -> nn.Module:
    """A copy of ``model`` converted by BioTorch (``biotorch_fa`` / ``_usf`` / ``_dfa``), weights copied."""
    from biotorch.module.biomodule import BioModule

    mode = variant[len("biotorch_"):]
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():  # its converter prints a table
        warnings.simplefilter("ignore")
        return BioModule(copy.deepcopy(model), mode=mode, copy_weights=True,
                         output_dim=10 if mode == "dfa" else None)


def make_rule(variant: str, rank: int):
    """The rule object of a variant (``None`` for ``plain``)."""
    if variant == "plain":
        return None
    if variant.startswith("ldfa_"):
        mode, _, every = variant[len("ldfa_"):].partition("_every")
        options = {"feedback_every": int(every)} if every else {}
        return bioplastic.rules.make("ldfa", rank=rank, feedback_learning=mode, **options)
    return bioplastic.rules.make(variant)


def make_variant(model: nn.Module, spec: dict | None, variant: str, rank: int, example: torch.Tensor) -> nn.Module:
    """A copy of ``model`` converted to the variant's rule (``plain``: an unconverted copy)."""
    if variant in PEER_VARIANTS:
        return make_peer(model, variant)
    rule = make_rule(variant, rank)
    if rule is None:
        return copy.deepcopy(model)
    if spec is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return bioplastic.convert(model, rule, seed=0)
    return convert_like_training(spec, model, rule, example_input=example[:2], seed=0)


def mean_step_flops(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """FLOPs of forward + backward per step, the mean over one cycle of a rule's ``feedback_every`` (the layers'
    step counters are advanced by :func:`feedback_step` between the counted steps and restored after)."""
    layers = [layer for _, layer in bioplastic.nn.feedback_layers(net)]
    every = max([getattr(layer.rule, "feedback_every", 1) for layer in layers], default=1)
    saved = [layer.steps for layer in layers]
    total = 0
    for _ in range(every):
        total += count_step_flops(net, x, y)["total"]
        for layer in layers:
            layer.steps += 1
    for layer, s in zip(layers, saved):
        layer.steps = s
    return total / every


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
    class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
        pass

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=_Formatter)
    parser.add_argument("--out", type=Path, help="output folder (required unless --table)")
    parser.add_argument("--models", default="mlp,cnn_small,vit_small", help=f"comma-separated: {', '.join(MODELS)}")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"comma-separated subset of: {', '.join(VARIANTS)} (plain is required; the BioTorch "
                             f"peer {', '.join(PEER_VARIANTS)} is added by --peer)")
    parser.add_argument("--peer", choices=("auto", "biotorch", "none"), default="auto",
                        help="add BioTorch's fa / usf / dfa (auto: where importable; biotorch: required)")
    parser.add_argument("--peer-models", default="mlp,cnn_small",
                        help="models the peer runs on (BioTorch converts Linear and Conv2d layers)")
    parser.add_argument("--rank-mlp", type=int, default=10, help="LDFA rank of the MLP")
    parser.add_argument("--rank-conv", type=int, default=4, help="LDFA rank of the CNN and ViT")
    parser.add_argument("--repeats", type=int, default=5, help="alternated repeats (medians and IQR over them)")
    parser.add_argument("--steps", type=int, default=3, help="consecutive steps timed per repeat (mean per step)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per variant first")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--device", default="cpu", help="torch device (cuda: peak memory from its allocator)")
    parser.add_argument("--label", default="", help="free text stored in the attributes (e.g. the commit)")
    parser.add_argument("--table", type=Path, nargs="+", default=None,
                        help="print the table of existing step_time.nc file(s) and exit (no measurement); "
                             "several files of the same models and variants are pooled over their repeats")
    args = parser.parse_args(argv)
    if args.table is not None:
        ds = pooled(args.table)
        print(table(ds))  # noqa: T201 (a script's output)
        return ds
    if args.out is None:
        parser.error("--out is required unless --table is given")
    for name in ("repeats", "steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("bioplastic.nn.convert").setLevel(logging.WARNING)  # conversion tables are long
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    for v in variants:
        if v not in VARIANTS + PEER_VARIANTS:
            raise ValueError(f"unknown variant {v!r}; allowed: {', '.join(VARIANTS + PEER_VARIANTS)}")
    if "plain" not in variants:
        raise ValueError("the variants must include 'plain' (the reference of every ratio)")
    if args.peer == "biotorch" and not biotorch_available():
        raise ValueError("--peer biotorch: BioTorch is not importable; pip install --no-deps biotorch==0.0.16")
    if args.peer != "none" and biotorch_available():
        variants += [v for v in PEER_VARIANTS if v not in variants]
    peer_models = {m.strip() for m in args.peer_models.split(",")}
    uptime_start = uptime()
    logger.info("start: %s", uptime_start)
    shape = (len(models), len(variants), args.repeats)
    wall, cpu, cpu_fb = np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape, np.nan)
    flops = np.full(shape[:2], np.nan)
    peak = np.full(shape[:2], np.nan)
    gen = torch.Generator().manual_seed(0)
    for mi, model_name in enumerate(models):
        base, in_shape, spec = build(model_name)
        rank = args.rank_mlp if spec is None else args.rank_conv
        batch = BATCH[model_name]
        x = torch.randn(batch, *in_shape, generator=gen)
        y = torch.randint(0, 10, (batch,), generator=gen)
        here = [v for v in variants if v not in PEER_VARIANTS or model_name in peer_models]
        nets = {}
        for v in list(here):
            try:
                nets[v] = make_variant(base, spec, v, rank, x).to(device)
            except ValueError as err:  # an option this version of bioplastic lacks (a "before" tree)
                if "unknown option" not in str(err):
                    raise
                logger.warning("variant %s skipped: %s", v, err)
                here.remove(v)
        x, y = x.to(device), y.to(device)
        for v in here:
            if v not in PEER_VARIANTS:
                flops[mi, variants.index(v)] = mean_step_flops(nets[v], x, y)
        opts = {v: torch.optim.SGD(param_groups(nets[v], lr=1e-3) if v in VARIANTS[1:] else nets[v].parameters(),
                                   lr=1e-3, momentum=0.9) for v in here}

        def forward_backward(v: str) -> None:
            net = nets[v]
            opts[v].zero_grad(set_to_none=True)
            if v == "biotorch_dfa":  # BioTorch's protocol: the forward pass takes the targets and the loss
                F.cross_entropy(net(x, targets=y, loss_function=F.cross_entropy), y).backward()
            else:
                F.cross_entropy(net(x), y).backward()

        def update(v: str) -> None:
            opts[v].step()
            if v in VARIANTS[1:]:
                feedback_step(nets[v])

        def step(v: str) -> None:
            forward_backward(v)
            update(v)

        def sync() -> None:
            if device.type == "cuda":
                torch.cuda.synchronize(device)

        def timed(v: str) -> tuple[float, float, float]:
            """(wall s, CPU s, CPU s of forward + backward), per step over ``--steps`` consecutive steps."""
            fb = 0.0
            sync()
            c0, t0 = time.process_time(), time.perf_counter()
            for _ in range(args.steps):
                c1 = time.process_time()
                forward_backward(v)
                sync()
                fb += time.process_time() - c1
                update(v)
            sync()
            n = args.steps
            return (time.perf_counter() - t0) / n, (time.process_time() - c0) / n, fb / n

        for v in here:
            vi = variants.index(v)
            for _ in range(args.warmup):
                step(v)
            if device.type == "cuda":
                sync()
                base_mem = torch.cuda.memory_allocated(device)
                torch.cuda.reset_peak_memory_stats(device)
                step(v)
                sync()
                peak[mi, vi] = (torch.cuda.max_memory_allocated(device) - base_mem) / 2**20
            else:
                peak[mi, vi] = _cpu_peak_bytes(lambda v=v: step(v)) / 2**20
        for rep in range(args.repeats):
            order = here[rep % len(here):] + here[: rep % len(here)]
            for v in order:
                vi = variants.index(v)
                wall[mi, vi, rep], cpu[mi, vi, rep], cpu_fb[mi, vi, rep] = timed(v)
            logger.info("%s repeat %d/%d (cpu s per step): %s", model_name, rep + 1, args.repeats,
                        ", ".join(f"{v} {cpu[mi, variants.index(v), rep]:.3f}" for v in here))
        del nets, opts
    ds = xr.Dataset(
        {
            "wall_time": (("model", "variant", "repeat"), wall,
                          {"units": "s", "long_name": "wall-clock time per step"}),
            "cpu_time": (("model", "variant", "repeat"), cpu, {"units": "s", "long_name": "process CPU time per step"}),
            "cpu_time_fwd_bwd": (("model", "variant", "repeat"), cpu_fb,
                                 {"units": "s", "long_name": "process CPU time of forward + backward per step"}),
            "flops": (("model", "variant"), flops,
                      {"units": "FLOP", "long_name": "FLOPs of forward + backward (count_step_flops total)"}),
            "peak_memory": (("model", "variant"), peak,
                            {"units": "MiB", "long_name": "peak memory of one step above its start"}),
        },
        coords={"model": models, "variant": variants, "repeat": np.arange(args.repeats),
                "batch": ("model", [BATCH[m] for m in models]),
                "rank": ("model", [args.rank_mlp if m == "mlp" else args.rank_conv for m in models])},
    )
    ds = with_ratios(ds)
    uptime_end = uptime()
    logger.info("end: %s", uptime_end)
    ds.attrs.update({"threads": torch.get_num_threads(), "device": str(device), "uptime_start": uptime_start,
                     "uptime_end": uptime_end, "label": args.label, "optimizer": "SGD momentum 0.9",
                     "steps_per_repeat": args.steps, "torch": str(torch.__version__),
                     "bioplastic_path": str(Path(bioplastic.__file__).resolve().parent)})
    ds = bioplastic.io.stamp(ds, vars(args) | {"out": str(args.out)})
    args.out.mkdir(parents=True, exist_ok=True)
    bioplastic.io.save(ds, args.out / "step_time.nc")
    logger.info("%s", table(ds))
    _plot(ds, args.out / "step_time.png")
    return ds


def with_ratios(ds: xr.Dataset) -> xr.Dataset:
    """Add the ratios to plain PyTorch (median over repeats, quartiles, min, max) and the FLOP ratio."""
    ds = ds.drop_vars([k for k in ds.data_vars if "ratio" in str(k)])
    pairs = [("wall", "wall_time"), ("cpu", "cpu_time")]
    if "cpu_time_fwd_bwd" in ds:
        pairs.append(("cpu_fwd_bwd", "cpu_time_fwd_bwd"))
    for kind, var in pairs:
        t = ds[var]
        ratio = t / t.sel(variant="plain").median("repeat")
        ds[f"{kind}_ratio"] = ratio.median("repeat").assign_attrs(
            long_name=f"median {var} / median {var} of plain PyTorch")
        ds[f"{kind}_ratio_q25"] = ratio.quantile(0.25, "repeat").drop_vars("quantile")
        ds[f"{kind}_ratio_q75"] = ratio.quantile(0.75, "repeat").drop_vars("quantile")
        ds[f"{kind}_ratio_min"] = ratio.min("repeat")
        ds[f"{kind}_ratio_max"] = ratio.max("repeat")
    ds["flop_ratio"] = (ds.flops / ds.flops.sel(variant="plain")).assign_attrs(long_name="FLOPs / plain FLOPs")
    return ds


def pooled(paths: list[Path]) -> xr.Dataset:
    """One Dataset from several ``step_time.nc`` files of the same models and variants: the repeats are pooled
    and the ratios recomputed (e.g. the rounds of ``benchmarks/step_time_ab.sh``)."""
    parts = [bioplastic.io.load(p) for p in paths]
    if len(parts) == 1:
        return parts[0]
    keep = ["wall_time", "cpu_time", "cpu_time_fwd_bwd", "flops", "peak_memory"]
    parts = [p[[k for k in keep if k in p]] for p in parts]
    ds = xr.concat(parts, dim="repeat", data_vars="minimal", coords="minimal", compat="override")
    ds = ds.assign_coords(repeat=np.arange(ds.sizes["repeat"]))
    ds.attrs = dict(parts[0].attrs)
    return with_ratios(ds)


def table(ds: xr.Dataset) -> str:
    """Markdown tables, one per model: per variant the step's CPU-time ratio to plain PyTorch (median [IQR]),
    the forward + backward CPU-time ratio, the wall-clock ratio, the FLOP ratio and peak MiB."""

    def num(value: float, fmt: str = ".3f") -> str:
        return "–" if not np.isfinite(value) else format(value, fmt)

    has_fb = "cpu_fwd_bwd_ratio" in ds
    lines = []
    for m in ds.model.values:
        sm = ds.sel(model=m)
        plain_ms = float(sm.cpu_time.sel(variant="plain").median()) * 1e3
        lines += [f"**{m}** (batch {int(sm['batch'])}, LDFA r = {int(sm['rank'])}; plain PyTorch step "
                  f"{plain_ms:.0f} ms CPU, {ds.sizes['repeat']} repeats)", "",
                  "| rule | step CPU / plain [IQR] | " + ("fwd+bwd CPU / plain | " if has_fb else "")
                  + "step wall / plain | FLOPs / plain | peak MiB |",
                  "|---|---|" + ("---|" if has_fb else "") + "---|---|---|"]
        for v in ds.variant.values:
            s = sm.sel(variant=v)
            if not np.isfinite(float(s.cpu_ratio)):
                continue
            cells = [f"{num(float(s.cpu_ratio))} [{num(float(s.cpu_ratio_q25), '.2f')}-"
                     f"{num(float(s.cpu_ratio_q75), '.2f')}]"]
            if has_fb:
                cells.append(num(float(s.cpu_fwd_bwd_ratio)))
            cells += [num(float(s.wall_ratio)), num(float(s.flop_ratio)), num(float(s.peak_memory), ".0f")]
            lines.append(f"| {v} | " + " | ".join(cells) + " |")
        lines.append("")
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
