"""Linear theory of learning with low-dimensional error feedback: simulation vs gradient-flow theory.

Reproduces the theory figure of Hanut & Kadmon (2025, arXiv:2502.20580): a two-layer linear student
(n=128 inputs, k=64 hidden, m=64 outputs) learns a rank-4 linear teacher with backprop, feedback alignment and
LDFA (fixed, q_only, oja, local, normative feedback) through r=2 feedback units, and again with r=4 (at least the
teacher's rank). Two teachers: the spec's (the authors' G1 G2 / sqrt(64) truncated to rank 4) and the authors'
full-rank G1 G2 / sqrt(64) (``--teachers``). ``oja`` follows the output covariance Sigma^yy (the paper's Eq. 8;
spec key ``oja_covariance``). Every rule is run twice from the same initial weights: the full simulation
(full-batch gradient descent on 100,000 sampled inputs; solid lines) and the gradient-flow ODE in the teacher's singular basis
(dashed). Sizes, rates and the teacher come from ``models/linear_teacher_student.toml``.

Usage::

    python analyses/linear_theory.py --out results/             # figures: linear_theory[_full_rank].nc / .png
    python analyses/linear_theory.py --out results/ --sweep     # + linear_theory_sweep.nc / .png (oja, local)
    python analyses/linear_theory.py --out results/ --small     # small sizes (seconds; used by the tests)

Outputs (``bioplastic.io.save``, atomic): ``linear_theory.nc`` (spec's teacher; ``linear_theory_full_rank.nc`` for the
full-rank teacher, attribute ``teacher`` names it) with dims ``rank``, ``executor``
(``simulation``, ``gradient_flow``), ``rule``, ``step``, ``mode``, ``direction``; ``linear_theory.png``: for each
rank a row of losses (log scale, with the best rank-r loss as a dotted reference line) and a row of normalised
mode strengths ``[U^T W2 W1 V]_jj / s_j``, one column per rule. ``--sweep`` adds ``linear_theory_sweep.nc`` (dims
``setting``, ``step``, ...) and ``linear_theory_sweep.png``: how fast ``oja`` and ``local`` feedback adapt as a
function of their learning rates, weight decay and error normalisation (docs/theory.md discusses the result).
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

from bioplastic.io import atomic_write  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import xarray as xr  # noqa: E402

from bioplastic import io, theory  # noqa: E402
from bioplastic.architectures import load_spec  # noqa: E402

log = logging.getLogger("linear_theory")

SMALL = {"n_inputs": 32, "n_outputs": 16, "n_hidden": 16,
         "teacher": {"construction": "random", "singular_values": [5.0, 4.8, 4.5, 4.2], "seed": 0},
         "training": {"steps": 1500, "lr": 0.015, "feedback_lr": 0.006, "init_scale": 0.05, "n_samples": 4000}}


def _save_figure(fig, path: Path) -> None:
    """Write a PNG atomically (temporary file + rename)."""
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110))
    finally:
        plt.close(fig)


TEACHER_LABELS = {"spec": "the spec's teacher", "full": "full-rank G1 G2 / sqrt(64)"}


def teacher_label(spec: dict, which: str) -> str:
    """Readable name of a teacher of the figure (``which``: "spec" or "full")."""
    t = spec["teacher"]
    if which == "full":
        return f"paper teacher G1 G2 / sqrt({t.get('hidden', 64)}), full rank (seed {t.get('seed', 0)})"
    if t.get("construction", "paper") == "paper":
        rank = t.get("rank")
        cut = f", truncated to rank {rank}" if rank else ", full rank"
        return f"paper teacher G1 G2 / sqrt({t.get('hidden', 64)}){cut} (seed {t.get('seed', 0)})"
    return f"random teacher, singular values {t.get('singular_values')}"


def full_rank_spec(spec: dict) -> dict:
    """The spec with its paper teacher not truncated: the authors' G1 G2 / sqrt(hidden) as drawn."""
    if spec["teacher"].get("construction", "paper") != "paper":
        raise SystemExit("--teachers full needs a 'paper' teacher construction (G1 G2 / sqrt(hidden))")
    return {**spec, "teacher": {k: v for k, v in spec["teacher"].items() if k != "rank"}}


