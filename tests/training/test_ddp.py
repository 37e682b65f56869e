"""Data-parallel training with torch.distributed (gloo, 2 CPU processes spawned with torch.multiprocessing):
the gradients of every forward and feedback parameter of a converted CNN equal those of one process on the
same global batch, and the trainer's DDP run ends with the single-process run's weights. Also: a CNN run
with augmentation and normative SVD re-initialisation, interrupted after an epoch and resumed from its
checkpoint, ends with the weights of an uninterrupted run."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

import bioplastic
from bioplastic.architectures import build_model
from bioplastic.data import ArrayDataset
from bioplastic.data.augment import RandomCropFlip
from bioplastic.data.cifar10 import Normalize

WORLD = 2
# no BatchNorm: its batch statistics are per rank under DDP, so gradients would legitimately differ
SPEC = {"name": "ddp_cnn", "architecture": "vgg", "in_channels": 3, "n_classes": 4, "widths": [6, 8],
        "convs_per_block": 1, "head_widths": [12], "batch_norm": False}
RULES = {
    "bp": {},
    "fa": {},
    "ldfa_local": {"rank": 2, "feedback_learning": "local"},
    "ldfa_normative": {"rank": 2, "feedback_learning": "normative"},
}


def _batch(n=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 8, 8, generator=g), torch.randint(0, 4, (n,), generator=g)


def _model(rule: str) -> torch.nn.Module:
    torch.manual_seed(0)
    name = rule.split("_")[0]
    return bioplastic.convert(build_model(SPEC), bioplastic.rules.make(name, **RULES[rule]), seed=1)


def _grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def _tiny_dataset() -> ArrayDataset:
    g = torch.Generator().manual_seed(3)
    x = torch.randint(0, 256, (40, 3, 8, 8), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 4, (40,), generator=g)
    return ArrayDataset(name="tiny", x_train=x[:30], y_train=y[:30], x_test=x[30:], y_test=y[30:],
                        classes=["a", "b", "c", "d"], transform=Normalize([0.5] * 3, [0.25] * 3),
                        augment=RandomCropFlip(1))


def _config(rule: str, **kw):
    from bioplastic.training import TrainConfig

    name = rule.split("_")[0]
    base = dict(model=SPEC, rule=name, rule_options=RULES[rule], epochs=2, batch_size=10, optimizer="sgd",
                lr=0.05, schedule="cosine", warmup_epochs=0.5, seed=0, device="cpu", alignment=False)
    return TrainConfig(**{**base, **kw})


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        x, y = _batch()
        shard_x, shard_y = torch.tensor_split(x, WORLD)[rank], torch.tensor_split(y, WORLD)[rank]
        grads = {}
        for rule in RULES:
            model = torch.nn.parallel.DistributedDataParallel(_model(rule))
            # sum over the shard / global batch * world: DDP's average is the gradient of the global mean
            loss = F.cross_entropy(model(shard_x), shard_y, reduction="sum") * (WORLD / len(y))
            loss.backward()
            grads[rule] = _grads(model.module)
        from bioplastic.training.trainer import train

        result = train(_config("ldfa_local"), _tiny_dataset(), progress=False)
        if rank == 0:
            torch.save({"grads": grads, "state": result.model.state_dict(),
                        "loss": torch.as_tensor(result.train_loss)}, Path(out_dir) / "rank0.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(str(tmp / "rendezvous"), str(tmp)), nprocs=WORLD, join=True)
    return torch.load(tmp / "rank0.pt")


@pytest.mark.parametrize("rule", list(RULES))
def test_ddp_gradients_equal_single_process(ddp_results, rule):
    x, y = _batch()
    model = _model(rule)
    F.cross_entropy(model(x), y).backward()
    expected = _grads(model)
    got = ddp_results["grads"][rule]
    assert set(got) == set(expected)
    if rule.startswith("ldfa"):
        assert any(n.endswith(".P") for n in got) and any(n.endswith(".Q") for n in got)
    for name, g in expected.items():
        torch.testing.assert_close(got[name], g, rtol=1e-5, atol=1e-6, msg=f"gradient of {name}")


def test_trainer_ddp_run_equals_single_process_run(ddp_results):
    from bioplastic.training.trainer import train

    single = train(_config("ldfa_local"), _tiny_dataset(), progress=False)
    for name, value in single.model.state_dict().items():
        torch.testing.assert_close(ddp_results["state"][name], value, rtol=1e-4, atol=1e-5, msg=name)
    torch.testing.assert_close(torch.as_tensor(ddp_results["loss"]), torch.as_tensor(single.train_loss),
                               rtol=1e-4, atol=1e-6)


class _Interrupt(Exception):
    pass


def test_cnn_resume_after_interruption_equals_uninterrupted(tmp_path):
    from bioplastic.training.trainer import train

    spec = {**SPEC, "batch_norm": True}  # BN running statistics must be restored too
    cfg = _config("ldfa_normative", model=spec, epochs=3, optimizer="adamw", lr=0.01,
                  rule_options={"rank": 2, "feedback_learning": "normative", "reinit_every": 2})
    full = train(cfg, _tiny_dataset(), progress=False)

    def stop_after_first(epoch, record):
        if epoch == 1:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        train(cfg, _tiny_dataset(), checkpoint_dir=tmp_path, progress=False, callbacks=[stop_after_first])
    resumed = train(cfg, _tiny_dataset(), checkpoint_dir=tmp_path, progress=False)
    for name, value in full.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], value), name
    assert list(resumed.test_accuracy) == list(full.test_accuracy)
