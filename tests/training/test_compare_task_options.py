"""compare's task options (issue 12): ``classes=``, ``model_options=``, ``dataset_options=``, and their CLI flags.

Bookkeeping tests use the fake training engine of test_compare (it records the configs and the datasets it is
given, so a test sees what a run would train on and whether training started at all); one end-to-end test
trains for real on a digits subset.
"""
from __future__ import annotations

import json

import pytest
import torch

import bioplastic
from bioplastic.data import load_dataset, select_classes
from bioplastic.training import comparison as compare_mod
from tests.training.test_compare import FakeEngine


class RecordingEngine(FakeEngine):
    def __init__(self):
        super().__init__()
        self.datasets = []

    def train(self, config, dataset, **kw):
        self.datasets.append(dataset)
        return super().train(config, dataset, **kw)


@pytest.fixture
def engine(monkeypatch):
    fake = RecordingEngine()
    monkeypatch.setattr(compare_mod, "_trainer", lambda: fake)
    return fake


def run(out=None, **kw):
    args = dict(rules=["bp"], seeds=[0], epochs=2, dataset="digits", out=out, progress=False, figure=False,
                keep_models=False)
    args.update(kw)
    return bioplastic.compare(**args)


# ----------------------------------------------------------------------------------------- select_classes
def test_select_classes_reindexes_in_the_given_order_and_filters_both_sets():
    full = load_dataset("digits")
    sub = select_classes(full, [3, 7, 9])
    for x_full, y_full, x_sub, y_sub in ((full.x_train, full.y_train, sub.x_train, sub.y_train),
                                         (full.x_test, full.y_test, sub.x_test, sub.y_test)):
        keep = (y_full == 3) | (y_full == 7) | (y_full == 9)
        assert torch.equal(x_sub, x_full[keep])  # same examples, same order
        expected = torch.tensor([{3: 0, 7: 1, 9: 2}[int(c)] for c in y_full[keep]])
        assert torch.equal(y_sub, expected)
    assert sub.classes == [full.classes[3], full.classes[7], full.classes[9]] and sub.n_classes == 3
    assert sub.meta["classes"] == [3, 7, 9]


@pytest.mark.parametrize("classes, match", [([4], "at least 2"), ([2, 2], "distinct"), ([1, 10], r"\[10\].*0\.\.9")])
def test_select_classes_refuses_bad_lists(classes, match):
    with pytest.raises(ValueError, match=match):
        select_classes(load_dataset("digits"), classes)


# ----------------------------------------------------------------------------------------- classes=
@pytest.mark.parametrize("classes, labels", [(4, [0, 1, 2, 3]), ("4", [0, 1, 2, 3]), ([3, 7, 9], [3, 7, 9]),
                                             ("3,7,9", [3, 7, 9])])
def test_classes_subset_sizes_output_and_records_it(engine, tmp_path, classes, labels):
    ds = run(tmp_path / "o", classes=classes)
    data = engine.datasets[0]
    k = len(labels)
    assert data.n_classes == k
    assert sorted(torch.unique(data.y_train).tolist()) == list(range(k))
    assert sorted(torch.unique(data.y_test).tolist()) == list(range(k))
    full = load_dataset("digits")
    assert len(data.y_test) == sum(int((full.y_test == c).sum()) for c in labels)  # test set filtered too
    assert engine.calls[0].model["n_classes"] == k  # the output layer sized automatically
    assert list(ds.attrs["classes"]) == labels
    saved = bioplastic.io.load(tmp_path / "o" / "results.nc")
    assert list(saved.attrs["classes"]) == labels
    assert json.loads(saved.attrs["config"])["classes"] == labels


@pytest.mark.parametrize("dataset, options", [("mnist", {}), ("teacher", {"n_classes": 9, "n_train": 900, "n_test": 900})])
def test_classes_on_other_datasets(engine, dataset, options):
    import numpy as np

    ds = run(dataset=dataset, classes=np.array([8, 2]), dataset_options=options or None)
    data = engine.datasets[0]
    full = load_dataset(dataset, **options)
    assert data.n_classes == 2 and engine.calls[0].model["n_classes"] == 2
    assert torch.equal(data.x_test, full.x_test[(full.y_test == 8) | (full.y_test == 2)])
    assert torch.equal(data.y_test, (full.y_test[(full.y_test == 8) | (full.y_test == 2)] == 2).long())
    assert list(ds.attrs["classes"]) == [8, 2]
    run(dataset=dataset, classes=np.int64(3), dataset_options=options or None)
    assert engine.datasets[-1].n_classes == 3


