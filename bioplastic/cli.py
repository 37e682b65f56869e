"""The ``bioplastic`` command.

``bioplastic compare`` trains learning rules side by side (default: backprop, feedback alignment, direct
feedback alignment, sign symmetry and LDFA at ranks 1, 3, 10 with normative (reads W), local and fixed
feedback, on the MNIST digits embedded in the package), prints a table and writes ``results.nc`` and
``figure.png`` to ``--out``.
Run ``bioplastic compare --help`` for the options.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

log = logging.getLogger("bioplastic.cli")

DEFAULT_OUT = "compare-results"


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Adds ``(default: X)`` to a flag's help only where the default says something: not for None (the
    option is then unset and its help says what applies), not for an empty list, not where the help text
    already names its default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if default is None or default is argparse.SUPPRESS or default in ([], "") or "default" in text:
            return text
        if isinstance(action, (argparse._StoreTrueAction, argparse._CountAction)):
            return text  # -q, -v: off unless given
        if isinstance(default, bool):
            return f"{text} (default: {'on' if default else 'off'})"
        return super()._get_help_string(action)


def _add_config_flags(group: argparse._ArgumentGroup, where: str) -> None:
    """One flag per field of :class:`~bioplastic.training.config.TrainConfig` offered in ``where``, generated
    from the field's metadata (help text, parser type, choices, recipe default): a new TrainConfig option
    gets its flag without an edit here. Every flag defaults to None: unset options take the model spec's
    recipe, else the built-in default, which the help text names."""
    from bioplastic.training.config import config_options

    for f in config_options(where):
        meta = f.metadata
        flag = "--" + f.name.replace("_", "-")
        text = meta["help"]
        if "recipe_default" in meta:
            built_in = meta["recipe_default"]
            built_in = "unset" if built_in is None else ("on" if built_in is True else "off" if built_in is False
                                                         else built_in)
            text += f" (default: the model spec's [training] value, else {built_in})"
        elif f.default is not None:
            shown = "on" if f.default is True else "off" if f.default is False else f.default
            text += f" (default: {shown})"
        kwargs: dict[str, Any] = {"default": None, "help": text, "dest": f.name}
        if meta["type"] is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif meta["choices"]:
            kwargs["choices"] = meta["choices"]
        else:
            kwargs["type"] = meta["type"]
            kwargs["metavar"] = {int: "N", float: "X"}.get(meta["type"], f.name.upper())
        group.add_argument(flag, **kwargs)


def _rule_option(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    if value.lower() == "none":
        return key.strip(), None
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


def _key_value_option(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` of --model-option / --dataset-option: a JSON value (``40``, ``0.1``, ``true``,
    ``[512, 512]``), a comma-separated list of them (``512,512``), else the text."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = (part.strip() for part in text.split("=", 1))

    def one(item: str) -> Any:
        try:
            return json.loads(item)
        except json.JSONDecodeError:
            return item

    if "," in value and not value.startswith("["):
        return key, [one(v.strip()) for v in value.split(",") if v.strip()]
    return key, one(value)


def _add_log_options(parser: argparse.ArgumentParser, prefix: str) -> None:
    """-v / -q, on the main parser (prefix "") and again on each subcommand (prefix "sub_"): separate dests,
    so that a subparser's default never overwrites the value given before the command; main() adds them."""
    parser.add_argument("-v", "--verbose", action="count", default=0, dest=prefix + "verbose",
                        help="more log output (-vv: debug)")
    parser.add_argument("-q", "--quiet", action="store_true", dest=prefix + "quiet",
                        help="warnings and errors only")


