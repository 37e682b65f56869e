"""Small float64 models shared by the nn tests (float64 so that 'exact' means ~1e-12)."""
import pytest
import torch
import torch.nn as nn


@pytest.fixture(autouse=True)
def _one_thread(_few_threads):
    # These tests use tiny tensors: extra threads only add contention on a shared machine.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def mlp(bias=True):
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(12, 16, bias=bias), nn.Tanh(), nn.Linear(16, 16, bias=bias), nn.ReLU(), nn.Linear(16, 5, bias=bias)
    ).double()


def convnet(bias=True):
    """Stride, padding, dilation, groups, 'same' padding and a non-zero padding mode."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=bias), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=2, bias=bias), nn.Tanh(),
        nn.Conv2d(8, 6, 2, padding="same", padding_mode="reflect", bias=bias), nn.BatchNorm2d(6), nn.ReLU(),
        nn.Flatten(), nn.Linear(6 * 4 * 4, 5, bias=bias),
    ).double()


@pytest.fixture
def batch_mlp():
    g = torch.Generator().manual_seed(1)
    return torch.randn(7, 12, generator=g, dtype=torch.float64), torch.randint(0, 5, (7,), generator=g)


@pytest.fixture
def batch_conv():
    g = torch.Generator().manual_seed(2)
    return torch.randn(4, 3, 8, 8, generator=g, dtype=torch.float64), torch.randint(0, 5, (4,), generator=g)
