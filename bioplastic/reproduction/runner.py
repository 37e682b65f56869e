"""``reproduce``: run the claims at a budget, resumably, and write ``claims.nc`` and ``report.html``."""
from __future__ import annotations

import json
import logging
import math
import os
import shlex
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from bioplastic import io
from bioplastic._checks import check_device
from bioplastic.reproduction.claims import CLAIMS, Claim, claim_ids
from bioplastic.reproduction.experiments import BUDGETS, EXPERIMENTS, Context, NotAvailable, find_data
from bioplastic.reproduction.verdict import summarize, verdict

__all__ = ["reproduce", "CLAIMS_FILE", "REPORT_FILE", "claim_path", "command_for", "select_claims"]

log = logging.getLogger(__name__)

CLAIMS_FILE = "claims.nc"
REPORT_FILE = "report.html"
STATS = {"experiments_run": 0}
"""Counters of this process (``experiments_run``: experiments actually executed, not loaded); the tests read it
to check that a rerun trains nothing."""


def claim_path(out: str | os.PathLike, claim_id: str) -> Path:
    """Where a claim's measured values are kept: ``out/claims/<id>.nc``."""
    return Path(out) / "claims" / f"{claim_id}.nc"


def select_claims(claims: Sequence[str] | str | None) -> list[Claim]:
    """The claims named (comma-separated string or sequence; None: all), in registry order.

    Raises
    ------
    ValueError
        An unknown or repeated id (the message lists the valid ones), or an empty selection.
    """
    if claims is None:
        return list(CLAIMS)
    names = [c.strip() for c in claims.split(",")] if isinstance(claims, str) else [str(c).strip() for c in claims]
    names = [n for n in names if n]
    valid = claim_ids()
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise ValueError(f"unknown claim id{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                         f"valid: {', '.join(valid)}")
    if not names:
        raise ValueError(f"no claims selected; valid: {', '.join(valid)}")
    if len(set(names)) != len(names):
        raise ValueError(f"claims: repeated ids in {names}")
    return [c for c in CLAIMS if c.id in names]


def _check_budget(budget: str) -> str:
    if budget not in BUDGETS:
        raise ValueError(f"unknown budget {budget!r}; valid: {', '.join(BUDGETS)}")
    return budget


def _seeds(seeds: Sequence[int] | str | int | None) -> list[int] | None:
    if seeds is None:
        return None
    if isinstance(seeds, str):
        parts = [p.strip() for p in seeds.split(",") if p.strip()]
    elif isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        parts = [seeds]
    else:
        parts = list(seeds)
    out = []
    for p in parts:
        try:
            v = int(p)
        except (TypeError, ValueError):
            raise ValueError(f"seeds: cannot read {p!r} as an integer") from None
        if isinstance(p, bool) or v < 0 or (isinstance(p, float) and not float(p).is_integer()):
            raise ValueError(f"seeds must be integers >= 0, got {p!r}")
        out.append(v)
    if not out:
        raise ValueError("seeds is empty; give at least one seed")
    if len(set(out)) != len(out):
        raise ValueError(f"seeds: repeated values in {out}")
    return out


def command_for(claim_id: str, budget: str, out: str | os.PathLike, *, seeds: Sequence[int] | None = None,
                data_path: str | os.PathLike | None = None, device: str | None = None) -> str:
    """The command that reruns one claim alone (resuming from ``out``)."""
    parts = ["bioplastic", "reproduce", "--budget", budget, "--out", str(out), "--claims", claim_id]
    if seeds is not None:
        parts += ["--seeds", ",".join(map(str, seeds))]
    if data_path is not None:
        parts += ["--data-path", str(data_path)]
    if device not in (None, "auto"):
        parts += ["--device", str(device)]
    return " ".join(shlex.quote(p) for p in parts)


def _settings_key(claim: Claim, budget: str, settings: dict) -> str:
    return json.dumps({"claim": claim.id, "budget": budget, "experiment": claim.experiment, "settings": settings},
                      sort_keys=True)


def _measured_to_array(values: Any, settings: dict) -> tuple[np.ndarray, np.ndarray]:
    """(values, seeds) from a measure's output (a DataArray over ``seed`` or a 1-D array)."""
    if isinstance(values, xr.DataArray):
        extra = [d for d in values.dims if d != "seed"]
        if extra:
            raise ValueError(f"a claim's measure must return values over 'seed' only, got dims {values.dims}")
        if "seed" in values.dims:
            return values.values.astype(float), values["seed"].values.astype(np.int64)
        values = values.values
    arr = np.atleast_1d(np.asarray(values, dtype=float)).ravel()
    seeds = settings.get("seeds")
    seed_arr = np.asarray(seeds, dtype=np.int64) if seeds is not None and len(seeds) == arr.size else \
        np.arange(arr.size, dtype=np.int64)
    return arr, seed_arr


def reproduce(budget: str = "smoke", out: str | os.PathLike = "reproduction", claims: Sequence[str] | str | None = None,
              *, seeds: Sequence[int] | str | None = None, device: str = "auto",
              data_path: str | os.PathLike | None = None, progress: bool = False,
              report: bool = True, run: bool = True, not_run_reason: str | None = None) -> xr.Dataset:
    """Check the claims of Hanut & Kadmon (2025, arXiv:2502.20580) at a compute budget; return the verdicts.

    Each claim (:data:`bioplastic.reproduction.claims.CLAIMS`) runs its experiment through the package's own
    machinery (:func:`bioplastic.compare`, :func:`bioplastic.theory.simulate`, the analyses' functions),
    measures one quantity per seed and gets a verdict from its criterion, which is fixed in code
    (:func:`bioplastic.reproduction.verdict.verdict`). Resumable: a claim's measured values are saved in
    ``out/claims/<id>.nc`` and a rerun with the same budget and settings loads them instead of running anything;
    experiments keep their own state under ``out/experiments/<budget>/<name>`` (a stopped comparison resumes
    where it stopped). A claim whose data or analysis is missing, or whose experiment fails, is reported
    ``not run at this budget`` with the reason, and the other claims still run.

    Parameters
    ----------
    budget : {"smoke", "cpu", "gpu"}
        ``smoke``: tiny sizes that test the plumbing (minutes; its verdicts mean nothing); ``cpu``:
        what 2 CPU cores do in a few hours; ``gpu``: the paper's recipes where the package has them.
    out : path-like
        Output folder: ``claims.nc``, ``report.html``, ``claims/``, ``experiments/``, ``figures/``.
    claims : sequence of str or comma-separated str, optional
        Claim ids (default: all). ``claims.nc`` holds every claim already measured in ``out`` at this budget
        besides the ones run now.
    seeds : sequence of int or comma-separated str, optional
        Seeds for every seeded experiment, replacing the budget's (at least 3 for a spread worth having).
    device : str
        Torch device of the training runs (``"auto"``: CUDA where available).
    data_path : path-like, optional
        The shared data folder (``cifar10/``, ``kriegeskorte2008/``) or a CIFAR-10 folder; default
        ``$BIOPLASTIC_SHARED_DATA``. Without it the CIFAR-10 and IT claims are not run.
    progress : bool
        Progress bars of the training runs.
    report : bool
        Write ``out/report.html`` (and the figures it embeds).
    run : bool
        False: run nothing; report the claims measured in ``out`` so far and every other selected claim as
        ``not run at this budget`` with ``not_run_reason`` (e.g. a report written while a long run goes on).
    not_run_reason : str, optional
        Why the claims not measured yet are not (with ``run=False``); default "not measured in this folder yet".

    Returns
    -------
    xarray.Dataset
        Dim ``claim`` (string ids); variables ``statement``, ``quantity``, ``criterion``, ``published``,
        ``published_source``, ``seed_mean`` (the mean over seeds; not ``mean``, which is ``Dataset.mean``),
        ``sd`` (ddof 1), ``n`` (seeds), ``ci_low`` / ``ci_high`` (95 % interval of the mean), ``budget``,
        ``verdict``, ``reason``, ``command``; dims ``claim`` x ``seed`` ``value`` (the per-seed measurements,
        NaN where absent). Saved as ``out/claims.nc``.

    Raises
    ------
    ValueError
        Unknown budget or claim id (the message lists the valid ones), bad seeds, or ``out`` holding a claim
        measured with other settings at this budget (delete that file or use another folder).
    FileNotFoundError
        ``data_path`` given but absent.
    """
    budget = _check_budget(budget)
    selected = select_claims(claims)
    seed_list = _seeds(seeds)
    device = check_device(str(device), resolve_auto=False)
    data_root, cifar10 = find_data(data_path)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out {out} exists and is not a folder")

    # refuse before running anything if a saved claim conflicts with the requested settings
    plans: dict[str, Any] = {}
    for claim in selected:
        exp = EXPERIMENTS[claim.experiment]
        settings = exp.settings_for(budget, seed_list)
        plans[claim.id] = settings
        path = claim_path(out, claim.id)
        if path.exists() and not isinstance(settings, str):
            saved = io.load(path)
            if saved.attrs.get("settings_key") != _settings_key(claim, budget, settings):
                raise ValueError(f"{path} was measured with other settings (budget "
                                 f"{saved.attrs.get('budget')!r}, {saved.attrs.get('settings_key')}) than "
                                 f"requested now (budget {budget!r}, {json.dumps(settings, sort_keys=True)}); "
                                 f"use another out folder or delete that file to measure the claim again")
    out.mkdir(parents=True, exist_ok=True)

    results: dict[str, xr.Dataset] = {}
    failures: dict[str, str] = {}
    rows: list[dict[str, Any]] = []
    for claim in selected:
        exp = EXPERIMENTS[claim.experiment]
        settings = plans[claim.id]
        row: dict[str, Any] = {"claim": claim, "values": np.array([]), "seeds": np.array([], dtype=np.int64),
                               "reason": "", "settings": settings}
        rows.append(row)
        if isinstance(settings, str):
            row["reason"] = f"not run at budget {budget!r}: {settings}"
            continue
        path = claim_path(out, claim.id)
        if path.exists():  # made with these settings (checked above): nothing to run
            saved = io.load(path)
            row["values"], row["seeds"] = saved["value"].values, saved["seed"].values
            log.info("%s: measured before (%s), not rerun", claim.id, path)
            continue
        ctx = Context(out=out / "experiments" / budget / exp.name, budget=budget, device=device,
                      data_root=data_root, cifar10=cifar10, progress=progress)
        missing = exp.missing(ctx)
        if missing:
            row["reason"] = f"not run: {missing}"
            continue
        if not run:
            row["reason"] = f"not run: {not_run_reason or 'not measured in this folder yet'}"
            continue
        if exp.name not in results and exp.name not in failures:
            try:
                results[exp.name] = _experiment_result(exp, ctx, settings)
            except NotAvailable as exc:
                failures[exp.name] = f"not run: {exc}"
            except Exception as exc:  # one failing experiment must not stop the others; the report says why
                log.exception("experiment %s failed", exp.name)
                failures[exp.name] = f"not run: experiment {exp.name} failed: {type(exc).__name__}: {exc}"
        if exp.name in failures:
            row["reason"] = failures[exp.name]
            continue
        try:
            values, seed_arr = _measured_to_array(claim.measure(results[exp.name], ctx), settings)
        except NotAvailable as exc:
            row["reason"] = f"not run: {exc}"
            continue
        except Exception as exc:  # a claim whose measure fails does not take its experiment's other claims along
            log.exception("measuring %s failed", claim.id)
            row["reason"] = f"not run: measuring {claim.id} failed: {type(exc).__name__}: {exc}"
            continue
        row["values"], row["seeds"] = values, seed_arr
        saved = xr.Dataset({"value": (("seed",), values)}, coords={"seed": seed_arr},
                           attrs={"claim": claim.id, "budget": budget, "experiment": exp.name,
                                  "settings_key": _settings_key(claim, budget, settings)})
        io.save(io.stamp(saved, {"settings": settings}), path)

    # claims measured earlier in this folder at this budget but not selected now stay in the table
    chosen = {c.id for c in selected}
    for claim in CLAIMS:
        path = claim_path(out, claim.id)
        if claim.id not in chosen and path.exists():
            saved = io.load(path)
            if saved.attrs.get("budget") == budget:
                rows.append({"claim": claim, "values": saved["value"].values, "seeds": saved["seed"].values,
                             "reason": "", "settings": json.loads(saved.attrs["settings_key"])["settings"]})
    order = {c.id: i for i, c in enumerate(CLAIMS)}
    rows.sort(key=lambda r: order[r["claim"].id])
    ds = _assemble(rows, budget, out, seed_list, data_path, device)
    io.save(io.stamp(ds, {"budget": budget, "claims": [r["claim"].id for r in rows], "seeds": seed_list,
                          "device": device, "data_path": None if data_path is None else str(data_path)}),
            out / CLAIMS_FILE)
    if report:
        from bioplastic.reproduction.report import write_html

        write_html(ds, out)
    return ds


def _experiment_result(exp, ctx: Context, settings: dict) -> xr.Dataset:
    """Load ``ctx.out/result.nc`` if it was made with ``settings``, else run the experiment and save it."""
    path = ctx.out / "result.nc"
    key = json.dumps(settings, sort_keys=True)
    if path.exists():
        ds = io.load(path)
        if ds.attrs.get("reproduce_settings") == key:
            return ds
    t0 = time.perf_counter()
    log.info("running experiment %s at budget %s", exp.name, ctx.budget)
    ds = exp.run(ctx, settings)
    STATS["experiments_run"] += 1
    ds = ds.copy()
    ds.attrs["reproduce_settings"] = key
    ds.attrs["reproduce_seconds"] = float(time.perf_counter() - t0)
    io.save(ds, path)
    if exp.plot is not None:
        try:
            exp.plot(ds, ctx.out / "figure.png")
        except Exception:  # a figure must not lose a result
            log.exception("figure of experiment %s failed", exp.name)
    return io.load(path)


def _assemble(rows: list[dict], budget: str, out: Path, seeds: list[int] | None, data_path, device: str) -> xr.Dataset:
    all_seeds = sorted({int(s) for r in rows for s in np.atleast_1d(r["seeds"])})
    n_claims = len(rows)
    value = np.full((n_claims, len(all_seeds)), np.nan)
    fields: dict[str, list] = {k: [] for k in ("statement", "quantity", "criterion", "published", "published_source",
                                               "seed_mean", "sd", "n", "ci_low", "ci_high", "budget", "verdict", "reason",
                                               "command", "experiment")}
    for i, r in enumerate(rows):
        claim: Claim = r["claim"]
        vals = np.asarray(r["values"], dtype=float)
        for s, v in zip(np.atleast_1d(r["seeds"]), vals):
            value[i, all_seeds.index(int(s))] = v
        mean, sd, n = summarize(vals)
        if n == 0:
            v_text, reason = "not run at this budget", r["reason"] or "nothing was measured"
        else:
            v_text, reason = verdict(claim.criterion, vals, deterministic=claim.deterministic)
        lo = hi = math.nan
        if n >= 2 and np.all(np.isfinite(vals)) and not claim.deterministic:
            from bioplastic.reproduction.verdict import confidence_interval

            lo, hi = confidence_interval(vals)
        elif n >= 1 and claim.deterministic:
            lo = hi = mean
        fields["statement"].append(claim.statement)
        fields["quantity"].append(claim.quantity)
        fields["criterion"].append(claim.criterion.describe(claim.quantity))
        fields["published"].append(float(claim.published))
        fields["published_source"].append(claim.published_source)
        fields["seed_mean"].append(mean)
        fields["sd"].append(sd)
        fields["n"].append(n)
        fields["ci_low"].append(lo)
        fields["ci_high"].append(hi)
        fields["budget"].append(budget)
        fields["verdict"].append(v_text)
        fields["reason"].append(reason)
        fields["command"].append(command_for(claim.id, budget, out, seeds=seeds, data_path=data_path, device=device))
        fields["experiment"].append(claim.experiment)
    data = {}
    for k, v in fields.items():
        if k in ("published", "seed_mean", "sd", "ci_low", "ci_high"):
            data[k] = (("claim",), np.asarray(v, dtype=float))
        elif k == "n":
            data[k] = (("claim",), np.asarray(v, dtype=np.int64))
        else:
            data[k] = (("claim",), np.asarray(v, dtype=str))
    data["value"] = (("claim", "seed"), value, {"long_name": "measured quantity per seed (NaN: not measured)"})
    data["sd"] = (data["sd"][0], data["sd"][1], {"long_name": "sample standard deviation over seeds (ddof 1)"})
    data["n"] = (data["n"][0], data["n"][1], {"long_name": "number of seeds measured"})
    ds = xr.Dataset(data, coords={"claim": np.asarray([r["claim"].id for r in rows], dtype=str),
                                  "seed": np.asarray(all_seeds, dtype=np.int64)},
                    attrs={"title": "bioplastic reproduce: claims of Hanut & Kadmon (2025, arXiv:2502.20580)",
                           "budget": budget, "out": str(out),
                           "created": time.strftime("%Y-%m-%d %H:%M:%S %Z")})
    return ds