def _parser() -> argparse.ArgumentParser:
    from bioplastic.rules import FEEDBACK_LEARNING, RULE_NAMES
    from bioplastic.training.comparison import (DEFAULT_FEEDBACK_LEARNING, DEFAULT_MODELS, DEFAULT_RANKS,
                                             DEFAULT_RULES)

    parser = argparse.ArgumentParser(prog="bioplastic", description="bioplastic: learning without backpropagation")
    _add_log_options(parser, "")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    p = sub.add_parser(
        "compare", help="train learning rules side by side; results.nc + figure.png",
        epilog="-v / -q work before or after the command (bioplastic -v compare ..., bioplastic compare -v ...).",
        description="Train learning rules side by side on one task (Hanut & Kadmon 2025, arXiv:2502.20580, "
                    "and the feedback-alignment family). Prints a table (rule, rank, final test accuracy, "
                    "alignment of each layer's update with backprop), writes OUT/results.nc (xarray), "
                    "OUT/figure.png and the trained models OUT/models/<run>.pt. Re-running the same command "
                    "with the same --out resumes: finished runs are skipped.",
        formatter_class=_HelpFormatter)
    g = p.add_argument_group("what to compare")
    g.add_argument("--rules", default=",".join(DEFAULT_RULES),
                   help="comma-separated rule names (" + ", ".join(RULE_NAMES) + ")")
    g.add_argument("--ranks", default=None,
                   help="comma-separated absolute feedback ranks for ldfa / direct_ldfa (default: "
                        + ",".join(map(str, DEFAULT_RANKS)) + "; none when --rank-fractions is given)")
    g.add_argument("--rank-fractions", default=None, metavar="F1,F2",
                   help="comma-separated relative feedback ranks for ldfa / direct_ldfa: each layer gets "
                        "ceil(F * its width), e.g. 0.25 for width/4 (each in (0, 1]; one run per fraction; "
                        "default: none)")
    g.add_argument("--feedback-learning", default=",".join(DEFAULT_FEEDBACK_LEARNING),
                   help="comma-separated ways LDFA's feedback learns (" + ", ".join(FEEDBACK_LEARNING) + "; the "
                        "table of the modes: docs/rules.md); "
                        "one run per way, labelled e.g. ldfa_normative, ldfa_fixed; normative reads the forward "
                        "weights W (weight transport), the others do not")
    g.add_argument("--seeds", default="0", help="comma-separated seeds")
    g.add_argument("--rule-option", action="append", type=_rule_option, default=[], metavar="KEY=VALUE",
                   help="extra option for every low-rank run (repeatable), e.g. error_clamp=1; options of one "
                        "feedback-learning mode need that mode alone, e.g. --feedback-learning normative "
                        "--rule-option reinit_every=100")
    g = p.add_argument_group("data and model")
    g.add_argument("--dataset", default="mnist", help="mnist (embedded), digits (scikit-learn), teacher (synthetic, any number of classes) or cifar10 "
                   "(needs --data-path or $BIOPLASTIC_SHARED_DATA)")
    g.add_argument("--data-path", default=None, help="folder or zip files of a dataset that is not embedded, "
                   "e.g. ../shared/data/cifar10 (cifar10 default: $BIOPLASTIC_SHARED_DATA/cifar10 when that "
                   "variable is set)")
    g.add_argument("--model", default=None, help="model spec name in models/ or a .toml path (default per "
                   "dataset: " + ", ".join(f"{k}: {v}" for k, v in DEFAULT_MODELS.items()) + ")")
    g.add_argument("--classes", default=None, metavar="K | C1,C2,...",
                   help="train and test on the first K classes (--classes 5) or on the listed classes "
                        "(--classes 3,7,9); labels re-indexed 0..K-1, output layer sized to K")
    g.add_argument("--model-option", action="append", type=_key_value_option, default=[], metavar="KEY=VALUE",
                   help="override a top-level key of the model spec, e.g. hidden=512,512 or dropout=0 (repeatable)")
    g.add_argument("--dataset-option", action="append", type=_key_value_option, default=[], metavar="KEY=VALUE",
                   help="an option of the dataset's loader, e.g. n_classes=40 for --dataset teacher (repeatable)")
    _add_config_flags(g, "data")
    g.add_argument("--max-test", type=int, default=None, metavar="N",
                   help="evaluate on the first N test examples (default: all)")
    g.add_argument("--cache-dir", default=None, help="where cifar10 caches its decoded images (default: "
                   "bioplastic.data.cifar10.default_cache_dir())")
    g = p.add_argument_group("training recipe (default: the model spec's [training] table)")
    _add_config_flags(g, "recipe")
    g = p.add_argument_group("running")
    _add_log_options(g, "sub_")
    _add_config_flags(g, "running")
    g.add_argument("--threads", type=int, default=None,
                   help="CPU threads of torch (default: torch's choice; 1 is faster on a busy machine)")
    g.add_argument("--out", default=DEFAULT_OUT, help="output folder (resumed if it holds finished runs)")
    g.add_argument("--models", action=argparse.BooleanOptionalAction, default=True,
                   help="save the trained models to OUT/models")
    g.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="progress bars")
    _add_reproduce_parser(sub)
    return parser


