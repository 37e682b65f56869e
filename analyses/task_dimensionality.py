"""Task dimensionality: the feedback rank a network needs tracks the task's dimensionality, not its width.

Tests the central claim of Hanut & Kadmon (2025, arXiv:2502.20580) with
:func:`bioplastic.training.task_dimensionality.run_task_dimensionality`: accuracy against feedback rank for
several task dimensionalities K (BP, adaptive LDFA ``normative`` and ``local``, fixed low-rank feedback),
the minimal sufficient rank r*(K) with its seed spread against the line r = K, r* at several widths, the
narrow-network control (BP at hidden width r) and one layer constrained at a time. Every part runs through
``bioplastic.compare`` in ``OUT/compare/<part>``, so running the same command again resumes.

Usage::

    python analyses/task_dimensionality.py --out results/taskdim-smoke --budget smoke           # < 1 min
    python analyses/task_dimensionality.py --out results/taskdim-cpu --budget cpu --threads 1   # ~45 min
    python analyses/task_dimensionality.py --out results/taskdim-gpu --budget paper --device cuda

Outputs: ``OUT/task_dimensionality.nc`` (see ``run_task_dimensionality``), ``OUT/task_dimensionality.png``,
``OUT/task_dimensionality.md`` (the r* and accuracy tables). The r* criterion is stated in
``docs/task_dimensionality.md`` and :data:`bioplastic.training.task_dimensionality.R_STAR_CRITERION`.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from bioplastic.training import task_dimensionality as td


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="output folder (resumed when it holds finished runs)")
    parser.add_argument("--dataset", default="teacher", help="teacher (default), mnist or cifar10")
    parser.add_argument("--budget", default="smoke", help="smoke (< 1 min), cpu (~45 min on one core) or paper (GPU)")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds (default: the budget's)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (1 on a shared machine)")
    parser.add_argument("--device", default="cpu", help="torch device of every run")
    parser.add_argument("--data-path", default=None, help="CIFAR-10 files (see bioplastic compare --help)")
    parser.add_argument("--progress", action="store_true", help="progress bars of every compare call")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in ("bioplastic.nn.convert", "bioplastic.training.trainer"):  # one line per run is enough
        logging.getLogger(name).setLevel(logging.WARNING)
    t0 = time.perf_counter()
    try:
        ds = td.run_task_dimensionality(args.out, budget=args.budget, dataset=args.dataset, seeds=args.seeds,
                                        threads=args.threads, data_path=args.data_path, device=args.device,
                                        progress=args.progress)
    except (ValueError, FileNotFoundError) as exc:
        parser.exit(2, f"task_dimensionality: error: {exc}\n")
    tables = td.summary_table(ds) + "\n\n" + td.accuracy_table(ds) + "\n"
    from bioplastic import io

    io.atomic_write(Path(args.out) / "task_dimensionality.md", lambda tmp: Path(tmp).write_text(tables))
    sys.stdout.write(tables)
    sys.stdout.write(f"\n{Path(args.out) / td.RESULTS_FILE}, {Path(args.out) / td.FIGURE_FILE} "
                     f"({time.perf_counter() - t0:.0f} s)\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
