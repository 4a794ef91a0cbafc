"""The spconv backend against the torch backend (GPU hosts with spconv 2.x only)."""

from __future__ import annotations

import pytest
import torch

from mesm.models.sparse import SparseMap, SubmanifoldConv2d, spconv_available

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
    pytest.mark.skipif(
        not spconv_available(), reason="needs spconv 2.x (the `cuda` extra, spconv-cu120)"
    ),
]


@pytest.mark.parametrize("density", [0.3, 1.0])
def test_spconv_equals_torch_forward_and_backward(density: float) -> None:
    torch.manual_seed(0)
    device = torch.device("cuda")
    dense = torch.randn(4, 16, 12, 9, device=device)
    active = torch.rand(4, 12, 9, device=device) < density
    active[0] = False
    reference = SubmanifoldConv2d(16, 32, backend="torch").to(device)
    fast = SubmanifoldConv2d(16, 32, backend="spconv").to(device)
    fast.load_state_dict(reference.state_dict())  # one checkpoint layout for both backends
    sparse = SparseMap.from_dense(dense, active)
    outputs, grads = [], []
    for conv in (reference, fast):
        features = sparse.features.detach().clone().requires_grad_(True)
        out = conv(sparse.with_features(features)).features
        out.square().sum().backward()
        outputs.append(out)
        grads.append((features.grad, conv.weight.grad, conv.bias.grad))
    torch.testing.assert_close(outputs[1], outputs[0], atol=1e-3, rtol=1e-3)
    for fast_grad, reference_grad in zip(grads[1], grads[0], strict=True):
        torch.testing.assert_close(fast_grad, reference_grad, atol=1e-2, rtol=1e-3)


def test_auto_backend_picks_spconv_on_cuda() -> None:
    from mesm.models.sparse import resolve_backend

    assert resolve_backend("auto", torch.device("cuda")) == "spconv"
