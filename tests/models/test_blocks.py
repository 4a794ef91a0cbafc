"""The shared VGG recipe: output sizes and identical dense/sparse parameter layouts."""

from __future__ import annotations

import pytest
import torch

from mesm.models.blocks import DENSE_LAYERS, VGGStack, sparse_layers


@pytest.mark.parametrize(
    "in_channels,size,expected",
    [(3, (48, 48), (512, 3, 3)), (1, (128, 32), (512, 8, 2))],
)
def test_dense_stack_output_shape_matches_arithmetic(
    in_channels: int, size: tuple[int, int], expected: tuple[int, int, int]
) -> None:
    stack = VGGStack(in_channels, DENSE_LAYERS, DENSE_LAYERS).eval()
    with torch.no_grad():
        x = stack.lower(torch.randn(1, in_channels, *size))
        sizes = [tuple(x.shape[2:])]
        for block in stack.upper:
            x = block(x)
            sizes.append(tuple(x.shape[2:]))
    assert tuple(x.shape[1:]) == expected == VGGStack.output_shape(size)
    assert sizes == VGGStack.level_sizes(size)


def test_level_sizes_follow_the_paper() -> None:
    assert VGGStack.level_sizes((48, 48)) == [(24, 24), (12, 12), (6, 6), (3, 3)]
    assert VGGStack.level_sizes((128, 32)) == [(64, 16), (32, 8), (16, 4), (8, 2)]
    with pytest.raises(ValueError, match="too small"):
        VGGStack.output_shape((8, 8))


def test_dense_and_sparse_stacks_share_parameter_layout() -> None:
    dense = VGGStack(3, DENSE_LAYERS, DENSE_LAYERS)
    sparse = VGGStack(3, DENSE_LAYERS, sparse_layers("torch"))
    dense_state = dense.state_dict()
    sparse_state = sparse.state_dict()
    assert dense_state.keys() == sparse_state.keys()
    assert all(dense_state[k].shape == sparse_state[k].shape for k in dense_state)
    sparse.load_state_dict(dense_state)  # strict
    assert sparse.upper_in_channels == (64, 128, 256)
