"""analyses/rsa_it.py end to end: trains tiny networks through bioplastic.compare, writes netCDF + PNG whose
numbers equal the library's own RSA of the saved models."""
from __future__ import annotations

import numpy as np
import pytest

from bioplastic import analysis as A
from bioplastic.data import load_kriegeskorte2008
from bioplastic.io import load

pytestmark = pytest.mark.needs_shared_data


@pytest.fixture(scope="module")
def rsa_it(analysis_script):
    return analysis_script("rsa_it")


def _check_outputs(rsa_it, out, shared_data):
    ds = load(out / "rsa_it.nc")
    assert (out / "rsa_it.png").stat().st_size > 10_000
    neural = load_kriegeskorte2008(shared_data / "kriegeskorte2008")
    human = neural["human_it_subjects"].mean("session")
    ceiling = A.noise_ceiling(human, "spearman")
    assert float(ds["noise_ceiling_lower"]) == pytest.approx(float(ceiling["lower_bound"]), abs=1e-12)
    assert 0 < float(ds["noise_ceiling_lower"]) < float(ds["noise_ceiling_upper"]) < 1
    assert "untrained" in ds["rule"].values
    # every stored similarity is the comparison of the stored RDM with the IT RDMs
    for rule in ds["rule"].values:
        for rank in ds["rank"].values:
            sims = ds["similarity_human_it"].sel(rule=rule, rank=rank, seed=0)
            if not np.isfinite(sims).all():
                continue
            layer = str(ds["layer"].values[-1])
            stored = ds["rdm"].sel(rule=rule, rank=rank, seed=0, layer=layer)
            expected = np.mean([A.compare_rdms(stored.values, h.values, "spearman") for h in human])
            assert float(sims.sel(layer=layer)) == pytest.approx(expected, abs=1e-10)
            assert float(ds["similarity_monkey_it"].sel(rule=rule, rank=rank, seed=0, layer=layer)) == pytest.approx(
                A.compare_rdms(stored.values, neural["monkey_it"].values, "spearman"), abs=1e-10)
    return ds


def test_rsa_it_on_digits_end_to_end(rsa_it, shared_data, tmp_path):
    out = tmp_path / "rsa"
    code = rsa_it.main(["--out", str(out), "--data", str(shared_data), "--budget", "small", "--dataset", "digits",
                        "--model", "mlp_digits", "--rules", "bp", "--max-train", "100"])
    assert code == 0
    ds = _check_outputs(rsa_it, out, shared_data)
    assert list(ds["layer"].values) == ["act1", "act2", "out"]
    # the stored RDM of the trained network is the RDM of the saved model's activations
    from bioplastic.training import load_model

    neural = load_kriegeskorte2008(shared_data / "kriegeskorte2008")
    stimuli = rsa_it.network_stimuli(neural["image"], "digits", None)
    acts = A.record_activations(load_model(out / "training", rule="bp"), stimuli, ["act2"])
    np.testing.assert_allclose(ds["rdm"].sel(rule="bp", rank=-1, seed=0, layer="act2").values,
                               A.rdm(acts["act2"]).values, atol=1e-10)
    assert np.isfinite(float(ds["test_accuracy"].sel(rule="bp", rank=-1, seed=0)))


def test_rsa_it_missing_data_fails_before_training(rsa_it, tmp_path):
    out = tmp_path / "never"
    with pytest.raises(FileNotFoundError, match="Kriegeskorte_Neuron2008_supplementalData.mat"):
        rsa_it.main(["--out", str(out), "--data", str(tmp_path / "nothing"), "--budget", "small"])
    assert not out.exists()


@pytest.mark.slow
def test_rsa_it_small_budget_cifar(rsa_it, shared_data, tmp_path):
    out = tmp_path / "rsa"
    assert rsa_it.main(["--out", str(out), "--data", str(shared_data), "--budget", "small"]) == 0
    ds = _check_outputs(rsa_it, out, shared_data)
    assert "ldfa_normative" in ds["rule"].values and 4 in ds["rank"].values
