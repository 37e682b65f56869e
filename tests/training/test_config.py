"""A run's configuration is resolved once: the spec is read by TrainConfig's construction alone, the rule built
once; train() reads neither again. The options are declared once (field metadata)."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from bioplastic import rules
from bioplastic.architectures import spec as spec_mod
from bioplastic.data import load_dataset
from bioplastic.training import config as C
from bioplastic.training.trainer import train


@pytest.fixture
def reads(monkeypatch):
    """Records every spec read from a name or file (a dict is a copy, not a read)."""
    seen = []
    real = spec_mod.load_spec

    def load_spec(spec):
        if not isinstance(spec, dict):
            seen.append(spec)
        return real(spec)

    monkeypatch.setattr(spec_mod, "load_spec", load_spec)
    return seen


def test_spec_read_once_on_construction_and_never_again(reads, monkeypatch):
    torch.set_num_threads(1)
    cfg = C.TrainConfig(model="mlp_digits", epochs=1, batch_size=64, device="cpu", alignment=False)
    assert reads == ["mlp_digits"] and isinstance(cfg.model, dict) and cfg.model["name"] == "mlp_digits"
    dataclasses.replace(cfg, seed=1)
    C.TrainConfig(**cfg.to_dict())
    built = []
    real_make = rules.make
    monkeypatch.setattr(rules, "make", lambda rule, **k: (built.append(rule) if isinstance(rule, str) else None)
                        or real_make(rule, **k))
    result = train(cfg, load_dataset("digits"), progress=False)
    assert reads == ["mlp_digits"]  # replace(), TrainConfig(**d) and train() read no spec
    assert built == []  # train() builds no rule from its name: it uses the one the config built
    assert result.config["model"]["name"] == "mlp_digits"


def test_recipe_defaults_and_docstring_come_from_the_fields():
    recipe = {f.name for f in dataclasses.fields(C.TrainConfig) if "recipe_default" in f.metadata}
    assert set(C.RECIPE_DEFAULTS) == recipe
    for f in dataclasses.fields(C.TrainConfig):
        assert f.metadata["help"], f.name
        assert f"\n{f.name} : " in C.TrainConfig.__doc__, f.name