def load_setting(spec_name: str, small: bool) -> tuple[dict, theory.Teacher, dict]:
    """The spec, its teacher and the keyword arguments shared by every run."""
    spec = load_spec(spec_name)
    if spec.get("architecture") != "linear_teacher_student":
        raise ValueError(f"spec {spec_name!r} is not a linear_teacher_student spec")
    if small:
        spec = {**spec, **{k: v for k, v in SMALL.items() if k != "training"},
                "training": {**spec["training"], **SMALL["training"]}}
    teacher = theory.teacher_from_spec(spec)
    tr = spec["training"]
    common = dict(n_hidden=int(spec["n_hidden"]), steps=int(tr["steps"]), lr=float(tr["lr"]),
                  feedback_lr=float(tr["feedback_lr"]), init=tr.get("init", "random"),
                  init_scale=float(tr["init_scale"]), feedback_init_scale=float(tr.get("feedback_init_scale", 1.0)),
                  seed=int(tr.get("seed", 0)))
    return spec, teacher, common


def per_rule_options(spec: dict) -> dict[str, dict]:
    """Options of single rules from the spec: Oja's covariance source (``oja_covariance``, default "targets":
    the output covariance Sigma^yy of the paper's Eq. 8)."""
    return {"ldfa_oja": {"oja_covariance": spec["training"].get("oja_covariance", "targets")},
            "direct_ldfa_oja": {"oja_covariance": spec["training"].get("oja_covariance", "targets")}}


def flow_options(per_rule: dict[str, dict], feedback_method: str | None) -> dict[str, dict]:
    """The gradient flow's per-rule options: ``oja`` on Sigma^yy gets ``feedback_method`` (P's stiff, autonomous
    flow integrated on its own; :func:`bioplastic.theory.gradient_flow`)."""
    out = {k: dict(v) for k, v in per_rule.items()}
    if feedback_method is not None:
        for opts in out.values():
            if opts.get("oja_covariance") == "targets":
                opts["feedback_method"] = feedback_method
    return out


def run_figure(spec: dict, teacher: theory.Teacher, common: dict, rules: list[str], ranks: list[int],
               record_every: int, feedback_method: str | None = "Radau") -> xr.Dataset:
    """Simulation and gradient flow for every rule and rank, concatenated along ``executor`` and ``rank``."""
    per_rule = {k: v for k, v in per_rule_options(spec).items() if k in rules}
    n_samples = spec["training"].get("n_samples")
    data = None
    if n_samples:  # one training set for every rule (x white Gaussian, y = W* x + noise), drawn once
        gen = torch.Generator().manual_seed(int(spec["training"].get("data_seed", 1)))
        x = torch.randn(int(n_samples), teacher.n_inputs, generator=gen, dtype=torch.float32)
        y = x @ teacher.weight.T.float()
        if teacher.noise_std:
            y += teacher.noise_std * torch.randn(y.shape, generator=gen, dtype=torch.float32)
        data = (x, y)
    per_rank = []
    for r in ranks:
        t0 = time.perf_counter()
        sim = theory.compare_rules(rules, teacher, executor="simulate", rank=r, data=data, per_rule=per_rule,
                                   record_every=record_every, dtype=torch.float32, **common)
        t1 = time.perf_counter()
        ode = theory.compare_rules(rules, teacher, executor="gradient_flow", rank=r, record_every=record_every,
                                   per_rule=flow_options(per_rule, feedback_method), rtol=1e-6, atol=1e-8, **common)
        t2 = time.perf_counter()
        log.info("rank %d: simulations %.1f s, gradient flows %.1f s", r, t1 - t0, t2 - t1)
        if "train_loss" in sim and "train_loss" not in ode:
            ode["train_loss"] = ode.loss * np.nan  # the flow runs on the population: no training set
        both = xr.concat([sim, ode], dim="executor", data_vars="all", coords="minimal", compat="override",
                         combine_attrs="override", join="outer")
        per_rank.append(both.assign_coords(executor=["simulation", "gradient_flow"]))
    ds = xr.concat(per_rank, dim="rank", data_vars="all", coords="minimal", compat="override",
                   combine_attrs="override", join="outer")
    ds = ds.assign_coords(rank=np.asarray(ranks, dtype=np.int64))
    ds.attrs["method"] = "simulation (full batch on sampled data) and gradient flow (teacher's singular basis)"
    return ds


