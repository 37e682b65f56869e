"""The ``bioplastic`` command: argument mapping, errors and exit codes, and one real end-to-end run."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import bioplastic
from bioplastic import cli
from bioplastic.training import results as R


@pytest.fixture
def captured_compare(monkeypatch):
    """Replace bioplastic.compare by a recorder returning a tiny real Dataset."""
    seen = {}

    def fake(**kwargs):
        seen.update(kwargs)
        ds = R.merge_runs([], rules=[("bp", None)], ranks=[R.NO_RANK], seeds=[0], epochs=1)
        return ds

    monkeypatch.setattr(bioplastic.training, "compare", fake)
    return seen


def test_options_reach_compare(captured_compare, capsys, tmp_path):
    rc = cli.main(["compare", "--rules", "bp,fa,ldfa", "--ranks", "1,10", "--seeds", "0,1", "--epochs", "2",
                   "--dataset", "mnist", "--out", str(tmp_path), "--feedback-learning", "normative,fixed",
                   "--batch-size", "32", "--lr", "0.01", "--optimizer", "sgd", "--weight-decay", "0.1",
                   "--feedback-lr", "0.02", "--feedback-weight-decay", "0", "--schedule", "constant",
                   "--warmup-epochs", "0.5", "--no-amp", "--compile", "--device", "cpu", "--max-train", "500",
                   "--rule-option", "reinit_every=100", "--rule-option", "error_clamp=1.5",
                   "--rule-option", "error_clamp=none", "--no-alignment", "--no-progress",
                   "--no-models", "--model", "mlp_mnist", "--data-path", "/x", "--momentum", "0.9",
                   "--feedback-optimizer", "adamw", "--label-smoothing", "0.1", "--no-augment", "--grad-clip", "1",
                   "--eval-batch-size", "1000", "--alignment-batch", "256"])
    assert rc == 0
    assert captured_compare == dict(
        rules="bp,fa,ldfa", ranks="1,10", seeds="0,1", epochs=2, dataset="mnist", out=str(tmp_path),
        feedback_learning="normative,fixed", model="mlp_mnist", data_path="/x", batch_size=32, lr=0.01,
        optimizer="sgd", weight_decay=0.1, feedback_lr=0.02, feedback_weight_decay=0.0, schedule="constant",
        warmup_epochs=0.5, amp=False, compile=True, device="cpu", max_train=500, alignment=False,
        rule_options={"reinit_every": 100, "error_clamp": None},
        progress=False, keep_models=False,
        train_options={"momentum": 0.9, "feedback_optimizer": "adamw", "label_smoothing": 0.1, "augment": False,
                       "grad_clip": 1.0, "eval_batch_size": 1000, "alignment_batch": 256})
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:2] == ["rule", "rank"]
    assert f"{tmp_path}/results.nc" in out


def test_no_arguments_is_the_default_comparison(captured_compare, tmp_path, monkeypatch):
    from bioplastic.training.comparison import DEFAULT_FEEDBACK_LEARNING, DEFAULT_RANKS, DEFAULT_RULES

    monkeypatch.chdir(tmp_path)
    assert cli.main(["compare"]) == 0
    assert captured_compare["rules"].split(",") == list(DEFAULT_RULES)
    assert [int(r) for r in captured_compare["ranks"].split(",")] == list(DEFAULT_RANKS)
    assert captured_compare["feedback_learning"].split(",") == list(DEFAULT_FEEDBACK_LEARNING)
    assert captured_compare["dataset"] == "mnist" and captured_compare["out"] == cli.DEFAULT_OUT
    assert captured_compare["epochs"] is None and captured_compare["model"] is None  # the spec's recipe
    assert {"bp", "fa", "dfa", "sign_symmetry", "ldfa"} <= set(DEFAULT_RULES)
    assert len(DEFAULT_RANKS) >= 2 and {"normative", "fixed"} <= set(DEFAULT_FEEDBACK_LEARNING)


def test_rank_fractions_and_test_subset_reach_compare(captured_compare, tmp_path):
    assert cli.main(["compare", "--rules", "bp,ldfa", "--rank-fractions", "0.25,0.5", "--max-test", "500",
                     "--cache-dir", str(tmp_path / "c"), "--out", str(tmp_path)]) == 0
    # relative ranks only: no default absolute ranks
    assert captured_compare["ranks"] is None and captured_compare["rank_fractions"] == "0.25,0.5"
    assert captured_compare["max_test"] == 500 and captured_compare["cache_dir"] == str(tmp_path / "c")
    assert cli.main(["compare", "--ranks", "2", "--rank-fractions", "0.25", "--out", str(tmp_path)]) == 0
    assert captured_compare["ranks"] == "2" and captured_compare["rank_fractions"] == "0.25"


@pytest.mark.parametrize("argv, words", [
    (["compare", "--rank-fractions", "0.25,1.5"], ["rank fraction", "(0, 1]", "1.5"]),
    (["compare", "--rules", "bp,backprop"], ["'backprop'", "'sign_symmetry'", "'ldfa'"]),
    (["compare", "--dataset", "imagenet"], ["'imagenet'", "'mnist'", "'cifar10'"]),
    (["compare", "--ranks", "0"], ["rank", "out of range"]),
    (["compare", "--feedback-learning", "hebb"], ["'hebb'", "'normative'"]),
    (["compare", "--model", "no_such_model"], ["'no_such_model'", "'mlp_mnist'"]),
    (["compare", "--dataset", "cifar10", "--data-path", "/no/such/cifar"], ["/no/such/cifar"]),
])
def test_bad_input_exits_2_naming_the_problem(argv, words, capsys, tmp_path, monkeypatch):
    from bioplastic.training import comparison as compare_mod
    monkeypatch.setattr(compare_mod, "_trainer", _no_training)
    with pytest.raises(SystemExit) as info:
        cli.main([*argv, "--out", str(tmp_path / "out"), "--device", "cpu"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    for word in words:
        assert word in err


def _no_training():
    from bioplastic.training import trainer

    class Guard:
        TrainConfig = trainer.TrainConfig

        @staticmethod
        def train(*args, **kwargs):
            raise AssertionError("training started despite bad input")

    return Guard


def test_argparse_choices_and_unknown_flags(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["compare", "--optimizer", "lbfgs"])
    assert info.value.code == 2 and "'adam', 'adamw', 'sgd'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["compare", "--rule-option", "no_equals_sign"])
    with pytest.raises(SystemExit) as info:
        cli.main([])
    assert info.value.code == 2


def test_ctrl_c_exits_130(monkeypatch, tmp_path):
    def interrupted(**kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(bioplastic.training, "compare", interrupted)
    assert cli.main(["compare", "--out", str(tmp_path)]) == 130


def test_real_command_end_to_end(tmp_path):
    """The installed console script, in a subprocess, on the real digits data with the real trainer."""
    out = tmp_path / "out"
    cmd = [sys.executable, "-c", "import sys; from bioplastic.cli import main; sys.exit(main())",
           "compare", "--rules", "bp,ldfa", "--ranks", "2", "--feedback-learning", "fixed", "--seeds", "0",
           "--epochs", "1", "--dataset", "digits", "--max-train", "200", "--device", "cpu", "--out", str(out),
           "--no-progress", "--threads", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    ds = bioplastic.training.load_results(out)
    assert list(ds.rule.values) == ["bp", "ldfa_fixed"] and list(ds["rank"].values) == [R.NO_RANK, 2]
    lines = proc.stdout.splitlines()
    assert lines[2].split()[:2] == ["bp", "-"] and lines[3].split()[:2] == ["ldfa_fixed", "2"]
    acc = float(ds.test_accuracy.sel(rule="bp", rank=R.NO_RANK, seed=0, epoch=1)) * 100
    assert f"{acc:.2f}" in lines[2]
    assert (out / "figure.png").stat().st_size > 10_000
    assert np.isfinite(ds.wall_time.sel(rule="bp", rank=R.NO_RANK)).all()
    assert {p.name for p in (out / "models").iterdir()} == {"bp-s0.pt", "ldfa_fixed-r2-s0.pt"}


@pytest.mark.parametrize("argv, level", [
    (["compare", "-v"], "INFO"), (["-v", "compare"], "INFO"), (["-v", "compare", "-v"], "DEBUG"),
    (["compare", "-vv"], "DEBUG"), (["compare", "-q"], "NOTSET"), (["-q", "compare"], "NOTSET"),
    (["compare"], "NOTSET"),
])
def test_verbosity_flags_work_before_and_after_the_command(argv, level, captured_compare, tmp_path):
    import logging

    loggers = [logging.getLogger(n) for n in ("bioplastic", "bioplastic.cli", "bioplastic.training.comparison")]
    saved = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.NOTSET)
        assert cli.main([*argv, "--rules", "bp", "--out", str(tmp_path)]) == 0
        assert logging.getLevelName(loggers[0].level) == level
        quiet = "-q" in argv
        assert (loggers[2].level == logging.NOTSET) == (quiet or level != "NOTSET")
    finally:
        for lg, lv in zip(loggers, saved):
            lg.setLevel(lv)


def test_cifar10_without_path_names_the_flag_and_the_variable(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("BIOPLASTIC_SHARED_DATA", raising=False)
    with pytest.raises(SystemExit) as info:
        cli.main(["compare", "--dataset", "cifar10", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "--data-path" in err and "BIOPLASTIC_SHARED_DATA" in err
    assert not (tmp_path / "out").exists()


def test_cifar10_with_shared_data_variable_reaches_compare(captured_compare, tmp_path, monkeypatch):
    monkeypatch.setenv("BIOPLASTIC_SHARED_DATA", str(tmp_path))
    assert cli.main(["compare", "--dataset", "cifar10", "--out", str(tmp_path / "out")]) == 0
    assert captured_compare["dataset"] == "cifar10" and captured_compare["data_path"] is None


def test_help_example_of_rule_option_names_its_feedback_mode():
    text = cli._parser()._subparsers._group_actions[0].choices["compare"].format_help()
    assert "--feedback-learning normative --rule-option reinit_every=100" in " ".join(text.split())


def test_cli_device_without_cuda_names_the_cli_flag(capsys):
    """Issue 16 item 13: on a machine without CUDA, `--device cuda` is one line (exit 2) naming `--device cpu`."""
    import torch

    from bioplastic.cli import main

    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA")
    with pytest.raises(SystemExit) as info:
        main(["compare", "--rules", "bp", "--dataset", "digits", "--epochs", "1", "--device", "cuda"])
    assert info.value.code == 2 and "--device cpu" in capsys.readouterr().err


def _compare_parser():
    parser = cli._parser()
    sub = next(a for a in parser._actions if isinstance(a, __import__("argparse")._SubParsersAction))
    return sub.choices["compare"]


def test_every_trainconfig_option_has_a_flag_that_reaches_compare(captured_compare, tmp_path):
    """The recipe flags come from TrainConfig's fields: each one is parsed with its field's type and reaches
    compare, as a named keyword or in train_options (a new TrainConfig option needs no edit in the CLI)."""
    from bioplastic.training.config import config_options

    samples = {int: ("7", 7), float: ("0.5", 0.5), str: ("cpu", "cpu")}
    for f in config_options():
        meta = f.metadata
        flag = "--" + f.name.replace("_", "-")
        if meta["type"] is bool:
            argv, value = [f"--no-{f.name.replace('_', '-')}"], False
        elif meta["choices"]:
            argv, value = [flag, meta["choices"][-1]], meta["choices"][-1]
        else:
            text, value = samples[meta["type"]]
            argv = [flag, text]
        captured_compare.clear()
        assert cli.main(["compare", "--out", str(tmp_path), *argv]) == 0
        got = captured_compare[f.name] if meta["keyword"] else captured_compare["train_options"][f.name]
        assert got == value, f.name


def test_help_names_each_default_at_most_once_and_every_option_has_help():
    parser = _compare_parser()
    formatter = cli._HelpFormatter("bioplastic compare")
    for action in parser._actions:
        if action.option_strings == ["-h", "--help"]:
            continue
        text = formatter._expand_help(action)
        assert text.strip(), action.option_strings
        assert text.count("default:") <= 1, (action.option_strings, text)
        assert "(default: None)" not in text, action.option_strings
