"""The reproduction report: one self-contained HTML page, and its Markdown twin with PNG files.

Both have a summary table of verdicts at the top and one section per claim: statement, criterion, the figure
of the measured values (each seed, the 95 % interval of the mean, the threshold and the published value), the
experiment's own figure, our numbers beside the paper's, and the exact command to rerun the claim alone.
"""
from __future__ import annotations

import base64
import html
import logging
import math
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from bioplastic import io

__all__ = ["write_html", "write_markdown", "plot_claim", "provenance"]

log = logging.getLogger(__name__)

_SMOKE_NOTE = ("Smoke budget: tiny sizes that test the plumbing; the networks are barely trained and these "
               "verdicts say nothing about the paper.")
_COLORS = {"reproduced": "#1a7f37", "not reproduced": "#cf222e", "partly": "#9a6700",
           "not run at this budget": "#57606a"}


def _fmt(x: float, digits: int = 3) -> str:
    return "–" if x is None or not math.isfinite(float(x)) else f"{float(x):.{digits}g}"


def _measured(ds: xr.Dataset, i: int) -> str:
    n = int(ds["n"].values[i])
    if n == 0:
        return "–"
    mean, sd = float(ds["seed_mean"].values[i]), float(ds["sd"].values[i])
    from bioplastic.reproduction.claims import CLAIMS

    if any(c.id == str(ds["claim"].values[i]) and c.deterministic for c in CLAIMS):
        return f"{_fmt(mean)} (seed-independent)"
    return f"{_fmt(mean)} ± {_fmt(sd)} (n={n})" if n > 1 else f"{_fmt(mean)} (n=1)"


def provenance() -> dict[str, str]:
    """Date, package version, git commit (where the package is a checkout), machine and torch of this run."""
    import torch

    from bioplastic import __version__

    commit = "unknown"
    try:
        root = Path(__file__).resolve().parents[2]
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        pass
    return {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "bioplastic": __version__, "commit": commit,
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}",
            "python": platform.python_version(), "torch": torch.__version__,
            "torch threads": str(torch.get_num_threads()),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"}