def plot_figure(ds: xr.Dataset, path: Path, teacher: str = "") -> None:
    rules = list(ds.rule.values)
    ranks = [int(r) for r in ds["rank"].values]
    fig, axes = plt.subplots(2 * len(ranks), len(rules), figsize=(2.3 * len(rules), 2.1 * 2 * len(ranks)),
                             sharex=True, squeeze=False)
    colors = plt.cm.viridis(np.linspace(0, 0.85, ds.sizes["mode"]))
    n_label = 4  # legend entries: the strongest modes only (a full-rank teacher has 64)
    for i, r in enumerate(ranks):
        for j, rule in enumerate(rules):
            ax_l, ax_m = axes[2 * i, j], axes[2 * i + 1, j]
            for executor, style in (("simulation", "-"), ("gradient_flow", "--")):
                sel = ds.sel(rank=r, rule=rule, executor=executor)
                ax_l.plot(ds.step, sel.loss, style, color="k", lw=1.2)
                for mode in ds.mode.values:
                    label = (f"s={float(ds.singular_value[mode]):.1f}"
                             if executor == "simulation" and mode < n_label else None)
                    ax_m.plot(ds.step, sel.mode_strength.sel(mode=mode), style, color=colors[mode],
                              lw=1.1 if ds.sizes["mode"] <= 8 else 0.6, label=label)
            ref = float(ds.rank_r_loss.sel(rank=r, rule=rule, executor="simulation"))
            if ref > 1e-9 * float(ds.initial_loss_zero_map.max()):  # r >= teacher rank: the reference is 0
                ax_l.axhline(ref, color="0.5", ls=":", lw=1)
            ax_l.set_yscale("log")
            final = float(ds.loss.sel(rank=r, rule=rule, executor="simulation").isel(step=-1))
            ax_l.set_title(f"{rule}, r={r}\nfinal loss {final:.3g}", fontsize=8)
            ax_m.set_ylim(-0.1, 1.15)
            if j == 0:
                ax_l.set_ylabel("loss")
                ax_m.set_ylabel("mode strength")
            if i == len(ranks) - 1:
                ax_m.set_xlabel("step")
    axes[1, 0].legend(fontsize=6, loc="lower right")
    fig.suptitle(f"Linear teacher-student, {teacher or 'teacher of the spec'}: simulation (solid) vs "
                 "gradient-flow theory (dashed); dotted: best rank-r loss; oja on Sigma^yy", fontsize=10)
    fig.tight_layout()
    _save_figure(fig, path)


def sweep_settings(small: bool) -> list[tuple[str, str, dict]]:
    """(name, rule label, options) of the oja / local sweep (rates relative to lr = 2.5e-3 at paper sizes)."""
    s = []
    s.append(("fixed", "ldfa_fixed", {}))
    s.append(("normative", "ldfa_normative", {}))
    # oja, P: Oja's subspace rule on the trace-normalised (rule core) or the raw error covariance, at its own rate;
    # Q: Kolen-Pollack at feedback_lr (the paper's 1e-3)
    for plr in (1e-3, 1e-2, 3e-2, 1e-1):
        s.append((f"oja trace P-lr={plr:g}", "ldfa_oja", {"feedback_lr_p": plr}))
    for plr in (1e-5, 3e-5, 1e-4, 2e-4):
        s.append((f"oja none P-lr={plr:g}", "ldfa_oja", {"feedback_lr_p": plr, "error_normalization": "none"}))
    # oja on the output covariance Sigma^yy (the paper's Eq. 8 and the figure's setting): raw (the paper's form) at
    # P-lr 1e-3 and 1e-4, and trace-normalised (the torch executor's normalisation) at P-lr 1e-3
    for plr in (1e-3, 1e-4):
        s.append((f"oja Syy none P-lr={plr:g}", "ldfa_oja", {"oja_covariance": "targets", "feedback_lr_p": plr}))
    s.append(("oja Syy trace P-lr=0.001", "ldfa_oja", {"oja_covariance": "targets", "error_normalization": "trace"}))
    # oja's Kolen-Pollack part: rate of Q (= lr: exact KP), weight decay, zero initial Q (nothing to forget)
    fast = {"feedback_lr_p": 1e-4, "error_normalization": "none"}
    s.append(("oja none P-lr=1e-4 Q-lr=lr", "ldfa_oja", {**fast, "feedback_lr": 2.5e-3}))
    for wd in (1e-4, 1e-2, 1e-1):
        s.append((f"oja none P-lr=1e-4 decay={wd:g}", "ldfa_oja", {**fast, "feedback_weight_decay": wd}))
    s.append(("oja none P-lr=1e-4 Q0=0", "ldfa_oja", {**fast, "feedback_init_scale": 0.0}))
    s.append(("oja trace P-lr=1e-3 Q0=0", "ldfa_oja", {"feedback_lr_p": 1e-3, "feedback_init_scale": 0.0}))
    s.append(("oja trace P-lr=1e-3 decay=1e-4", "ldfa_oja", {"feedback_lr_p": 1e-3, "feedback_weight_decay": 1e-4}))
    # q_only: the Kolen-Pollack rule alone (P frozen), at lr and with weight decay from weak to strong
    for wd in (0.0, 1e-4, 1e-1, 1.0):
        s.append((f"q_only KP decay={wd:g}", "ldfa_q_only", {"feedback_lr": 2.5e-3, "feedback_weight_decay": wd}))
    # local: learning rate, weight decay, error normalisation
    for flr in (1e-3, 2.5e-3):
        for wd in (0.0, 0.1):
            s.append((f"local none lr={flr:g} decay={wd:g}", "ldfa_local",
                      {"feedback_lr": flr, "feedback_weight_decay": wd}))
    for flr in (3e-3, 1e-2, 2e-2):
        for wd in (0.0, 0.03, 0.1, 0.3):
            s.append((f"local trace lr={flr:g} decay={wd:g}", "ldfa_local",
                      {"feedback_lr": flr, "feedback_weight_decay": wd, "error_normalization": "trace"}))
    if small:
        s = s[:2] + [x for x in s if x[0] in ("oja none P-lr=0.0001", "oja Syy none P-lr=0.001", "q_only KP decay=0.1",
                                                "local trace lr=0.01 decay=0.1")]
    return s