def test_all_classes_are_recorded_without_a_subset(engine, tmp_path):
    ds = run(tmp_path / "o")
    assert list(ds.attrs["classes"]) == list(range(10))
    # without a subset the run identity is unchanged (runs of earlier versions stay resumable)
    stored = json.loads(bioplastic.io.load(tmp_path / "o" / "runs" / "bp-s0.nc").attrs["requested_config"])
    assert "classes" not in stored and "dataset_options" not in stored


def test_resume_refuses_another_class_subset(engine, tmp_path):
    run(tmp_path / "o", classes=4)
    n = len(engine.calls)
    run(tmp_path / "o", classes=4)  # same subset: resumed, nothing retrained
    assert len(engine.calls) == n
    with pytest.raises(ValueError, match=r"different configuration.*classes"):
        run(tmp_path / "o", classes=[0, 1, 2, 4])
    assert len(engine.calls) == n


@pytest.mark.parametrize("classes, match", [
    (1, r"classes=1.*at least 2"), ([5], r"at least 2"), (11, r"classes=11.*10 classes.*2\.\.10"),
    ([3, 12], r"\[12\].*0\.\.9"), ([-1, 2], r"\[-1\]"), ("a", "cannot read 'a'"), ([2, 2], "duplicate"),
    (2.5, "int K"), (True, "int K")])
def test_bad_classes_fail_before_training_and_write_nothing(engine, tmp_path, classes, match):
    with pytest.raises(ValueError, match=match):
        run(tmp_path / "o", classes=classes)
    assert engine.calls == [] and not (tmp_path / "o").exists()


# ----------------------------------------------------------------------------------------- model_options
def test_model_options_override_spec_keys_and_join_the_run_identity(engine, tmp_path):
    run(tmp_path / "o", model_options={"hidden": [32, 16], "dropout": 0.0})
    spec = engine.calls[0].model
    assert spec["hidden"] == [32, 16] and spec["name"] == "mlp_digits"
    run(tmp_path / "p", model_options={"hidden": 24})  # a scalar for a list-valued key
    assert engine.calls[-1].model["hidden"] == [24]
    n = len(engine.calls)
    with pytest.raises(ValueError, match=r"different configuration.*model"):
        run(tmp_path / "o", model_options={"hidden": [32, 32]})
    assert len(engine.calls) == n


@pytest.mark.parametrize("options, match", [
    ({"hiden": [8]}, r"unknown model option 'hiden'.*keys: .*hidden.*in_features"),
    ({"training": {"lr": 1}}, r"'training' cannot be overridden; use the training arguments"),
    ({"architecture": "vgg"}, r"'architecture' cannot be overridden"),
    ({"hidden": [0]}, r"cannot be built.*hidden\[0\]"),
])
def test_bad_model_options_fail_before_training(engine, tmp_path, options, match):
    with pytest.raises(ValueError, match=match):
        run(tmp_path / "o", model_options=options)
    assert engine.calls == [] and not (tmp_path / "o").exists()


def test_width_that_makes_a_rank_impossible_is_refused(engine, tmp_path):
    # hidden [4, 4] on 64 inputs and 10 outputs: every layer has min(out, in) <= 4
    with pytest.raises(ValueError, match=r"rank \[8\] out of range.*1\.\.4"):
        run(tmp_path / "o", rules=["ldfa"], ranks=[8], feedback_learning=["normative"],
            model_options={"hidden": [4, 4]})
    assert engine.calls == [] and not (tmp_path / "o").exists()


# ----------------------------------------------------------------------------------------- dataset_options
def test_dataset_options_reach_the_loader_and_size_the_model(engine, tmp_path):
    ds = run(tmp_path / "o", dataset="teacher",
             dataset_options={"n_classes": 7, "input_dim": 6, "n_train": 200, "n_test": 100, "seed": 2})
    data = engine.datasets[0]
    ref = load_dataset("teacher", n_classes=7, input_dim=6, n_train=200, n_test=100, seed=2)
    assert torch.equal(data.y_train, ref.y_train) and torch.equal(data.x_test, ref.x_test)
    assert engine.calls[0].model["n_classes"] == 7 and engine.calls[0].model["in_features"] == 6
    assert list(ds.attrs["classes"]) == list(range(7))
    n = len(engine.calls)
    with pytest.raises(ValueError, match=r"different configuration.*dataset_options"):
        run(tmp_path / "o", dataset="teacher",
            dataset_options={"n_classes": 8, "input_dim": 6, "n_train": 200, "n_test": 100, "seed": 2})
    assert len(engine.calls) == n