def _add_reproduce_parser(sub) -> None:
    """``bioplastic reproduce``: the paper's claims at a budget (bioplastic.reproduction)."""
    from bioplastic.reproduction.claims import claim_ids
    from bioplastic.reproduction.experiments import BUDGETS

    p = sub.add_parser(
        "reproduce", help="check the paper's claims at a budget; claims.nc + report.html",
        description="Run every checkable claim of Hanut & Kadmon (2025, arXiv:2502.20580) at a compute budget, "
                    "each with a numeric criterion fixed before running, and write OUT/claims.nc (verdicts, "
                    "measured mean, s.d., n seeds, published values) and OUT/report.html. Re-running the same "
                    "command resumes: measured claims are not rerun. Claims: " + ", ".join(claim_ids()) + ".",
        formatter_class=_HelpFormatter)
    p.add_argument("--budget", required=True, help="one of " + ", ".join(BUDGETS)
                   + " (smoke: tiny sizes that test the plumbing; cpu: a few hours on 2 cores; gpu: the paper's recipes)")
    p.add_argument("--out", required=True, help="output folder (resumed if it holds measured claims)")
    p.add_argument("--claims", default=None, metavar="ID,ID", help="comma-separated claim ids (none given: every claim)")
    p.add_argument("--seeds", default=None, help="comma-separated seeds replacing the budget's")
    p.add_argument("--device", default="auto", help="torch device of the training runs")
    p.add_argument("--data-path", default=None, help="the shared data folder (cifar10/, kriegeskorte2008/) or a "
                   "CIFAR-10 folder (default: $BIOPLASTIC_SHARED_DATA); without it the CIFAR-10 and IT claims "
                   "are reported not run")
    p.add_argument("--threads", type=int, default=None, help="CPU threads of torch (default: torch's choice; 1 is fastest on a busy machine)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=False, help="progress bars")
    p.add_argument("--markdown", default=None, metavar="PATH", help="also write the report's Markdown twin to PATH "
                   "(e.g. docs/reproduction.md), its figures as PNG files in PATH without .md (docs/reproduction/)")
    p.add_argument("--label", default="", help="a line under the Markdown title saying what run this is")
    p.add_argument("--report-only", action="store_true", help="run nothing: report what OUT holds, every claim "
                   "not measured there as not run (with --reason)")
    p.add_argument("--reason", default=None, help="with --report-only: why the claims not measured yet are not")
    _add_log_options(p, "sub_")


def _run_reproduce(args: argparse.Namespace) -> int:
    import bioplastic
    from bioplastic.reproduction.runner import CLAIMS_FILE, REPORT_FILE

    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)  # the command owns its process
    ds = bioplastic.reproduce(budget=args.budget, out=args.out, claims=args.claims, seeds=args.seeds,
                              device=args.device, data_path=args.data_path, progress=args.progress,
                              run=not args.report_only, not_run_reason=args.reason)
    if args.markdown:
        from bioplastic.reproduction.report import write_markdown

        write_markdown(ds, args.out, args.markdown, label=args.label)
    width = max(len(str(c)) for c in ds["claim"].values)
    for i, cid in enumerate(ds["claim"].values):
        n = int(ds["n"].values[i])
        measured = "" if n == 0 else f"  {float(ds['seed_mean'].values[i]):.4g} (n={n})"
        verdict = str(ds["verdict"].values[i])
        why = f"  ({ds['reason'].values[i]})" if n == 0 and str(ds["reason"].values[i]) else ""
        sys.stdout.write(f"{str(cid):{width}s}  {verdict}{measured}{why}\n")
    if args.budget == "smoke":
        sys.stdout.write("\n(smoke budget: barely trained networks; these verdicts test the plumbing and mean "
                         "nothing about the paper)\n")
    sys.stdout.write(f"\nclaims: {args.out}/{CLAIMS_FILE}\nreport: {args.out}/{REPORT_FILE}\n")
    return 0


