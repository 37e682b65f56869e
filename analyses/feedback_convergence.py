"""Where LDFA's learned feedback ends up after training: Kolen-Pollack convergence of ``Q`` and the angle of ``PQ``
to the truncated SVD of ``W`` (issue 11, case 2).

For each run (``bioplastic.training.train`` with a model spec's recipe) and each converted layer below the output
(``W``: (out, in), ``P``: (out, r), ``Q``: (r, in)) it records, after the last epoch:

- ``kp_angle``: the angle (degrees) between ``Q`` and ``P^T W``, the Kolen-Pollack target of ``Q`` (Kolen & Pollack
  1994; Akrout et al. 2019): 0 when ``Q`` has forgotten its random start;
- ``svd_angle``: the angle between ``PQ`` and ``W_r``, the rank-r truncated SVD of ``W`` (Eckart-Young), which only
  ``normative`` feedback tracks by construction;
- ``subspace_angle``: the largest principal angle between ``span(P)`` and the top-r left singular directions of
  ``W`` (``U_r``).

Angles between matrices are ``arccos(<A, B>_F / (||A|| ||B||))`` (:func:`bioplastic.nn.diagnostics.matrix_angle`).

With ``--per-epoch LABEL`` it follows every run epoch by epoch (``LABEL.nc``, dims ``seed``, ``epoch``, ``layer``)
and separates the reasons why ``Q`` does or does not reach ``P^T W`` (``D = Q - P^T W``; ``a_t`` the factor by which
the weight decay alone shrinks a weight after ``t`` steps: the closed form
:func:`bioplastic.training.kolen_pollack_gap` for SGD, ``prod(1 - lr_t lambda)`` for AdamW's decoupled decay):

- ``gap_ratio = ||D_t|| / ||D_0||`` against ``decay_factor = a_t``: equal under SGD with the same optimiser on
  ``W`` and ``Q`` (the Kolen-Pollack identity ``D_t = a_t D_0``, with ``P`` frozen);
- ``update_angle``: angle between ``Q_t - a_t Q_0`` and ``P^T (W_t - a_t W_0)``, what each side learned: 0 under
  the identity; Adam's per-parameter normalisation makes it non-zero;
- ``w0_angle``: angle between ``P^T (W_t - a_t W_0)`` and ``P^T W_t``: how far from ``P^T W`` even a ``Q`` that
  tracked ``W``'s learned change exactly would be, because ``W`` still holds its random start ``a_t W_0``.

Usage::

    python analyses/feedback_convergence.py --out DIR --modes q_only,oja --decays 0,0.1,1 --rank 3 --seeds 0
    python analyses/feedback_convergence.py --from-compare RUNS   # angles of every LDFA model a compare saved
    python analyses/feedback_convergence.py --out DIR --per-epoch sgd --modes q_only --optimizer sgd --lr 0.05 \
        --weight-decay 0.02 --seeds 0,1,2       # angle vs epoch under one recipe (DIR/sgd.nc)
    python analyses/feedback_convergence.py --summarize DIR     # table of every per-epoch file in DIR
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from bioplastic import io
from bioplastic.data import load_dataset
from bioplastic.nn import feedback_layers
from bioplastic.nn.diagnostics import largest_principal_angle, matrix_angle
from bioplastic.training import TrainConfig, train

log = logging.getLogger("feedback_convergence")


def layer_angles(model: torch.nn.Module) -> dict[str, dict[str, float]]:
    """``kp_angle``, ``svd_angle`` and ``subspace_angle`` (degrees) of every layer-wise LDFA layer of ``model``."""
    out: dict[str, dict[str, float]] = {}
    for name, layer in feedback_layers(model):
        if not layer.rule.low_rank or layer.rule.direct or layer.groups_ != 1:
            continue
        w = layer.weight_matrix().detach().double()
        p = layer.P.detach().double().reshape(w.shape[0], -1)
        q = layer.Q.detach().double().reshape(p.shape[1], -1)
        r = p.shape[1]
        u, s, vh = torch.linalg.svd(w, full_matrices=False)
        w_r = u[:, :r] @ torch.diag(s[:r]) @ vh[:r]
        out[name] = {"kp_angle": matrix_angle(q, p.T @ w), "svd_angle": matrix_angle(p @ q, w_r),
                     "subspace_angle": largest_principal_angle(p, u[:, :r])}
    return out


def _low_rank_matrices(model: torch.nn.Module) -> dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """``{layer: (W, P, Q)}`` (float64 copies, as matrices) of every layer-wise LDFA layer of ``model``."""
    out = {}
    for name, layer in feedback_layers(model):
        if not layer.rule.low_rank or layer.rule.direct or layer.groups_ != 1:
            continue
        w = layer.weight_matrix().detach().double().clone()
        p = layer.P.detach().double().reshape(w.shape[0], -1).clone()
        out[name] = (w, p, layer.Q.detach().double().reshape(p.shape[1], -1).clone())
    return out


class _CaptureModel:
    """Keep the model that ``bioplastic.nn.convert`` returns inside :func:`train`, and its initial LDFA weights
    (the trainer returns only the final model); restores ``convert`` on exit."""

    def __enter__(self):
        import bioplastic.nn as bnn

        self._module, self._orig, self.models, self.start = bnn, bnn.convert, [], {}

        def convert(*args, **kwargs):
            model = self._orig(*args, **kwargs)
            self.models.append(model)
            self.start = _low_rank_matrices(model)
            return model

        bnn.convert = convert
        return self

    def __exit__(self, *exc):
        self._module.convert = self._orig
        return False


def decay_factors(cfg: TrainConfig, n_train: int) -> np.ndarray:
    """``a_t`` (t = 0 .. T) of the forward weights: the SGD closed form, or AdamW's ``prod(1 - lr_t lambda)``;
    NaN for Adam (coupled decay inside the normalisation: no closed form)."""
    from bioplastic.training import kolen_pollack_gap, step_learning_rates

    lrs = step_learning_rates(cfg, n_train)
    if cfg.optimizer == "sgd":
        return kolen_pollack_gap(lrs, cfg.weight_decay, momentum=cfg.momentum)
    if cfg.optimizer == "adamw":
        return np.concatenate([[1.0], np.cumprod(1.0 - lrs * cfg.weight_decay)])
    return np.full(lrs.size + 1, np.nan)


def per_epoch(cfg: TrainConfig, dataset) -> tuple[list[dict], list[float]]:
    """Train one run; after every epoch record the angles of each layer-wise LDFA layer (module docstring)."""
    n_train = min(len(dataset.y_train), cfg.max_train or len(dataset.y_train))
    spe = -(-n_train // cfg.batch_size)
    a = decay_factors(cfg, n_train)
    rows: list[dict] = []
    with _CaptureModel() as cap:
        def snapshot(epoch: int, record: dict) -> None:
            at = float(a[epoch * spe])
            for name, (w, p, q) in _low_rank_matrices(cap.models[-1]).items():
                w0, p0, q0 = cap.start[name]
                d, d0 = q - p.T @ w, q0 - p0.T @ w0
                rows.append({"epoch": epoch, "layer": name, "test_accuracy": record["test_accuracy"],
                             "kp_angle": matrix_angle(q, p.T @ w),
                             "gap_ratio": float(d.norm() / d0.norm()), "decay_factor": at,
                             "update_angle": matrix_angle(q - at * q0, p.T @ (w - at * w0)),
                             "w0_angle": matrix_angle(p.T @ (w - at * w0), p.T @ w),
                             "q_norm_ratio": float(q.norm() / (p.T @ w).norm())})

        res = train(cfg, dataset, progress=False, callbacks=[snapshot])
    return rows, [float(v) for v in res.test_accuracy]


def from_compare(folder: Path) -> list[dict]:
    """Angles of every finished LDFA run of a ``bioplastic compare`` folder (its saved models)."""
    from bioplastic import io as bio
    from bioplastic.training.store import load_model

    res = bio.load(folder / "results.nc")
    rows = []
    for label in res.rule.values:
        fl = str(res.feedback_learning.sel(rule=label).values)
        if not fl:
            continue
        for rank in res["rank"].values:
            for seed in res.seed.values:
                if str(res.status.sel(rule=label, rank=rank, seed=seed).values) != "ok":
                    continue
                model = load_model(folder, str(label), int(rank), int(seed))
                for layer, a in layer_angles(model).items():
                    rows.append({"mode": fl, "rank": int(rank), "seed": int(seed), "layer": layer, **a})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--from-compare", type=Path, default=None,
                        help="a bioplastic compare output folder: print the angles of its saved LDFA models")
    parser.add_argument("--model", default="mlp_mnist")
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--modes", default="q_only,oja")
    parser.add_argument("--decays", default="default", help="comma-separated feedback weight decays, or 'default'")
    parser.add_argument("--rank", type=int, default=3)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--per-epoch", default=None, metavar="LABEL",
                        help="follow each run epoch by epoch; write DIR/LABEL.nc (modes may include 'bp' and 'fixed')")
    parser.add_argument("--summarize", type=Path, default=None, help="print the table of every per-epoch file in DIR")
    parser.add_argument("--layer", default="fc2", help="layer summarized by --summarize")
    for flag, kind in (("--optimizer", str), ("--lr", float), ("--weight-decay", float), ("--momentum", float),
                       ("--feedback-optimizer", str), ("--feedback-lr", float), ("--feedback-weight-decay", float),
                       ("--max-train", int)):
        parser.add_argument(flag, type=kind, default=None, help="recipe override (default: the spec's)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    if args.from_compare is not None:
        rows = from_compare(args.from_compare)
        modes = sorted({r["mode"] for r in rows}, key=["fixed", "q_only", "normative", "local", "oja"].index)
        print("mode       rank layer  Q vs P^T W    PQ vs W_r     span(P) vs U_r   (degrees, mean +- s.d. over seeds)")
        for mode in modes:
            for rank in sorted({r["rank"] for r in rows}):
                for layer in sorted({r["layer"] for r in rows}, key=[r["layer"] for r in rows].index):
                    sel = [r for r in rows if (r["mode"], r["rank"], r["layer"]) == (mode, rank, layer)]
                    if not sel:
                        continue
                    cells = []
                    for key in ("kp_angle", "svd_angle", "subspace_angle"):
                        v = np.array([r[key] for r in sel])
                        cells.append(f"{v.mean():5.1f} +- {v.std(ddof=1) if len(v) > 1 else 0:4.1f}")
                    print(f"{mode:10s} {rank:4d} {layer:5s}  " + "   ".join(cells) + f"   (n={len(sel)})")
        return 0
    if args.summarize is not None:
        return summarize(args.summarize, args.layer)
    if args.out is None:
        parser.error("--out is required (unless --from-compare or --summarize)")
    dataset = load_dataset(args.dataset)
    if args.per_epoch is not None:
        return run_per_epoch(args, dataset)
    decays = [None] if args.decays == "default" else [float(d) for d in args.decays.split(",")]
    rows = []
    for mode in args.modes.split(","):
        for decay in decays:
            for seed in [int(s) for s in args.seeds.split(",")]:
                t0 = time.perf_counter()
                cfg = TrainConfig(model=args.model, rule="ldfa", seed=seed, epochs=args.epochs, alignment=False,
                                  rule_options={"rank": args.rank, "feedback_learning": mode},
                                  feedback_weight_decay=decay)
                res = train(cfg, dataset, progress=False)
                angles = layer_angles(res.model)
                acc = float(res.test_accuracy[-1])
                rule = cfg.make_rule()
                wd = rule.feedback_weight_decay if decay is None else decay
                for layer, a in angles.items():
                    rows.append({"mode": mode, "feedback_weight_decay": wd, "seed": seed, "layer": layer,
                                 "test_accuracy": acc, **a})
                log.info("%s decay=%s seed=%d acc=%.4f %s (%.0f s)", mode, wd, seed, acc,
                         json.dumps({k: {n: round(v, 1) for n, v in a.items()} for k, a in angles.items()}),
                         time.perf_counter() - t0)
    args.out.mkdir(parents=True, exist_ok=True)
    keys = ["mode", "feedback_weight_decay", "seed", "layer"]
    frame = {k: [r[k] for r in rows] for k in rows[0]}
    ds = xr.Dataset({k: ("run", np.asarray(frame[k])) for k in frame if k not in keys},
                    coords={k: ("run", np.asarray(frame[k])) for k in keys})
    ds = io.stamp(ds, {"args": vars(args) | {"out": str(args.out)}})
    io.save(ds, args.out / "feedback_convergence.nc")
    for r in rows:
        print(f"{r['mode']:8s} decay={r['feedback_weight_decay']:<6g} seed={r['seed']} {r['layer']:10s} "
              f"acc={r['test_accuracy']:.4f} kp={r['kp_angle']:.1f} svd={r['svd_angle']:.1f} "
              f"sub={r['subspace_angle']:.1f}")
    return 0


def run_per_epoch(args: argparse.Namespace, dataset) -> int:
    """``--per-epoch``: every mode x seed under one recipe, recorded after every epoch, saved as one file."""
    recipe = {k: getattr(args, k) for k in ("optimizer", "lr", "weight_decay", "momentum", "feedback_optimizer",
                                             "feedback_lr", "feedback_weight_decay", "max_train")
              if getattr(args, k) is not None}
    modes, seeds = args.modes.split(","), [int(s) for s in args.seeds.split(",")]
    parts = []
    for mode in modes:
        for seed in seeds:
            t0 = time.perf_counter()
            rule = "bp" if mode == "bp" else "ldfa"
            options = {} if mode == "bp" else {"rank": args.rank, "feedback_learning": mode}
            cfg = TrainConfig(model=args.model, rule=rule, seed=seed, epochs=args.epochs, alignment=False,
                              device="cpu", rule_options=options, **recipe)
            rows, acc = per_epoch(cfg, dataset)
            epochs = np.arange(1, cfg.epochs + 1)
            layers = sorted({r["layer"] for r in rows}, key=[r["layer"] for r in rows].index) or ["none"]
            data = {"test_accuracy": (("epoch",), np.asarray(acc))}
            for key in ("kp_angle", "gap_ratio", "decay_factor", "update_angle", "w0_angle", "q_norm_ratio"):
                grid = np.full((cfg.epochs, len(layers)), np.nan)
                for r in rows:
                    grid[r["epoch"] - 1, layers.index(r["layer"])] = r[key]
                data[key] = (("epoch", "layer"), grid)
            ds = xr.Dataset(data, coords={"epoch": epochs, "layer": layers})
            parts.append((mode, ds.expand_dims(seed=[seed])))
            last = {r["layer"]: r for r in rows if r["epoch"] == cfg.epochs}
            log.info("%s %s seed %d: acc %.4f; %s (%.0f s)", args.per_epoch, mode, seed, acc[-1],
                     "; ".join(f"{k}: kp {v['kp_angle']:.1f} gap {v['gap_ratio']:.4f} (a_T {v['decay_factor']:.4f}) "
                               f"upd {v['update_angle']:.1f} w0 {v['w0_angle']:.1f}" for k, v in last.items()),
                     time.perf_counter() - t0)
    per_mode = [xr.concat([d for m, d in parts if m == mode], dim="seed").expand_dims(mode=[mode]) for mode in modes]
    out = xr.concat(per_mode, dim="mode", join="outer")
    resolved = TrainConfig(model=args.model, rule="bp", epochs=args.epochs, **recipe).to_dict()
    out = io.stamp(out, {"args": vars(args) | {"out": str(args.out), "summarize": None},
                         "label": args.per_epoch, "recipe": {k: resolved[k] for k in (
                             "optimizer", "lr", "weight_decay", "momentum", "feedback_optimizer", "feedback_lr",
                             "feedback_weight_decay", "epochs", "batch_size", "schedule", "warmup_epochs",
                             "max_train")}})
    args.out.mkdir(parents=True, exist_ok=True)
    io.save(out, args.out / f"{args.per_epoch}.nc")
    return 0


def summarize(folder: Path, layer: str = "fc2") -> int:
    """Print, for every per-epoch file in ``folder``, final values (mean +- s.d. over seeds) and the angle per epoch."""
    for path in sorted(folder.glob("*.nc")):
        ds = io.load(path)
        rec = io.config_of(ds).get("recipe", {})
        print(f"== {path.stem}: {rec}")
        for mode in ds.mode.values:
            sel = ds.sel(mode=mode)
            n = sel.sizes["seed"]
            acc = sel.test_accuracy.isel(epoch=-1)
            line = f"{str(mode):8s} n={n} acc {float(acc.mean()):.4f} +- {float(acc.std(ddof=1)) if n > 1 else 0:.4f}"
            if layer in sel.layer.values and np.isfinite(sel.kp_angle.sel(layer=layer)).any():
                fin = sel.sel(layer=layer).isel(epoch=-1)
                for key in ("kp_angle", "gap_ratio", "decay_factor", "update_angle", "w0_angle", "q_norm_ratio"):
                    v = fin[key]
                    line += f" | {key} {float(v.mean()):.4g} +- {float(v.std(ddof=1)) if n > 1 else 0:.2g}"
                traj = sel.kp_angle.sel(layer=layer).mean("seed").values
                line += "\n    kp_angle per epoch (mean over seeds): " + " ".join(f"{v:.1f}" for v in traj)
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
