"""Analytic FLOPs of the feature extractors.

Convention: FLOPs = 2 x multiply-accumulates (MACs), the convention of
``torch.utils.flop_counter.FlopCounterMode``; bias additions, batch norm, ReLU and pooling are
not counted (they are O(sites x channels), negligible next to the convolutions).

* dense conv: every output site x kernel volume x C_in x C_out MACs;
* submanifold conv: for every active site, its kernel taps that do not fall on an inactive
  site, x C_in x C_out MACs: the paper's a*m*n (a = active neighbours, itself included) plus the
  taps on the map's zero padding, which the dense count also includes. So a fully active map
  costs exactly what the dense conv costs, and MESM at p = 1 reports FE2E's count; with the
  padding taps left out, MESM at p = 1 would report about 10% less than FE2E for 48x48 faces,
  a border effect, not a saving of the sparse method (``count_padding=False`` gives that count).
* linear: in_features x out_features MACs per row.

Letters: B items (frames), N active sites.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mesm.models.sparse import INACTIVE, SparseMap, SubmanifoldConv2d

FLOPS_PER_MAC = 2


def conv2d_flops(
    in_channels: int, out_channels: int, kernel_size: tuple[int, int], output_size: tuple[int, int]
) -> int:
    """FLOPs of a dense 2-D convolution for one map."""
    kernel_volume = kernel_size[0] * kernel_size[1]
    sites = output_size[0] * output_size[1]
    return FLOPS_PER_MAC * sites * kernel_volume * in_channels * out_channels


def linear_flops(layer: nn.Linear) -> int:
    """FLOPs of a linear layer for one input row."""
    return FLOPS_PER_MAC * layer.in_features * layer.out_features


def dense_flops(module: nn.Module, input_size: tuple[int, int]) -> tuple[int, tuple[int, int]]:
    """FLOPs of a dense stack for one map, walking its layers in order.

    Only ``nn.Conv2d`` (stride 1, 'same' padding or any padding), ``nn.MaxPool2d`` (to track the
    spatial size) and ``nn.Linear`` are counted.

    Returns:
        (FLOPs, spatial size after the stack).
    """
    height, width = input_size
    total = 0
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            kernel = (int(layer.kernel_size[0]), int(layer.kernel_size[1]))
            padding = layer.padding
            if isinstance(padding, str):
                raise ValueError("string padding is not supported by the FLOP count")
            stride = layer.stride
            height = (height + 2 * padding[0] - kernel[0]) // stride[0] + 1
            width = (width + 2 * padding[1] - kernel[1]) // stride[1] + 1
            total += conv2d_flops(layer.in_channels, layer.out_channels, kernel, (height, width))
        elif isinstance(layer, nn.MaxPool2d):
            pool = layer.kernel_size if isinstance(layer.kernel_size, int) else layer.kernel_size[0]
            height, width = height // pool, width // pool
        elif isinstance(layer, nn.Linear):
            total += linear_flops(layer)
    return total, (height, width)


def submanifold_conv_flops(
    sparse: SparseMap, conv: SubmanifoldConv2d, count_padding: bool = True
) -> Tensor:
    """(B,) FLOPs of a submanifold conv on ``sparse``, per item (frame).

    Uses the same neighbour table as the torch backend (cached on the map).

    Args:
        sparse: the conv's input sites.
        conv: the conv.
        count_padding: also count the taps outside the map, as the dense count does.
    """
    neighbours = sparse.neighbour_table(conv.kernel_size)  # (N, K)
    counted = neighbours != INACTIVE if count_padding else neighbours >= 0
    active_neighbours = counted.sum(dim=1)  # (N,)
    per_item = torch.zeros(sparse.batch_size, dtype=torch.float64, device=neighbours.device)
    per_item = per_item.index_add(0, sparse.coords[:, 0], active_neighbours.double())
    return per_item * (FLOPS_PER_MAC * conv.in_channels * conv.out_channels)


__all__ = [
    "FLOPS_PER_MAC",
    "conv2d_flops",
    "dense_flops",
    "linear_flops",
    "submanifold_conv_flops",
]
