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

Usage::

    python analyses/feedback_convergence.py --out DIR --modes q_only,oja --decays 0,0.1,1 --rank 3 --seeds 0
    python analyses/feedback_convergence.py --from-compare RUNS   # angles of every LDFA model a compare saved
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
    if args.out is None:
        parser.error("--out is required (unless --from-compare)")
    dataset = load_dataset(args.dataset)
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


if __name__ == "__main__":
    sys.exit(main())
