"""DistributedDataParallel (gloo, 2 CPU processes) treats feedback parameters like any other parameter."""
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
import torch.nn.functional as F

import bioplastic
from bioplastic.rules import make


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)).double()


def _data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(8, 6, generator=g, dtype=torch.float64), torch.randint(0, 3, (8,), generator=g)


def _worker(rank, world, port, path):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    net = bioplastic.convert(_model(), make("ldfa", rank=2, feedback_learning="local"), seed=0)
    ddp = nn.parallel.DistributedDataParallel(net)
    x, y = _data()
    shard = slice(rank * 4, rank * 4 + 4)
    F.cross_entropy(ddp(x[shard]), y[shard]).backward()
    if rank == 0:
        torch.save({n: p.grad for n, p in net.named_parameters() if p.grad is not None}, path)
    dist.barrier()
    dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_averages_feedback_gradients(tmp_path):
    path = str(tmp_path / "grads.pt")
    mp.spawn(_worker, args=(2, _free_port(), path), nprocs=2, join=True)
    got = torch.load(path)
    net = bioplastic.convert(_model(), make("ldfa", rank=2, feedback_learning="local"), seed=0)
    x, y = _data()
    F.cross_entropy(net(x), y).backward()  # mean over 8 = average of the two shards' means
    assert {"0.P", "0.Q", "2.P", "2.Q"} <= set(got)
    for n, p in net.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(got[n], p.grad, rtol=1e-10, atol=1e-12)
