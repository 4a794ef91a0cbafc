"""Analytic FLOPs: hand computation, FlopCounterMode cross-check, MESM vs FE2E."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from mesm.models.encoders import DenseFrameCNN, SparseFrameCNN
from mesm.models.flops import conv2d_flops, dense_flops, submanifold_conv_flops
from mesm.models.sparse import SparseMap, SubmanifoldConv2d


def test_tiny_conv_hand_computed() -> None:
    # 2 -> 3 channels, 3x3 kernel, 4x5 output: 20 sites * 9 taps * 2 * 3 = 1080 MACs.
    assert conv2d_flops(2, 3, (3, 3), (4, 5)) == 2 * 1080
    conv = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.MaxPool2d(2), nn.Flatten())
    assert dense_flops(conv, (4, 5)) == (2 * 1080, (2, 2))


def test_submanifold_flops_hand_computed() -> None:
    # Sites (0,0) and (0,1) of a 3x3 map. Site (0,0): 1 active neighbour besides itself,
    # 5 taps outside the map; site (0,1): 1 active neighbour, 3 outside.
    sparse = SparseMap(
        features=torch.zeros(2, 2),
        coords=torch.tensor([[0, 0, 0], [0, 0, 1]]),
        spatial_size=(3, 3),
        batch_size=2,
    )
    conv = SubmanifoldConv2d(2, 3)
    paper = submanifold_conv_flops(sparse, conv, count_padding=False)
    assert paper.tolist() == [2 * (2 + 2) * 2 * 3, 0.0]
    padded = submanifold_conv_flops(sparse, conv)
    assert padded.tolist() == [2 * (7 + 5) * 2 * 3, 0.0]


def test_dense_frame_cnn_matches_flop_counter() -> None:
    cnn = DenseFrameCNN(3, (48, 48), 64).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        output = cnn(torch.randn(2, 3, 48, 48))
    assert counter.get_total_flops() == 2 * cnn.frame_flops
    assert output.flops.tolist() == [cnn.frame_flops] * 2


def test_mesm_at_p_one_counts_fe2e_and_falls_with_p() -> None:
    torch.manual_seed(0)
    dense = DenseFrameCNN(1, (128, 32), 16).eval()
    sparse = SparseFrameCNN(1, (128, 32), 16, query_dim=8, top_p=1.0, sparse_backend="torch")
    sparse.eval()
    frames, queries = torch.randn(2, 1, 128, 32), torch.randn(2, 8)
    previous = None
    with torch.no_grad():
        for top_p in (1.0, 0.9, 0.7, 0.5, 0.3, 0.1):
            sparse.top_p = top_p
            flops = sparse(frames, queries).flops
            if top_p == 1.0:
                assert flops.tolist() == [float(dense.frame_flops)] * 2
            else:
                assert previous is not None and (flops < previous).all()
            previous = flops