def run_sweep(teacher: theory.Teacher, common: dict, rank: int, small: bool, record_every: int) -> xr.Dataset:
    parts = []
    for name, label, options in sweep_settings(small):
        rule, mode = theory.parse_rule_label(label)
        kw = {**common, "rank": rank, "record_every": record_every, **options}
        ds = theory.simulate(rule, teacher, feedback_learning=mode, **kw)
        final = float(ds.loss.isel(step=-1).squeeze())
        log.info("sweep %-36s final loss %10.4g", name, final)
        ds = ds.rename({"rule": "setting"}).assign_coords(
            setting=[name], rule=("setting", [label]),
            error_normalization=("setting", [io.config_of(ds)["rule"]["error_normalization"]]),
            oja_covariance=("setting", [io.config_of(ds)["rule"].get("oja_covariance", "error")]),
            feedback_init_scale=("setting", [float(kw.get("feedback_init_scale", 1.0))]))
        ds.attrs.pop("config", None)
        parts.append(ds)
    out = xr.concat(parts, dim="setting", data_vars="minimal", coords="minimal", compat="override",
                    combine_attrs="override", join="outer")
    out.attrs["method"] = "simulation, gradient descent on the population loss"
    return out


def plot_sweep(ds: xr.Dataset, path: Path) -> None:
    names = list(ds.setting.values)
    fig, axes = plt.subplots(1, 3, figsize=(17, 0.28 * len(names) + 2.5))
    final = ds.loss.isel(step=-1).values
    y = np.arange(len(names))
    ax = axes[0]
    ax.barh(y, np.where(np.isfinite(final), final, np.nan), color="tab:blue")
    for yi, f in zip(y, final):
        ax.text(ax.get_xlim()[1] * 0.01 if not np.isfinite(f) else f, yi, " diverged" if not np.isfinite(f)
                else f" {f:.3g}", va="center", fontsize=7)
    ax.set_yticks(y, names, fontsize=7)
    ax.set_xscale("log")
    ax.invert_yaxis()
    ax.set_xlabel("final loss (log)")
    ax.set_title("where each setting lands (fixed vs normative at the top)", fontsize=9)
    ax = axes[1]
    ax.barh(y, ds.feedback_angle.isel(step=-1).max("direction").values, color="tab:orange")
    ax.set_yticks(y, [])
    ax.invert_yaxis()
    ax.set_xlabel("largest principal angle, feedback vs teacher's top-r modes (deg), final")
    ax = axes[2]
    for name in names:
        if name.startswith(("q_only", "fixed")) or name in ("oja trace P-lr=0.001", "oja none P-lr=0.0001",
                                                             "oja Syy none P-lr=0.001"):
            ax.plot(ds.step[1:], ds.feedback_change.sel(setting=name)[1:], label=name)
    ax.set_xscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("||F(t) - F(0)|| / ||F(0)||")
    ax.set_title("how far the feedback moves: Q's Kolen-Pollack change follows W2's learning\n"
                 "(~250 steps), whatever the weight decay", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    _save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--spec", default="linear_teacher_student", help="model spec name or TOML path")
    parser.add_argument("--rules", default=None, help="comma-separated rule labels (default: the spec's)")
    parser.add_argument("--ranks", default=None, help="comma-separated feedback ranks (default: the spec's)")
    parser.add_argument("--small", action="store_true", help="small sizes (seconds)")
    parser.add_argument("--sweep", action="store_true", help="also run the oja / local sweep")
    parser.add_argument("--record-every", type=int, default=None, help="record every this many steps")
    parser.add_argument("--feedback-method", default="Radau",
                        help="solve_ivp method for the separate flow of P of oja on Sigma^yy (stiff: 'Radau'); 'none' "
                             "integrates it with the rest (RK45)")
    parser.add_argument("--teachers", default=None,
                        help="comma-separated: 'spec' (the spec's teacher: linear_theory.nc / .png) and 'full' (the "
                             "paper teacher not truncated: linear_theory_full_rank.nc / .png); default 'spec,full' "
                             "for a paper teacher, 'spec' with --small")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(1)  # small matrices: one thread is fastest (a script may set the process default)

    spec, teacher, common = load_setting(args.spec, args.small)
    tr = spec["training"]
    rules = args.rules.split(",") if args.rules else list(tr["rules"])
    for label in rules:
        theory.parse_rule_label(label)  # validate before any work
    ranks = [int(r) for r in args.ranks.split(",")] if args.ranks else [int(r) for r in tr.get("ranks", [tr["rank"]])]
    for r in ranks:
        if not 1 <= r <= min(int(spec["n_outputs"]), int(spec["n_hidden"])):
            raise SystemExit(f"rank {r} out of range 1 .. {min(int(spec['n_outputs']), int(spec['n_hidden']))}")
    record_every = args.record_every or max(1, common["steps"] // 200)
    args.out.mkdir(parents=True, exist_ok=True)
    log.info("teacher: %s; ranks %s; rules %s", teacher, ranks, rules)

    paper = spec["teacher"].get("construction", "paper") == "paper"
    teachers = (args.teachers or ("spec,full" if paper and not args.small else "spec")).split(",")
    for which in teachers:
        if which not in TEACHER_LABELS:
            raise SystemExit(f"unknown teacher {which!r}; allowed: {', '.join(TEACHER_LABELS)}")
    variants = {"spec": (spec, teacher)}
    if "full" in teachers:
        full = full_rank_spec(spec)
        variants["full"] = (full, theory.teacher_from_spec(full))
    for which in teachers:
        t0 = time.perf_counter()
        spec_t, teacher_t = variants[which]
        label = teacher_label(spec_t, which)
        log.info("teacher %s: %s", which, label)
        feedback_method = None if args.feedback_method.lower() == "none" else args.feedback_method
        ds = run_figure(spec_t, teacher_t, common, rules, ranks, record_every, feedback_method)
        config = {"spec": spec_t, "rules": rules, "ranks": ranks, "record_every": record_every, "small": args.small,
                  "teacher": label, "per_rule": per_rule_options(spec_t), "feedback_method": feedback_method}
        ds.attrs["teacher"] = label
        ds = io.stamp(ds, config)
        stem = "linear_theory" if which == "spec" else "linear_theory_full_rank"
        io.save(ds, args.out / f"{stem}.nc")
        plot_figure(ds, args.out / f"{stem}.png", teacher=label)
        final = ds.loss.isel(step=-1)
        for r in ranks:
            for rule in rules:
                log.info("[%s] r=%d %-16s loss %.4g -> sim %.4g, theory %.4g (best rank-r loss %.4g)", which, r, rule,
                         float(ds.loss.sel(rank=r, rule=rule, executor="simulation").isel(step=0)),
                         float(final.sel(rank=r, rule=rule, executor="simulation")),
                         float(final.sel(rank=r, rule=rule, executor="gradient_flow")),
                         float(ds.rank_r_loss.sel(rank=r, rule=rule, executor="simulation")))
        log.info("figure (%s teacher) done in %.1f s", which, time.perf_counter() - t0)
    config = {"spec": spec, "rules": rules, "ranks": ranks, "record_every": record_every, "small": args.small,
              "teacher": teacher_label(spec, "spec")}

    if args.sweep:
        t0 = time.perf_counter()
        sweep = run_sweep(teacher, common, int(tr["rank"]), args.small, record_every)
        sweep = io.stamp(sweep, {**config, "sweep": [[n, lab, opt] for n, lab, opt in sweep_settings(args.small)]})
        io.save(sweep, args.out / "linear_theory_sweep.nc")
        plot_sweep(sweep, args.out / "linear_theory_sweep.png")
        log.info("sweep done in %.1f s", time.perf_counter() - t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
