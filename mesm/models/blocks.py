"""The one VGG recipe of FE2E and MESM, built from interchangeable layer factories.

The per-frame CNN (MESM.md section 3) is: a 5x5 conv (C_in -> 64) + BN + ReLU + 2x2 max-pool;
two VGG blocks 64 -> 64 without pooling (the "lower" part, always dense); then three VGG blocks
64 -> 128 -> 256 -> 512, each followed by a 2x2 max-pool (the "upper" part, dense in FE2E, sparse
in MESM). A VGG block is two 3x3 conv + BN + ReLU. Faces 3x48x48 end at 512x3x3, mel chunks
1x128x32 at 512x8x2.

Dense and sparse stacks are the same code with different :class:`LayerKinds`, so their parameter
names and shapes agree and a FE2E checkpoint loads into MESM.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from mesm.models.sparse import SparseBatchNorm, SparseMaxPool2d, SparseReLU, SubmanifoldConv2d

STEM_CHANNELS = 64
STEM_KERNEL = 5
BLOCK_KERNEL = 3
LOWER_BLOCKS = 2
UPPER_WIDTHS: tuple[int, ...] = (128, 256, 512)
POOL = 2


@dataclass(frozen=True)
class LayerKinds:
    """Factories of the layers a VGG stack is made of.

    Attributes:
        conv: (in_channels, out_channels, kernel_size) -> stride-1 'same' convolution.
        norm: channels -> batch norm.
        act: () -> activation.
        pool: () -> 2x2 stride-2 max-pool.
    """

    conv: Callable[[int, int, int], nn.Module]
    norm: Callable[[int], nn.Module]
    act: Callable[[], nn.Module]
    pool: Callable[[], nn.Module]


def _dense_conv(in_channels: int, out_channels: int, kernel_size: int) -> nn.Module:
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)


DENSE_LAYERS = LayerKinds(
    conv=_dense_conv,
    norm=nn.BatchNorm2d,
    act=nn.ReLU,
    pool=lambda: nn.MaxPool2d(POOL),
)


def sparse_layers(backend: str = "auto") -> LayerKinds:
    """Submanifold-sparse layer kinds for the given sparse backend."""

    def conv(in_channels: int, out_channels: int, kernel_size: int) -> nn.Module:
        return SubmanifoldConv2d(in_channels, out_channels, kernel_size, backend=backend)

    return LayerKinds(
        conv=conv, norm=SparseBatchNorm, act=SparseReLU, pool=lambda: SparseMaxPool2d(POOL)
    )


def conv_unit(
    kinds: LayerKinds, in_channels: int, out_channels: int, kernel_size: int, index: int
) -> list[tuple[str, nn.Module]]:
    """conv + norm + act, named ``conv{index}``, ``norm{index}``, ``act{index}``."""
    return [
        (f"conv{index}", kinds.conv(in_channels, out_channels, kernel_size)),
        (f"norm{index}", kinds.norm(out_channels)),
        (f"act{index}", kinds.act()),
    ]


def vgg_block(kinds: LayerKinds, in_channels: int, out_channels: int, pool: bool) -> nn.Sequential:
    """Two 3x3 conv + norm + act, optionally followed by a 2x2 max-pool."""
    layers = conv_unit(kinds, in_channels, out_channels, BLOCK_KERNEL, 1)
    layers += conv_unit(kinds, out_channels, out_channels, BLOCK_KERNEL, 2)
    if pool:
        layers.append(("pool", kinds.pool()))
    return nn.Sequential(OrderedDict(layers))


def stem(kinds: LayerKinds, in_channels: int) -> nn.Sequential:
    """5x5 conv (in_channels -> 64) + norm + act + 2x2 max-pool."""
    layers = conv_unit(kinds, in_channels, STEM_CHANNELS, STEM_KERNEL, 1)
    layers.append(("pool", kinds.pool()))
    return nn.Sequential(OrderedDict(layers))


class VGGStack(nn.Module):
    """The per-frame CNN trunk: ``lower`` (stem + two 64-channel blocks) and ``upper`` blocks.

    ``lower`` maps (F, C_in, H, W) -> (F, 64, H/2, W/2); each ``upper[i]`` maps its input to
    ``UPPER_WIDTHS[i]`` channels and halves the spatial size. The caller runs ``upper``
    itself (MESM inserts attention between the blocks).
    """

    def __init__(self, in_channels: int, lower_kinds: LayerKinds, upper_kinds: LayerKinds) -> None:
        super().__init__()
        lower: list[tuple[str, nn.Module]] = [("stem", stem(lower_kinds, in_channels))]
        for index in range(LOWER_BLOCKS):
            block = vgg_block(lower_kinds, STEM_CHANNELS, STEM_CHANNELS, pool=False)
            lower.append((f"block{index + 1}", block))
        self.lower = nn.Sequential(OrderedDict(lower))
        widths = (STEM_CHANNELS, *UPPER_WIDTHS)
        self.upper = nn.ModuleList(
            vgg_block(upper_kinds, widths[i], widths[i + 1], pool=True)
            for i in range(len(UPPER_WIDTHS))
        )
        self.in_channels = in_channels

    @property
    def upper_in_channels(self) -> tuple[int, ...]:
        """Input channels of each upper block (the attention sizes k of MESM: 64, 128, 256)."""
        return (STEM_CHANNELS, *UPPER_WIDTHS[:-1])

    @staticmethod
    def level_sizes(input_size: tuple[int, int]) -> list[tuple[int, int]]:
        """Spatial size entering each upper block, then the output size (floor pooling)."""
        height, width = input_size[0] // POOL, input_size[1] // POOL
        sizes = [(height, width)]
        for _ in UPPER_WIDTHS:
            height, width = height // POOL, width // POOL
            sizes.append((height, width))
        return sizes

    @classmethod
    def output_shape(cls, input_size: tuple[int, int]) -> tuple[int, int, int]:
        """(C, H, W) of the trunk's output for an (H, W) input, by arithmetic."""
        height, width = cls.level_sizes(input_size)[-1]
        if height < 1 or width < 1:
            raise ValueError(f"input size {input_size} is too small for 4 max-pools")
        return UPPER_WIDTHS[-1], height, width


__all__ = [
    "DENSE_LAYERS",
    "LayerKinds",
    "VGGStack",
    "sparse_layers",
    "stem",
    "vgg_block",
]