def test_classes_and_dataset_options_combine(engine):
    ds = run(dataset="teacher", dataset_options={"n_classes": 12, "n_train": 300, "n_test": 300}, classes=5)
    assert engine.datasets[0].n_classes == 5 and engine.calls[0].model["n_classes"] == 5
    assert list(ds.attrs["classes"]) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match=r"classes=13.*12 classes.*2\.\.12"):
        run(dataset="teacher", dataset_options={"n_classes": 12, "n_train": 300, "n_test": 300}, classes=13)


@pytest.mark.parametrize("dataset, options, match", [
    ("teacher", {"n_class": 40}, r"unknown dataset option 'n_class' for dataset 'teacher'.*input_dim.*n_classes"),
    ("teacher", {"n_classes": 1}, r"n_classes=1 out of range"),
    ("digits", {"n_classes": 5}, r"unknown dataset option 'n_classes' for dataset 'digits'"),
    ("teacher", {"path": "x"}, r"data_path"),
])
def test_bad_dataset_options_fail_before_training(engine, tmp_path, dataset, options, match):
    with pytest.raises(ValueError, match=match):
        run(tmp_path / "o", dataset=dataset, dataset_options=options)
    assert engine.calls == [] and not (tmp_path / "o").exists()


# ----------------------------------------------------------------------------------------- end to end, CLI
def test_real_training_on_a_class_subset_learns_it(tmp_path):
    """Digits 0 and 1 with a 2-output MLP: far above the 50 % chance of a balanced 2-class test set."""
    ds = bioplastic.compare(rules=["bp"], seeds=[0], epochs=3, dataset="digits", classes=2,
                            model_options={"hidden": [32]}, progress=False, figure=False, out=tmp_path / "o")
    assert list(ds.attrs["classes"]) == [0, 1]
    # 2 classes, ~90 test digits: binomial s.d. of chance accuracy ~0.05, so 0.8 is far from chance
    assert float(ds.test_accuracy.isel(epoch=-1).squeeze()) > 0.8
    model = bioplastic.load_model(tmp_path / "o", "bp") if hasattr(bioplastic, "load_model") else None
    if model is not None:
        assert model(torch.zeros(1, 64)).shape == (1, 2)


def test_cli_flags(engine, tmp_path, capsys):
    from bioplastic import cli

    rc = cli.main(["compare", "--rules", "bp", "--seeds", "0", "--epochs", "1", "--dataset", "teacher",
                   "--classes", "3,1,4", "--model-option", "hidden=16,8", "--model-option", "dropout=0",
                   "--dataset-option", "n_classes=6", "--dataset-option", "n_train=200",
                   "--dataset-option", "n_test=100", "--out", str(tmp_path / "o"), "--no-progress", "--no-models"])
    assert rc == 0
    spec = engine.calls[0].model
    assert spec["hidden"] == [16, 8] and spec["dropout"] == 0 and spec["n_classes"] == 3
    assert engine.datasets[0].n_classes == 3 and len(engine.datasets[0].y_train) < 200
    saved = bioplastic.io.load(tmp_path / "o" / "results.nc")
    assert list(saved.attrs["classes"]) == [3, 1, 4]


def test_cli_bad_options_exit_with_a_message(engine, tmp_path, capsys):
    from bioplastic import cli

    with pytest.raises(SystemExit) as exc:
        cli.main(["compare", "--rules", "bp", "--dataset", "digits", "--model-option", "width=3",
                  "--out", str(tmp_path / "o")])
    assert exc.value.code == 2
    assert "unknown model option 'width'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["compare", "--rules", "bp", "--dataset", "teacher", "--dataset-option", "n_classes=4",
                  "--dataset-option", "n_classes=5", "--out", str(tmp_path / "o")])
    assert "n_classes given more than once" in capsys.readouterr().err
    assert engine.calls == [] and not (tmp_path / "o").exists()
