"""Neural-data loaders read the real files in ../shared/data, check their shapes and name broken files."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import xarray as xr

from bioplastic.data import load_kriegeskorte2008, load_ringach2002, load_v1_statistics, resize_images
from bioplastic.io import load, save

pytestmark = pytest.mark.needs_shared_data


@pytest.fixture(scope="module")
def kriegeskorte(shared_data):
    return load_kriegeskorte2008(shared_data / "kriegeskorte2008")


def test_kriegeskorte_shapes_and_metadata(kriegeskorte):
    ds = kriegeskorte
    assert ds.sizes["stimulus"] == 92 and ds.sizes["stimulus_i"] == 92
    assert ds["image"].shape == (92, 175, 175, 3) and ds["image"].dtype == np.uint8
    assert ds.attrs["n_monkey_neurons"] == 674 and ds.attrs["n_human_voxels"] == 316
    assert ds["human_it_subjects"].shape == (4, 2, 92, 92)
    assert list(ds["model"].values)[:3] == ["animacy", "FaceBodyManmadeNatobj", "monkeyIT"]
    assert "Kriegeskorte" in ds.attrs["citation"] and "Kiani" in ds["monkey_it"].attrs["citation"]
    assert ds["monkey_it"].attrs["units"] == "1 - Pearson r"
    # 12 human body parts, then 12 human faces, ...; 48 animate images (Kriegeskorte et al. 2008)
    assert ds["category"].values[0] == "human bodypart" and int(ds["animate"].sum()) == 48
    assert int(ds["category_vector"].sel(category_label="animate").sum()) == 48


def test_kriegeskorte_rdms_are_consistent(kriegeskorte):
    ds = kriegeskorte
    for name in ("monkey_it", "human_it"):
        m = ds[name].values
        np.testing.assert_allclose(m, m.T)
        np.testing.assert_array_equal(np.diag(m), 0.0)
    # the human IT RDM of Fig. 1 is the mean of the 4 subjects x 2 sessions
    np.testing.assert_allclose(ds["human_it_subjects"].mean(("subject", "session")).values, ds["human_it"].values,
                               atol=1e-6)
    # the 'monkeyIT' model RDM is the monkey IT RDM
    np.testing.assert_allclose(ds["model_rdms"].sel(model="monkeyIT").values, ds["monkey_it"].values, atol=1e-6)


def test_ringach_shapes_and_ranges(shared_data):
    ds = load_ringach2002(shared_data / "ringach2002")
    assert ds.sizes["neuron"] == 308
    cv = ds["circular_variance"].values
    assert np.all((cv >= 0) & (cv <= 1))
    assert ds["bandwidth"].attrs["units"] == "degree" and ds["f0"].attrs["units"] == "spikes/s"
    np.testing.assert_allclose(ds["modulation_ratio"], ds["f1"] / ds["f0"])
    assert "Ringach" in ds.attrs["citation"]
    # the file path itself works as well as its folder
    xr.testing.assert_identical(load_ringach2002(shared_data / "ringach2002" / "ringach_2002_db.mat").drop_attrs(),
                                ds.drop_attrs())


def test_v1_statistics(shared_data):
    ds = load_v1_statistics(shared_data)
    assert int(ds["simple_cell_shape_counts"].sum()) == ds["simple_cell_shape_counts"].attrs["n_cells"] == 79
    assert ds["orientation_preference_counts"].sizes["orientation"] == 4
    assert float(ds["eigenspectrum_alpha"]) == 1.0
    assert "Stringer" in ds["eigenspectrum_alpha"].attrs["citation"]
    assert "De Valois" in ds.attrs["citation"] and "Ringach" in ds.attrs["citation"]


@pytest.mark.parametrize("loader,folder,name", [
    (load_kriegeskorte2008, "kriegeskorte2008", "92_brainRDMs.mat"),
    (load_kriegeskorte2008, "kriegeskorte2008", "Kriegeskorte_Neuron2008_supplementalData.mat"),
    (load_ringach2002, "ringach2002", "ringach_2002_db.mat"),
])
def test_corrupt_file_raises_an_error_naming_it(shared_data, tmp_path, loader, folder, name):
    copy = tmp_path / folder
    shutil.copytree(shared_data / folder, copy)
    target = copy / name
    raw = target.read_bytes()
    target.write_bytes(raw[:200] + b"\x00garbage" * 50)  # header survives, the rest is damaged
    with pytest.raises(ValueError, match=name):
        loader(copy)


def test_missing_file_and_wrong_file(shared_data, tmp_path):
    with pytest.raises(FileNotFoundError, match="92_modelRDMs.mat"):
        folder = tmp_path / "k"
        shutil.copytree(shared_data / "kriegeskorte2008", folder)
        (folder / "92_modelRDMs.mat").unlink()
        load_kriegeskorte2008(folder)
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    shutil.copy(shared_data / "kriegeskorte2008" / "92_modelRDMs.mat", wrong / "ringach_2002_db.mat")
    with pytest.raises(ValueError, match="no variable 'db'"):
        load_ringach2002(wrong)
    bad_json = tmp_path / "v1_statistics.json"
    bad_json.write_text("{not json")
    with pytest.raises(ValueError, match="v1_statistics.json"):
        load_v1_statistics(bad_json)
    bad_json.write_text('{"ringach2002_simple_cell_shape": {}}')
    with pytest.raises(ValueError, match="v1_statistics.json"):
        load_v1_statistics(bad_json)


def test_loaders_round_trip_through_netcdf(shared_data, kriegeskorte, tmp_path):
    for name, ds in [("k", kriegeskorte), ("r", load_ringach2002(shared_data / "ringach2002")),
                     ("v", load_v1_statistics(shared_data))]:
        path = save(ds, tmp_path / f"{name}.nc")
        xr.testing.assert_identical(load(path), ds)


def test_resize_images(kriegeskorte):
    x = resize_images(kriegeskorte["image"], 32)
    assert x.shape == (92, 3, 32, 32) and x.dtype == torch.uint8
    # area-like downsampling preserves the mean intensity of each image
    np.testing.assert_allclose(x.float().mean((1, 2, 3)).numpy(),
                               kriegeskorte["image"].values.mean((1, 2, 3)), atol=2.0)
    gray = resize_images(kriegeskorte["image"], (28, 28), channels=1)
    assert gray.shape == (92, 1, 28, 28)
    with pytest.raises(ValueError, match="channels must be 1 or 3"):
        resize_images(kriegeskorte["image"], 32, channels=2)
    with pytest.raises(ValueError, match="uint8"):
        resize_images(kriegeskorte["image"].values.astype(float), 32)
