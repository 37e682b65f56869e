"""Issue 16 item 12: ``RateNetwork.to`` accepts what ``torch.nn.Module.to`` accepts, or says what to pass."""
from __future__ import annotations

import pytest
import torch

from bioplastic.rate import RateNetwork


def _net():
    return RateNetwork.from_sizes([4, 3, 2], feedback_rank=1, seed=5)


@pytest.mark.parametrize("call", [
    lambda n: n.to(torch.float64),
    lambda n: n.to(dtype=torch.float64),
    lambda n: n.to("cpu", torch.float64),
    lambda n: n.to(torch.device("cpu"), dtype=torch.float64),
    lambda n: n.to(device="cpu", dtype=torch.float64),
    lambda n: n.to(torch.zeros(1, dtype=torch.float64)),
    lambda n: n.to(torch.float64, non_blocking=True),
])
def test_to_accepts_what_module_to_accepts(call):
    net = _net()
    new = call(net)
    assert new.dtype == torch.float64 and new.device == torch.device("cpu")
    assert all(w.dtype == torch.float64 for w in new.weights.values())
    # a copy: the original is unchanged, the weights are the same numbers
    assert net.dtype == torch.float32 and all(w.dtype == torch.float32 for w in net.weights.values())
    for k, w in net.weights.items():
        torch.testing.assert_close(new.weights[k], w.double(), rtol=0, atol=0)
    # the float64 copy runs in float64
    x = torch.rand(2, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert new.predict(x).dtype == torch.float64


def test_to_device_only_keeps_dtype():
    net = _net().to(torch.float64)
    for new in (net.to("cpu"), net.to(torch.device("cpu")), net.to(device="cpu")):
        assert new.dtype == torch.float64 and new.device == torch.device("cpu")


def test_to_refuses_bad_arguments_saying_what_to_pass():
    net = _net()
    with pytest.raises(TypeError, match=r"accepts what torch.nn.Module.to accepts: net.to\(dtype\)"):
        net.to(3.5)
    with pytest.raises(TypeError, match="net.to\\(device=..., dtype=...\\)"):
        net.to(colour="red")
    with pytest.raises(ValueError, match="real floating-point torch dtype.*torch.int64"):
        net.to(torch.int64)
    with pytest.raises(ValueError, match="real floating-point"):
        net.to(torch.complex64)
