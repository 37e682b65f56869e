"""``bioplastic reproduce`` (:func:`bioplastic.reproduce`): every checkable claim of Hanut & Kadmon (2025, arXiv:2502.20580), run at a chosen
compute budget, each with a numeric criterion fixed before running, a verdict and a report.

>>> import bioplastic
>>> ds = bioplastic.reproduce(budget="smoke", out="repro", claims=["linear_fixed_stalls"])  # doctest: +SKIP
>>> ds[["verdict", "seed_mean", "sd", "n"]].to_dataframe()                                     # doctest: +SKIP

Modules: :mod:`~bioplastic.reproduction.verdict` (criteria and the verdict logic), :mod:`~bioplastic.reproduction.claims`
(the claim registry), :mod:`~bioplastic.reproduction.experiments` (what runs, per budget),
:mod:`~bioplastic.reproduction.runner` (:func:`reproduce`: resumable runs, ``claims.nc``) and
:mod:`~bioplastic.reproduction.report` (``report.html`` and its Markdown twin). See ``docs/reproduce.md``.
"""
from bioplastic.reproduction.claims import CLAIMS, Claim, claim_ids
from bioplastic.reproduction.experiments import BUDGETS, EXPERIMENTS, Experiment
from bioplastic.reproduction.report import write_html, write_markdown
from bioplastic.reproduction.runner import CLAIMS_FILE, REPORT_FILE, reproduce
from bioplastic.reproduction.verdict import VERDICTS, Criterion, verdict

__all__ = ["reproduce", "CLAIMS", "Claim", "claim_ids", "BUDGETS", "EXPERIMENTS", "Experiment", "Criterion",
           "verdict", "VERDICTS", "write_html", "write_markdown", "CLAIMS_FILE", "REPORT_FILE"]