def _run_compare(args: argparse.Namespace) -> int:
    import bioplastic
    from bioplastic.training.comparison import SHARED_DATA_VARIABLE
    from bioplastic.training.results import RESULTS_FILE, format_table

    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)  # the command owns its process

    if args.dataset == "cifar10" and args.data_path is None and not os.environ.get(SHARED_DATA_VARIABLE):
        raise ValueError("dataset 'cifar10' is not embedded: give --data-path (a folder with "
                         "cifar10-jpeg-train.zip / cifar10-jpeg-test.zip or cifar-10-batches-py/) or set "
                         f"{SHARED_DATA_VARIABLE} (its cifar10 folder is used); where to get CIFAR-10: "
                         "docs/data.md of the bioplastic repository")
    from bioplastic.training.config import config_options

    kwargs = dict(
        rules=args.rules, ranks=args.ranks, seeds=args.seeds, dataset=args.dataset, out=args.out,
        feedback_learning=args.feedback_learning, model=args.model, data_path=args.data_path,
        rule_options=dict(args.rule_option), progress=args.progress, keep_models=args.models,
    )
    # TrainConfig's flags: compare's named keywords always, the others (train_options) where given
    extra = {}
    for f in config_options():
        if f.metadata["keyword"]:
            kwargs[f.name] = getattr(args, f.name)
        elif getattr(args, f.name) is not None:
            extra[f.name] = getattr(args, f.name)
    if args.ranks is None:  # the default ranks, unless only relative ranks are asked for
        from bioplastic.training.comparison import DEFAULT_RANKS

        kwargs["ranks"] = None if args.rank_fractions is not None else ",".join(map(str, DEFAULT_RANKS))
    # newer options reach compare only when given
    for name in ("rank_fractions", "max_test", "cache_dir"):
        if getattr(args, name) is not None:
            kwargs[name] = getattr(args, name)
    if args.classes is not None:
        kwargs["classes"] = args.classes
    for name in ("model_option", "dataset_option"):
        pairs = getattr(args, name)
        keys = [k for k, _ in pairs]
        repeated = sorted({k for k in keys if keys.count(k) > 1})
        if repeated:
            raise ValueError(f"--{name.replace('_', '-')} {', '.join(repeated)} given more than once")
        if pairs:
            kwargs[name + "s"] = dict(pairs)
    if extra:
        kwargs["train_options"] = extra
    ds = bioplastic.compare(**kwargs)
    sys.stdout.write(format_table(ds) + "\n")
    sys.stdout.write(f"\nresults: {args.out}/{RESULTS_FILE}\nfigure:  {args.out}/figure.png\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``bioplastic`` command.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status: 0 on success, 2 for bad arguments or data, an output file that cannot be written
        (no space left, quota) or an ``--out`` folder in use by another ``bioplastic compare`` (one line
        naming the problem), 130 after Ctrl-C (finished runs are saved; the same command resumes).
    """
    parser = _parser()
    args = parser.parse_args(argv)
    # -v / -q count wherever they are given: before the command, after it, or both
    args.verbose = args.verbose + getattr(args, "sub_verbose", 0)
    args.quiet = args.quiet or getattr(args, "sub_quiet", False)
    # Default: progress bars, one INFO line per finished run, warnings; -v: every module's INFO (per-epoch
    # lines, conversion reports); -vv: debug; -q: warnings only.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.verbose:
        logging.getLogger("bioplastic").setLevel(logging.DEBUG if args.verbose > 1 else logging.INFO)
    elif not args.quiet:
        for name in ("bioplastic.cli", "bioplastic.training.comparison", "bioplastic.reproduction.runner"):
            logging.getLogger(name).setLevel(logging.INFO)
    from tqdm.contrib.logging import logging_redirect_tqdm

    from bioplastic.io import FolderInUseError, WriteError

    try:
        if args.command == "compare":
            with logging_redirect_tqdm():  # log lines do not break the progress bars
                return _run_compare(args)
        if args.command == "reproduce":
            with logging_redirect_tqdm():
                return _run_reproduce(args)
    except (ValueError, FileNotFoundError, WriteError, FolderInUseError) as exc:
        # bad input, a missing file, a file that cannot be written (no space left, quota), an --out folder
        # in use by another run: one line naming the problem, no traceback (-vv logs it)
        log.debug("details", exc_info=True)
        parser.exit(2, f"bioplastic {args.command}: error: {exc}\n")
    except KeyboardInterrupt:
        log.warning("interrupted; finished runs are saved in %s (run the same command to resume)",
                    getattr(args, "out", "?"))
        return 130
    return 0  # pragma: no cover - argparse requires a command


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
