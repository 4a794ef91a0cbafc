"""Torch sparse backend against dense references."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from mesm.models.sparse import (
    SparseBatchNorm,
    SparseMap,
    SubmanifoldConv2d,
    resolve_backend,
    sparse_max_pool2d,
)


def random_map(
    items: int, channels: int, size: tuple[int, int], density: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    dense = torch.randn(items, channels, *size, generator=generator, dtype=torch.float64)
    active = torch.rand(items, *size, generator=generator) < density
    active[0] = False  # an empty item must be handled
    return dense, active


@pytest.mark.parametrize("seed,density", [(0, 0.3), (1, 0.7), (2, 1.0)])
def test_submanifold_conv_equals_masked_dense_conv(seed: int, density: float) -> None:
    dense, active = random_map(3, 4, (7, 5), density, seed)
    active[0] = False
    conv = SubmanifoldConv2d(4, 6, 3, backend="torch").double()
    sparse = SparseMap.from_dense(dense * active[:, None], active)
    features = sparse.features.detach().requires_grad_(True)
    out = conv(sparse.with_features(features))
    # Reference: dense conv of the zero-filled map, read at the active sites.
    zero_filled = (dense * active[:, None]).requires_grad_(True)
    weight = conv.weight.detach().clone().requires_grad_(True)
    reference = F.conv2d(zero_filled, weight, conv.bias, padding=1)
    reference_sites = reference.permute(0, 2, 3, 1)[active]
    torch.testing.assert_close(out.features, reference_sites)
    assert torch.equal(out.coords, sparse.coords)
    # Gradients: input features at active sites and the weight.
    upstream = torch.randn_like(reference_sites)
    (out.features * upstream).sum().backward()
    (reference_sites * upstream).sum().backward()
    assert zero_filled.grad is not None and features.grad is not None
    torch.testing.assert_close(features.grad, zero_filled.grad.permute(0, 2, 3, 1)[active])
    torch.testing.assert_close(conv.weight.grad, weight.grad)


def test_submanifold_conv_hand_computed() -> None:
    # Two active sites side by side, one channel, all weights 1, bias 0.5: each output is the
    # sum of both inputs plus the bias.
    conv = SubmanifoldConv2d(1, 1, 3, backend="torch")
    nn.init.ones_(conv.weight)
    nn.init.constant_(conv.bias, 0.5)
    sparse = SparseMap(
        features=torch.tensor([[1.0], [2.0]]),
        coords=torch.tensor([[0, 1, 1], [0, 1, 2]]),
        spatial_size=(4, 4),
        batch_size=1,
    )
    assert conv(sparse).features.flatten().tolist() == [3.5, 3.5]


def test_neighbour_table_marks_padding() -> None:
    sparse = SparseMap(
        features=torch.zeros(2, 1),
        coords=torch.tensor([[0, 0, 0], [0, 1, 1]]),
        spatial_size=(3, 3),
        batch_size=1,
    )
    table = sparse.neighbour_table(3)
    # Corner site: 5 of 9 taps outside the map, centre tap itself, diagonal neighbour active.
    assert table[0].tolist() == [-2, -2, -2, -2, 0, -1, -2, -1, 1]


@pytest.mark.parametrize("seed", [0, 1])
def test_sparse_max_pool_equals_dense_on_relu_features(seed: int) -> None:
    dense, active = random_map(3, 5, (9, 6), 0.4, seed)
    features = F.relu(dense) * active[:, None]  # ReLU'd, so inactive zeros never win wrongly
    sparse = SparseMap.from_dense(features, active)
    pooled = sparse_max_pool2d(sparse)
    reference = F.max_pool2d(features, 2)
    pooled_active = F.max_pool2d(active[:, None].double(), 2)[:, 0] > 0
    assert pooled.spatial_size == (4, 3)
    assert torch.equal(pooled.active_mask(), pooled_active)
    torch.testing.assert_close(pooled.features, reference.permute(0, 2, 3, 1)[pooled_active])
    torch.testing.assert_close(pooled.to_dense(), reference)


def test_sparse_max_pool_takes_max_over_active_only() -> None:
    sparse = SparseMap(
        features=torch.tensor([[-3.0], [-1.0]]),
        coords=torch.tensor([[0, 0, 0], [0, 1, 1]]),
        spatial_size=(2, 2),
        batch_size=1,
    )
    pooled = sparse_max_pool2d(sparse)
    assert pooled.features.item() == -1.0  # not 0 from the inactive sites


def test_sparse_batch_norm_matches_dense_when_all_active() -> None:
    dense = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    active = torch.ones(2, 4, 4, dtype=torch.bool)
    reference = nn.BatchNorm2d(3).double()
    sparse_norm = SparseBatchNorm(3).double()
    sparse_norm.load_state_dict(reference.state_dict())
    out = sparse_norm(SparseMap.from_dense(dense, active))
    torch.testing.assert_close(out.to_dense(), reference(dense))
    torch.testing.assert_close(sparse_norm.running_var, reference.running_var)


def test_sparse_batch_norm_statistics_over_active_sites_only() -> None:
    dense = torch.randn(2, 3, 4, 4)
    active = torch.rand(2, 4, 4) < 0.5
    active[0, 0, 0] = active[1, 0, 0] = True
    norm = SparseBatchNorm(3)
    out = norm(SparseMap.from_dense(dense, active))
    torch.testing.assert_close(out.features.mean(0), torch.zeros(3), atol=1e-5, rtol=0)


def test_dense_round_trip() -> None:
    dense, active = random_map(2, 3, (5, 4), 0.5, 3)
    sparse = SparseMap.from_dense(dense, active)
    torch.testing.assert_close(sparse.to_dense(), dense * active[:, None])
    assert torch.equal(sparse.sites_per_item(), active.flatten(1).sum(1))


def test_backend_resolution() -> None:
    assert resolve_backend("torch", torch.device("cpu")) == "torch"
    assert resolve_backend("auto", torch.device("cpu")) == "torch"
    with pytest.raises(RuntimeError, match="CUDA only"):
        resolve_backend("spconv", torch.device("cpu"))
    with pytest.raises(ValueError, match="unknown sparse backend"):
        SubmanifoldConv2d(1, 1, backend="sparseconvnet")


def test_conv_state_dict_matches_dense_conv() -> None:
    dense = nn.Conv2d(4, 8, 3, padding=1)
    sparse = SubmanifoldConv2d(4, 8, 3)
    sparse.load_state_dict(dense.state_dict())  # same names and shapes, strict
    assert sparse.state_dict().keys() == dense.state_dict().keys()


def test_spconv_weight_layouts() -> None:
    from mesm.models.sparse import spconv_weight_layout

    weight = torch.randn(8, 4, 3, 3)
    krsc = spconv_weight_layout(weight, (8, 3, 3, 4))
    assert torch.equal(krsc[:, 0, 2, :], weight[:, :, 0, 2])
    rsck = spconv_weight_layout(weight, (3, 3, 4, 8))
    assert torch.equal(rsck[0, 2], weight[:, :, 0, 2].t())
    with pytest.raises(ValueError, match="unexpected spconv weight shape"):
        spconv_weight_layout(weight, (3, 3, 8, 4))


@pytest.mark.parametrize("bias", [True, False])
def test_rulebook_conv_equals_reference_conv_and_gradients(bias: bool) -> None:
    from mesm.models.sparse import submanifold_conv_reference, submanifold_conv_torch

    dense, active = random_map(4, 5, (9, 7), 0.45, 4)
    sparse = SparseMap.from_dense(dense, active)
    conv = SubmanifoldConv2d(5, 3, 3, bias=bias, backend="torch").double()
    results = []
    for function in (submanifold_conv_reference, submanifold_conv_torch):
        conv.zero_grad()
        features = sparse.features.detach().clone().requires_grad_(True)
        out = function(sparse.with_features(features), conv.weight, conv.bias)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        bias_grad = None if conv.bias is None else conv.bias.grad.clone()
        results.append((out, features.grad, conv.weight.grad.clone(), bias_grad))
    for fast, reference in zip(results[1], results[0], strict=True):
        if reference is None:
            assert fast is None
        else:
            torch.testing.assert_close(fast, reference)


def test_rulebook_pairs_are_the_active_neighbours() -> None:
    sparse = SparseMap(
        features=torch.zeros(3, 1),
        coords=torch.tensor([[0, 0, 0], [0, 0, 1], [0, 2, 2]]),
        spatial_size=(3, 3),
        batch_size=1,
    )
    rules = {offset: (out.tolist(), inp.tolist()) for offset, out, inp in sparse.rulebook(3)}
    # Offset 5 is (dy, dx) = (0, +1): site 0's right neighbour is site 1; offset 3 the reverse.
    assert rules == {5: ([0], [1]), 3: ([1], [0])}


def test_sparse_max_pool_gradient_equals_dense() -> None:
    dense, active = random_map(3, 4, (8, 6), 0.5, 5)
    # Positive at active sites: an inactive zero never ties with the maximum.
    features = (dense.abs() + 0.1) * active[:, None]
    sparse = SparseMap.from_dense(features, active)
    sparse_in = sparse.features.detach().requires_grad_(True)
    pooled = sparse_max_pool2d(sparse.with_features(sparse_in))
    dense_in = features.clone().requires_grad_(True)
    reference = F.max_pool2d(dense_in, 2)
    upstream = torch.randn_like(reference)
    (pooled.to_dense() * upstream).sum().backward()
    (reference * upstream).sum().backward()
    torch.testing.assert_close(sparse_in.grad, dense_in.grad.permute(0, 2, 3, 1)[active])


def test_sparse_batch_norm_gradient_matches_dense() -> None:
    dense = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    active = torch.ones(2, 4, 5, dtype=torch.bool)
    reference = nn.BatchNorm2d(3).double()
    sparse_norm = SparseBatchNorm(3).double()
    dense_in = dense.clone().requires_grad_(True)
    sparse_in = SparseMap.from_dense(dense, active).features.detach().requires_grad_(True)
    upstream = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    (reference(dense_in) * upstream).sum().backward()
    out = sparse_norm(SparseMap(sparse_in, SparseMap.from_dense(dense, active).coords, (4, 5), 2))
    (out.to_dense() * upstream).sum().backward()
    torch.testing.assert_close(sparse_in.grad, dense_in.grad.permute(0, 2, 3, 1).reshape(-1, 3))
    torch.testing.assert_close(sparse_norm.weight.grad, reference.weight.grad)
