"""Where a training step's time goes, per rule: ``torch.profiler`` tables of self CPU time by op (issue 14).

Profiles one training step (after warm-up steps) of each variant of ``benchmarks/step_time.py`` on the same
models, single-threaded (``torch.set_num_threads(1)`` unless ``--threads``), and writes one text file per model
and variant (``<out>/<model>_<variant>.txt``: the profiler's table sorted by self CPU time, top ``--rows``
ops, of the least disturbed of ``--steps`` profiled steps: the profiler times ops by wall clock, so on a shared
machine the step with the smallest total is the one least inflated by waiting for a core) plus ``<out>/summary.txt``
(the step's self CPU total and the top ops of every variant side by side) and ``<out>/shares.md`` (the share of
the step's time by op category: weight-layer products, attention, pooling, normalisation, activations, copies,
in-place adds; :data:`CATEGORIES`).

Usage::

    nohup nice -n 5 python benchmarks/profile_step.py --out docs/step_time/profile_before > prof.log 2>&1 &
    python benchmarks/profile_step.py --out /tmp/prof --models cnn_small --variants plain,bp,ldfa_local
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from step_time import BATCH, VARIANTS, build, make_variant, uptime  # noqa: E402

from bioplastic.nn import feedback_step, param_groups  # noqa: E402

#: Op categories of the share table (``shares.md``), matched in this order on the profiler's op name: the
#: weight layers' products (the only ops FlopCounterMode counts besides attention) against the rest.
CATEGORIES = (
    ("weight-layer products", ("conv", "aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::matmul",
                               "aten::linear")),
    ("attention (SDPA)", ("scaled_dot_product", "attention")),
    ("pooling", ("pool",)),
    ("normalisation", ("batch_norm", "layer_norm")),
    ("activations", ("relu", "clamp_min", "threshold_backward", "gelu", "softmax", "tanh")),
    ("copies / fills", ("copy_", "fill_", "zero_", "zeros", "empty", "cat", "clone", "contiguous", "select_backward",
                        "as_strided", "stack")),
    ("add_ / mul_ (optimiser, grad accumulation)", ("aten::add", "aten::mul", "aten::addcmul", "aten::lerp",
                                                     "aten::sum", "aten::div", "aten::sub", "aten::neg")),
)


def categorise(key: str) -> str:
    """The category of an op name (``"other"``: views, autograd and Function bookkeeping, Python)."""
    for name, patterns in CATEGORIES:
        if any(pat in key for pat in patterns):
            return name
    return "other (views, autograd / Function bookkeeping)"


def share_table(rows: list[tuple[str, str, float, dict[str, float]]]) -> str:
    """Markdown: per model and variant, the step's self CPU total and each category's share (%)."""
    names = [c[0] for c in CATEGORIES] + ["other (views, autograd / Function bookkeeping)"]
    lines = ["| model | variant | self CPU ms | " + " | ".join(names) + " |", "|---|---|---|" + "---|" * len(names)]
    for model, variant, total, cats in rows:
        lines.append(f"| {model} | {variant} | {total:.1f} | " + " | ".join(
            f"{100 * cats.get(n, 0.0) / total:.1f} % ({cats.get(n, 0.0):.1f})" for n in names) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--models", default="mlp,cnn_small,vit_small")
    parser.add_argument("--variants", default="plain,bp,fa,sign_symmetry,dfa,ldfa_local,ldfa_normative")
    parser.add_argument("--conv-variants", default="plain,bp,ldfa_local,ldfa_normative",
                        help="variants profiled on the image models")
    parser.add_argument("--rank-mlp", type=int, default=10)
    parser.add_argument("--rank-conv", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rows", type=int, default=25)
    parser.add_argument("--steps", type=int, default=3, help="profiled steps; the one with least time is kept")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    shares: list[tuple[str, str, float, dict[str, float]]] = []
    summary = [f"one training step (SGD momentum), torch {torch.__version__}, "
               f"torch.set_num_threads({args.threads}); start: {uptime()}"]
    for model_name in [m for m in args.models.split(",") if m]:
        base, in_shape, spec = build(model_name)
        rank = args.rank_mlp if spec is None else args.rank_conv
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(BATCH[model_name], *in_shape, generator=gen)
        y = torch.randint(0, 10, (BATCH[model_name],), generator=gen)
        names = args.variants if model_name == "mlp" else args.conv_variants
        for v in [v for v in names.split(",") if v]:
            if v not in VARIANTS:
                raise ValueError(f"unknown variant {v!r}; allowed: {', '.join(VARIANTS)}")
            net = make_variant(base, spec, v, rank, x)
            opt = torch.optim.SGD(param_groups(net, lr=1e-3) if v != "plain" else net.parameters(),
                                  lr=1e-3, momentum=0.9)

            def step() -> None:
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(net(x), y).backward()
                opt.step()
                if v != "plain":
                    feedback_step(net)

            for _ in range(args.warmup):
                step()
            best = None  # the profiler times ops by wall clock: keep the least disturbed of --steps steps
            for _ in range(args.steps):
                with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
                    step()
                avg = prof.key_averages()
                total = sum(e.self_cpu_time_total for e in avg) / 1e3
                if best is None or total < best[0]:
                    best = (total, avg)
            total, avg = best
            text = avg.table(sort_by="self_cpu_time_total", row_limit=args.rows)
            head = (f"{model_name} (batch {BATCH[model_name]}, rank {rank}) {v}: least of {args.steps} profiled steps, "
                    f"self CPU total "
                    f"{total:.1f} ms, torch.set_num_threads({args.threads}); {uptime()}\n")
            (args.out / f"{model_name}_{v}.txt").write_text(head + text)
            top = sorted(avg, key=lambda e: -e.self_cpu_time_total)[:6]
            summary.append(f"{model_name:10s} {v:15s} self CPU {total:8.1f} ms | " + ", ".join(
                f"{e.key} {e.self_cpu_time_total / 1e3:.1f}" for e in top))
            print(summary[-1], flush=True)
            cats: dict[str, float] = {}
            for e in avg:
                c = categorise(e.key)
                cats[c] = cats.get(c, 0.0) + e.self_cpu_time_total / 1e3
            shares.append((model_name, v, total, cats))
            del net, opt
    summary.append(f"end: {uptime()}")
    (args.out / "summary.txt").write_text("\n".join(summary) + "\n")
    (args.out / "shares.md").write_text(
        f"Share of one step's self CPU time by op category (least disturbed of {args.steps} profiled steps; "
        f"ms in brackets; wall-clock op times, so compare shares within a row). {summary[0]}; {summary[-1]}\n\n"
        + share_table(shares) + "\n")


if __name__ == "__main__":
    main()