def plot_claim(ds: xr.Dataset, claim_id: str, path: str | os.PathLike) -> Path | None:
    """Figure of one claim's measured values: each seed, the mean with its 95 % interval, the criterion's
    threshold (dashed) and the published value (star). Returns None where nothing was measured."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bioplastic.reproduction.claims import CLAIMS

    c = ds.sel(claim=claim_id)
    if int(c["n"]) == 0:
        return None
    claim = next(cl for cl in CLAIMS if cl.id == claim_id)
    values = c["value"].values
    finite = np.isfinite(values)
    fig, ax = plt.subplots(figsize=(4.6, 1.9))
    ax.plot(values[finite], np.zeros(finite.sum()), "o", color="0.35", alpha=0.8, label="seeds")
    mean, lo, hi = float(c["seed_mean"]), float(c["ci_low"]), float(c["ci_high"])
    if math.isfinite(lo) and math.isfinite(hi):
        ax.errorbar([mean], [0.3], xerr=[[mean - lo], [hi - mean]], fmt="s", color="k", capsize=4,
                    label="mean, 95 % interval")
    elif math.isfinite(mean):
        ax.plot([mean], [0.3], "s", color="k", label="mean")
    thr = claim.criterion.threshold
    ax.axvline(thr, color=_COLORS.get(str(c["verdict"].values), "k"), ls="--", lw=1.2,
               label=f"criterion {claim.criterion.symbol} {thr:g}")
    if math.isfinite(float(c["published"])):
        ax.plot([float(c["published"])], [-0.3], "*", color="tab:orange", ms=11, label="published")
    ax.set_ylim(-0.7, 0.7)
    ax.set_yticks([])
    unit = f" ({claim.criterion.unit})" if claim.criterion.unit else ""
    ax.set_xlabel(f"measured{unit}", fontsize=8)
    ax.set_title(f"{claim_id}: {c['verdict'].values}", fontsize=9)
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    out = io.atomic_write(Path(path), lambda tmp: fig.savefig(tmp, dpi=90))
    plt.close(fig)
    return out


def _experiment_files(ds: xr.Dataset, out: Path, claim_id: str) -> tuple[Path | None, list[dict] | None]:
    """(the experiment's figure, its table rows) of a claim, where they exist."""
    from bioplastic.reproduction.experiments import EXPERIMENTS

    exp = EXPERIMENTS[str(ds["experiment"].sel(claim=claim_id).values)]
    folder = out / "experiments" / str(ds.attrs.get("budget", "")) / exp.name
    figure = folder / "figure.png"
    rows = None
    if exp.table is not None and (folder / "result.nc").exists():
        try:
            rows = exp.table(io.load(folder / "result.nc"))
        except Exception:  # a table must not stop the report
            log.exception("table of experiment %s failed", exp.name)
    return (figure if figure.exists() else None), rows


def _cell(v: Any) -> str:
    if isinstance(v, (float, np.floating)):
        return _fmt(float(v), 4)
    return str(v)


def _claim_sections(ds: xr.Dataset, out: Path, figures: Path) -> list[dict[str, Any]]:
    sections = []
    for i, cid in enumerate(ds["claim"].values):
        cid = str(cid)
        fig = plot_claim(ds, cid, figures / f"{cid}.png")
        exp_fig, rows = _experiment_files(ds, out, cid)
        sections.append({"id": cid, "i": i, "figure": fig, "experiment_figure": exp_fig, "rows": rows})
    return sections


def _summary_rows(ds: xr.Dataset) -> list[list[str]]:
    rows = []
    for i, cid in enumerate(ds["claim"].values):
        from bioplastic.reproduction.claims import CLAIMS

        claim = next(cl for cl in CLAIMS if cl.id == str(cid))
        rows.append([str(cid), str(ds["verdict"].values[i]), _measured(ds, i), _fmt(float(ds["published"].values[i])),
                     f"{claim.criterion.symbol} {claim.criterion.threshold:g} {claim.criterion.unit}".strip()])
    return rows


def _png_data(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def write_html(ds: xr.Dataset, out: str | os.PathLike) -> Path:
    """Write ``out/report.html`` (figures embedded as base64 PNG) from a claims Dataset of
    :func:`bioplastic.reproduce`. Figures are also kept in ``out/figures``."""
    out = Path(out)
    sections = _claim_sections(ds, out, out / "figures")
    e = html.escape
    prov = provenance()
    counts = {v: int(np.sum(ds["verdict"].values == v)) for v in _COLORS}
    parts = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
             "<title>bioplastic reproduce: Hanut &amp; Kadmon (2025)</title><style>",
             "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.4}",
             "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #d0d7de;padding:3px 8px;"
             "font-size:.92em;text-align:left}th{background:#f6f8fa}code,pre{background:#f6f8fa;padding:2px 4px}"
             "pre{padding:.6em;overflow-x:auto}.v{font-weight:600}section{border-top:1px solid #d0d7de;"
             "margin-top:1.5em}img{max-width:100%}",
             "</style></head><body>",
             f"<h1>Reproduction of Hanut &amp; Kadmon (2025, arXiv:2502.20580), budget <code>{e(str(ds.attrs.get('budget')))}</code></h1>",
             "<p>" + "; ".join(f"{e(k)}: {e(v)}" for k, v in prov.items()) + "</p>",
             f"<p><b>{e(_SMOKE_NOTE)}</b></p>" if ds.attrs.get("budget") == "smoke" else "",
             "<p>Verdicts follow from each claim's criterion (fixed in <code>bioplastic/reproduction/claims.py</code> "
             "before running) and the measured numbers only: <b>reproduced</b> where the 95 % confidence interval "
             "of the seed mean lies on the criterion's side of the threshold, <b>not reproduced</b> where it lies "
             "on the other side (or a run diverged), <b>partly</b> where it contains the threshold or only one seed "
             "was run, <b>not run at this budget</b> where nothing was measured (the reason says why).</p>",
             "<p>" + ", ".join(f"<span class='v' style='color:{_COLORS[k]}'>{e(k)}</span>: {n}"
                               for k, n in counts.items()) + "</p>",
             "<h2>Summary</h2><table><tr><th>claim</th><th>verdict</th><th>measured (mean ± s.d., n seeds)</th>"
             "<th>published</th><th>criterion</th></tr>"]
    for row in _summary_rows(ds):
        parts.append(f"<tr><td><a href='#{e(row[0])}'>{e(row[0])}</a></td><td class='v' style='color:"
                     f"{_COLORS.get(row[1], 'black')}'>{e(row[1])}</td><td>{e(row[2])}</td><td>{e(row[3])}</td>"
                     f"<td>{e(row[4])}</td></tr>")
    parts.append("</table>")
    for s in sections:
        i = s["i"]
        v = str(ds["verdict"].values[i])
        parts += [f"<section id='{e(s['id'])}'><h2>{e(s['id'])}: <span style='color:{_COLORS.get(v, 'black')}'>"
                  f"{e(v)}</span></h2>",
                  f"<p><b>Statement.</b> {e(str(ds['statement'].values[i]))}</p>",
                  f"<p><b>Criterion.</b> {e(str(ds['criterion'].values[i]))}</p>",
                  f"<p><b>Verdict.</b> {e(v)}: {e(str(ds['reason'].values[i]))}</p>",
                  "<table><tr><th></th><th>ours</th><th>published</th></tr>"
                  f"<tr><td>{e(str(ds['quantity'].values[i]))}</td><td>{e(_measured(ds, i))}</td>"
                  f"<td>{e(_fmt(float(ds['published'].values[i])))}</td></tr></table>",
                  f"<p><small>Published value: {e(str(ds['published_source'].values[i]) or 'none')}. Seeds: "
                  + e(", ".join(f"{int(sd)}: {_fmt(val, 4)}" for sd, val in zip(ds['seed'].values, ds['value'].values[i])
                                if math.isfinite(val)) or "none") + "</small></p>"]
        if s["figure"] is not None:
            parts.append(f"<img alt='measured values of {e(s['id'])}' src='{_png_data(s['figure'])}'>")
        if s["rows"]:
            keys = list(s["rows"][0].keys())
            parts.append("<table><tr>" + "".join(f"<th>{e(k)}</th>" for k in keys) + "</tr>")
            parts += ["<tr>" + "".join(f"<td>{e(_cell(r.get(k, '')))}</td>" for k in keys) + "</tr>" for r in s["rows"]]
            parts.append("</table>")
        if s["experiment_figure"] is not None:
            parts.append(f"<img alt='experiment figure of {e(s['id'])}' src='{_png_data(s['experiment_figure'])}'>")
        parts.append(f"<p><b>Rerun alone:</b></p><pre>{e(str(ds['command'].values[i]))}</pre></section>")
    parts.append("</body></html>")
    path = out / "report.html"
    text = "\n".join(parts)
    io.atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return path


def write_markdown(ds: xr.Dataset, out: str | os.PathLike, path: str | os.PathLike,
                   figures: str | os.PathLike | None = None, *, label: str = "") -> Path:
    """Write the Markdown twin of the report (e.g. ``docs/reproduction.md``) with its figures as PNG files.

    Parameters
    ----------
    ds : xarray.Dataset
        The claims Dataset (``out/claims.nc``).
    out : path-like
        The reproduction's output folder (experiment figures and tables are read from it).
    path : path-like
        The Markdown file to write.
    figures : path-like, optional
        Folder for the PNG files (default: ``<path without .md>/``, e.g. ``docs/reproduction/``); linked
        relative to ``path``.
    label : str
        A line under the title saying what run this is (e.g. "complete cpu run of the linear-theory and MNIST
        claims").

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    import shutil

    out, path = Path(out), Path(path)
    figures = Path(figures) if figures is not None else path.with_suffix("")
    figures.mkdir(parents=True, exist_ok=True)
    sections = _claim_sections(ds, out, figures)
    prov = provenance()

    def rel(p: Path) -> str:
        return os.path.relpath(p, path.parent)

    lines = [f"# Reproduction of Hanut & Kadmon (2025, arXiv:2502.20580), budget `{ds.attrs.get('budget')}`", ""]
    if label:
        lines += [label, ""]
    if ds.attrs.get("budget") == "smoke":
        lines += [f"**{_SMOKE_NOTE}**", ""]
    lines += ["- " + "; ".join(f"{k}: {v}" for k, v in prov.items()), "",
              "Verdicts follow from each claim's criterion (fixed in `bioplastic/reproduction/claims.py` before running) "
              "and the measured numbers only; see `docs/reproduce.md`.", "",
              "| claim | verdict | measured (mean ± s.d., n seeds) | published | criterion |", "|---|---|---|---|---|"]
    lines += ["| " + " | ".join([f"[{r[0]}](#{r[0]})"] + r[1:]) + " |" for r in _summary_rows(ds)]
    for s in sections:
        i = s["i"]
        lines += ["", f"## {s['id']}", "",
                  f"**Verdict: {ds['verdict'].values[i]}.** {ds['reason'].values[i]}", "",
                  f"**Statement.** {ds['statement'].values[i]}", "",
                  f"**Criterion.** {ds['criterion'].values[i]}", "",
                  "| quantity | ours | published |", "|---|---|---|",
                  f"| {ds['quantity'].values[i]} | {_measured(ds, i)} | {_fmt(float(ds['published'].values[i]))} |", "",
                  f"Published value: {ds['published_source'].values[i] or 'none'}.", ""]
        if s["figure"] is not None:
            lines += [f"![{s['id']}]({rel(s['figure'])})", ""]
        if s["rows"]:
            keys = list(s["rows"][0].keys())
            lines += ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
            lines += ["| " + " | ".join(_cell(r.get(k, "")) for k in keys) + " |" for r in s["rows"]]
            lines.append("")
        if s["experiment_figure"] is not None:
            target = figures / f"experiment-{s['experiment_figure'].parent.name}.png"  # one file per experiment
            if not target.exists() or target.read_bytes() != s["experiment_figure"].read_bytes():
                shutil.copyfile(s["experiment_figure"], target)
            lines += [f"![experiment of {s['id']}]({rel(target)})", ""]
        # the marker keeps tests/docs/test_snippets.py from rerunning a long claim
        lines += ["Rerun alone:", "", f"<!-- docs-test: skip: reruns a {ds.attrs.get('budget')}-budget claim -->",
                  "```bash", str(ds["command"].values[i]), "```"]
    text = "\n".join(lines) + "\n"
    io.atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return path
