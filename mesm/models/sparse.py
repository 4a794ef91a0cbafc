"""Submanifold sparse convolution on 2-D feature maps, with a PyTorch and a spconv backend.

A :class:`SparseMap` holds the active sites of a batch of 2-D maps (here: the face frames or mel
chunks of a whole batch, one "item" per frame). Layers take and return a ``SparseMap``:

* :class:`SubmanifoldConv2d`: output sites == input sites; each output is the bias plus the sum
  over the kernel offsets of the active neighbours' features times that offset's weight.
* :class:`SparseBatchNorm`: batch statistics over active sites only; same parameters and buffers
  as ``nn.BatchNorm2d`` so dense weights load into it unchanged.
* :class:`SparseReLU`, :class:`SparseMaxPool2d` (2x2, stride 2) and :meth:`SparseMap.to_dense`.

Backends (``backend=`` of :class:`SubmanifoldConv2d`):

* ``"torch"``: a rulebook (per kernel offset, the pairs of active sites) built from a dense
  index grid (items x H x W, cheap at these sizes) and cached on the map, so the two convs of
  a block share it; per offset one gather, one matmul and one scatter-add over the active
  pairs only, with a hand-written backward; CPU and CUDA. :func:`submanifold_conv_reference`
  (an im2col gather-matmul differentiated by autograd) is the reference it is tested against.
* ``"spconv"``: spconv 2.x on CUDA, imported lazily. The module always stores its weight in the
  ``nn.Conv2d`` layout (C_out, C_in, kH, kW); the spconv layout is produced at call time by a
  differentiable permute, so checkpoints are identical between backends and need no conversion.
* ``"auto"``: spconv when the features are on CUDA and spconv imports, else torch.

Letters: N active sites, C channels, H, W spatial size, B items (frames).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812 (conventional alias)
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

BACKENDS: tuple[str, ...] = ("auto", "torch", "spconv")
INACTIVE = -1  # neighbour table entry: inactive site inside the map
OUTSIDE = -2  # neighbour table entry: position outside the map (a dense conv's zero padding)


@dataclass
class SparseMap:
    """Active sites of a batch of 2-D feature maps.

    Attributes:
        features: (N, C) features of the active sites.
        coords: (N, 3) int64 coordinates (item, y, x), sorted by item then y then x.
        spatial_size: (H, W) of the dense map.
        batch_size: number of items B (an item may have no active site).
        neighbours: cached (N, K) neighbour table of the torch backend (index of the active site
            at each kernel offset, -1 if inactive); shared by the convs that run on these sites.
        rulebooks: cached active (output, input) site pairs per kernel offset, per kernel size
            (see :meth:`rulebook`).
    """

    features: Tensor
    coords: Tensor
    spatial_size: tuple[int, int]
    batch_size: int
    neighbours: dict[int, Tensor] = field(default_factory=dict, repr=False)
    rulebooks: dict[int, list[tuple[int, Tensor, Tensor]]] = field(default_factory=dict, repr=False)

    @property
    def num_sites(self) -> int:
        return int(self.coords.shape[0])

    def with_features(self, features: Tensor) -> SparseMap:
        """Same sites (and cached neighbour tables), new (N, C') features."""
        return replace(self, features=features)

    def sites_per_item(self) -> Tensor:
        """(B,) number of active sites of each item."""
        return torch.bincount(self.coords[:, 0], minlength=self.batch_size)

    @classmethod
    def from_dense(cls, dense: Tensor, active: Tensor) -> SparseMap:
        """Sparse map of ``dense`` at the ``active`` sites.

        Args:
            dense: (B, C, H, W) feature map.
            active: (B, H, W) bool, True at active sites.
        """
        if active.shape != (dense.shape[0], *dense.shape[2:]):
            raise ValueError(
                f"active mask {tuple(active.shape)} does not match map {tuple(dense.shape)}"
            )
        coords = active.nonzero()  # (N, 3) in (item, y, x) row-major order
        flat = dense.permute(0, 2, 3, 1).reshape(-1, dense.shape[1])  # -> (B*H*W, C)
        if coords.shape[0] == flat.shape[0]:
            features = flat  # every site active: no gather (and a cheap backward)
        else:
            # index_select's backward is an index_add, much cheaper on CPU than the
            # accumulating index_put of boolean-mask indexing.
            features = flat.index_select(0, active.flatten().nonzero().squeeze(1))
        return cls(
            features=features,
            coords=coords,
            spatial_size=(int(dense.shape[2]), int(dense.shape[3])),
            batch_size=int(dense.shape[0]),
        )

    def to_dense(self) -> Tensor:
        """(B, C, H, W) map, zero at inactive sites."""
        height, width = self.spatial_size
        channels = self.features.shape[1]
        dense = self.features.new_zeros(self.batch_size, height, width, channels)
        item, y, x = self.coords.unbind(dim=1)
        dense = dense.index_put((item, y, x), self.features)
        return dense.permute(0, 3, 1, 2)  # (B, H, W, C) -> (B, C, H, W)

    def active_mask(self) -> Tensor:
        """(B, H, W) bool, True at active sites."""
        height, width = self.spatial_size
        mask = torch.zeros(
            self.batch_size, height, width, dtype=torch.bool, device=self.coords.device
        )
        item, y, x = self.coords.unbind(dim=1)
        mask[item, y, x] = True
        return mask

    def rulebook(self, kernel_size: int) -> list[tuple[int, Tensor, Tensor]]:
        """Active pairs per kernel offset: ``(offset, out_index, in_index)`` for each offset.

        ``in_index[m]`` is the active neighbour at ``offset`` of site ``out_index[m]`` (both
        (M,) int64, ``out_index`` ascending). The centre offset (every site with itself) and
        offsets without any pair are left out. Cached per kernel size.
        """
        if kernel_size not in self.rulebooks:
            neighbours = self.neighbour_table(kernel_size)  # (N, K)
            centre = kernel_size * kernel_size // 2
            rules = []
            for offset in range(kernel_size * kernel_size):
                if offset == centre:
                    continue
                out_index = (neighbours[:, offset] >= 0).nonzero().squeeze(1)
                if out_index.numel():
                    rules.append((offset, out_index, neighbours[out_index, offset]))
            self.rulebooks[kernel_size] = rules
        return self.rulebooks[kernel_size]

    def neighbour_table(self, kernel_size: int) -> Tensor:
        """(N, K) index of the active site at each of the K = kernel_size**2 offsets.

        Inactive neighbours are ``INACTIVE`` (-1), positions outside the map ``OUTSIDE`` (-2).

        Offsets are in row-major kernel order (dy, dx) from (-r, -r) to (r, r), matching
        ``weight[:, :, dy + r, dx + r]`` of ``nn.Conv2d``. Cached per kernel size.
        """
        if kernel_size not in self.neighbours:
            self.neighbours[kernel_size] = _build_neighbour_table(
                self.coords, self.spatial_size, self.batch_size, kernel_size
            )
        return self.neighbours[kernel_size]


def _build_neighbour_table(
    coords: Tensor, spatial_size: tuple[int, int], batch_size: int, kernel_size: int
) -> Tensor:
    """Neighbour table by a dense index grid: grid[item, y, x] = site index, -1 or -2.

    -1 marks an inactive site inside the map, -2 a position outside it (the zero padding of a
    dense conv); both contribute nothing to the convolution, the FLOP count tells them apart.
    """
    height, width = spatial_size
    radius = kernel_size // 2
    num_sites = coords.shape[0]
    # One padded grid: out-of-map neighbours land in the -2 border, so no bounds checks.
    grid = torch.full(
        (batch_size, height + 2 * radius, width + 2 * radius),
        OUTSIDE,
        dtype=torch.long,
        device=coords.device,
    )
    grid[:, radius : radius + height, radius : radius + width] = INACTIVE
    item, y, x = coords.unbind(dim=1)
    grid[item, y + radius, x + radius] = torch.arange(num_sites, device=coords.device)
    span = torch.arange(kernel_size, device=coords.device)
    offset_y = span.repeat_interleave(kernel_size)  # (K,) dy + r
    offset_x = span.repeat(kernel_size)  # (K,) dx + r
    # (N, 1) + (1, K) -> (N, K) neighbour positions in the padded grid
    return grid[item[:, None], y[:, None] + offset_y, x[:, None] + offset_x]


def submanifold_conv_reference(sparse: SparseMap, weight: Tensor, bias: Tensor | None) -> Tensor:
    """Submanifold convolution by gather-matmul with autograd's own backward (the reference).

    Args:
        sparse: input map with (N, C_in) features.
        weight: (C_out, C_in, k, k) in the ``nn.Conv2d`` layout.
        bias: (C_out,) or None.

    Returns:
        (N, C_out) output features at the input sites.
    """
    out_channels, in_channels, kernel_size, _ = weight.shape
    neighbours = sparse.neighbour_table(kernel_size)  # (N, K)
    num_sites = sparse.num_sites
    # A zero row at index N stands for every inactive neighbour.
    padded = torch.cat([sparse.features, sparse.features.new_zeros(1, in_channels)], dim=0)
    index = torch.where(neighbours < 0, num_sites, neighbours)
    gathered = padded[index].reshape(num_sites, -1)  # (N, K, C_in) -> (N, K*C_in)
    # (C_out, C_in, k, k) -> (C_out, k, k, C_in) -> (C_out, K*C_in), offset-major like `gathered`
    flat_weight = weight.permute(0, 2, 3, 1).reshape(out_channels, -1)
    out = gathered @ flat_weight.t()
    if bias is not None:
        out = out + bias
    return out


class _SubmanifoldConvFunction(torch.autograd.Function):
    """Submanifold conv by a rulebook: one gather, matmul and scatter-add per kernel offset.

    For each offset k other than the centre, the rulebook lists the (output site, input site)
    pairs whose neighbour at k is active, and only those pairs are multiplied (the paper's
    a*m*n; inactive taps cost nothing), unlike an im2col matrix of all K taps, which multiplies
    the zero rows of inactive neighbours too (about half of them at top-p 0.5). The centre
    offset pairs every site with itself: one plain matmul, no gather.

    The backward is written out: the input gradient scatters each offset's
    ``grad_out[out] @ W_k^T`` back to the input sites and the weight gradient of offset k is
    ``features[in]^T @ grad_out[out]``, so no accumulating ``index_put`` (autograd's backward of
    a gather, slow on CPU) runs.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        features: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        rulebook: list[tuple[int, Tensor, Tensor]],
    ) -> Tensor:
        out_channels, in_channels, kernel_size, _ = weight.shape
        # (C_out, C_in, k, k) -> (k, k, C_in, C_out) -> (K, C_in, C_out): one matrix per offset
        per_offset = weight.permute(2, 3, 1, 0).reshape(-1, in_channels, out_channels)
        centre = per_offset.shape[0] // 2
        if bias is None:
            out = features @ per_offset[centre]
        else:
            out = torch.addmm(bias, features, per_offset[centre])
        for offset, out_index, in_index in rulebook:
            out.index_add_(0, out_index, features.index_select(0, in_index) @ per_offset[offset])
        ctx.save_for_backward(features, per_offset)
        ctx.rulebook = rulebook
        ctx.has_bias = bias is not None
        ctx.kernel_size = kernel_size
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        features, per_offset = ctx.saved_tensors
        need_features, need_weight, need_bias = ctx.needs_input_grad[:3]
        grad_out = grad_out.contiguous()
        # Under autocast the forward's matmuls ran in grad_out's (lower) precision; so does this.
        weight_dtype, features_dtype = per_offset.dtype, features.dtype
        per_offset = per_offset.to(grad_out.dtype)
        features = features.to(grad_out.dtype)
        centre = per_offset.shape[0] // 2
        grad_features = grad_weight = grad_bias = None
        if need_features:
            grad_features = grad_out @ per_offset[centre].t()
        if need_weight:
            grad_per_offset = torch.zeros_like(per_offset)
            torch.mm(features.t(), grad_out, out=grad_per_offset[centre])
        for offset, out_index, in_index in ctx.rulebook:
            grad_pairs = grad_out.index_select(0, out_index)  # (M, C_out)
            if grad_features is not None:
                grad_features.index_add_(0, in_index, grad_pairs @ per_offset[offset].t())
            if need_weight:
                inputs = features.index_select(0, in_index)  # (M, C_in)
                torch.mm(inputs.t(), grad_pairs, out=grad_per_offset[offset])
        if need_weight:
            size = ctx.kernel_size
            in_channels, out_channels = per_offset.shape[1:]
            # (K, C_in, C_out) -> (k, k, C_in, C_out) -> (C_out, C_in, k, k)
            grad_weight = (
                grad_per_offset.view(size, size, in_channels, out_channels)
                .permute(3, 2, 0, 1)
                .to(weight_dtype)
            )
        if ctx.has_bias and need_bias:
            grad_bias = grad_out.sum(dim=0).to(weight_dtype)
        if grad_features is not None:
            grad_features = grad_features.to(features_dtype)
        return grad_features, grad_weight, grad_bias, None


def submanifold_conv_torch(sparse: SparseMap, weight: Tensor, bias: Tensor | None) -> Tensor:
    """Submanifold convolution by a rulebook (the torch backend).

    Same result and gradients as :func:`submanifold_conv_reference`, faster: only the pairs of
    active sites are multiplied, the rulebook is cached on the map (shared by every conv on the
    same sites) and the backward is written out (see :class:`_SubmanifoldConvFunction`).

    Args:
        sparse: input map with (N, C_in) features.
        weight: (C_out, C_in, k, k) in the ``nn.Conv2d`` layout.
        bias: (C_out,) or None.

    Returns:
        (N, C_out) output features at the input sites.
    """
    rulebook = sparse.rulebook(int(weight.shape[2]))
    out: Tensor = _SubmanifoldConvFunction.apply(sparse.features, weight, bias, rulebook)
    return out


@functools.cache
def _import_spconv() -> Any:
    try:
        import spconv.pytorch as spconv_pytorch
    except ImportError as error:  # pragma: no cover - depends on the host
        raise ImportError(
            "sparse_backend='spconv' needs spconv 2.x with CUDA: install the extra, e.g. "
            "`uv sync --extra cuda` (spconv-cu120), or use sparse_backend='torch'."
        ) from error
    return spconv_pytorch


def spconv_available() -> bool:
    """True when spconv 2.x imports (it still needs CUDA tensors to run)."""
    try:
        _import_spconv()
    except ImportError:
        return False
    return True


def resolve_backend(backend: str, device: torch.device) -> str:
    """Concrete backend for tensors on ``device``: ``"torch"`` or ``"spconv"``."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown sparse backend {backend!r}; choose one of {BACKENDS}")
    if backend == "auto":
        return "spconv" if device.type == "cuda" and spconv_available() else "torch"
    if backend == "spconv" and device.type != "cuda":
        raise RuntimeError(
            "sparse_backend='spconv' runs on CUDA only; move the model to a GPU or use "
            "sparse_backend='torch' (or 'auto')."
        )
    return backend


class SubmanifoldConv2d(nn.Module):
    """Submanifold 2-D convolution (stride 1, 'same' sites), weights in ``nn.Conv2d`` layout.

    Parameter names and shapes equal ``nn.Conv2d(in_channels, out_channels, kernel_size)``, so
    a dense checkpoint loads into it and a checkpoint is the same for every backend.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        bias: bool = True,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"submanifold conv needs an odd kernel size, got {kernel_size}")
        if backend not in BACKENDS:
            raise ValueError(f"unknown sparse backend {backend!r}; choose one of {BACKENDS}")
        # Borrow nn.Conv2d's initialisation so dense and sparse stacks start alike.
        reference = nn.Conv2d(in_channels, out_channels, kernel_size, bias=bias)
        self.weight = nn.Parameter(reference.weight.detach().clone())
        self.bias = (
            nn.Parameter(reference.bias.detach().clone()) if reference.bias is not None else None
        )
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.backend = backend
        # The spconv module is a call-time helper, not a submodule: it owns no state we save.
        self._spconv_module: Any = None

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"backend={self.backend!r}"
        )

    def forward(self, sparse: SparseMap) -> SparseMap:
        backend = resolve_backend(self.backend, sparse.features.device)
        if backend == "spconv":
            features = self._forward_spconv(sparse)
        else:
            features = submanifold_conv_torch(sparse, self.weight, self.bias)
        return sparse.with_features(features)

    def _forward_spconv(self, sparse: SparseMap) -> Tensor:
        spconv_pytorch = _import_spconv()
        if self._spconv_module is None:
            module = spconv_pytorch.SubMConv2d(
                self.in_channels,
                self.out_channels,
                self.kernel_size,
                padding=self.kernel_size // 2,
                bias=self.bias is not None,
            ).to(self.weight.device)
            # object.__setattr__ keeps it out of _modules: it must not enter the state dict.
            object.__setattr__(self, "_spconv_module", module)
        module = self._spconv_module
        params = {"weight": spconv_weight_layout(self.weight, tuple(module.weight.shape))}
        if self.bias is not None:
            params["bias"] = self.bias
        tensor = spconv_pytorch.SparseConvTensor(
            sparse.features,
            sparse.coords.int(),
            list(sparse.spatial_size),
            sparse.batch_size,
        )
        out = torch.func.functional_call(module, params, (tensor,))
        # spconv keeps the input site order for submanifold convs; checked in the gpu tests.
        return out.features


def spconv_weight_layout(weight: Tensor, spconv_shape: tuple[int, ...]) -> Tensor:
    """Permute an ``nn.Conv2d`` weight (C_out, C_in, k, k) to the layout of an spconv module.

    spconv 2.x stores (C_out, k, k, C_in) ("KRSC") by default and (k, k, C_in, C_out) ("RSCK")
    for some algorithms; the target shape says which.
    """
    out_channels, in_channels, kernel_size, _ = weight.shape
    if spconv_shape == (out_channels, kernel_size, kernel_size, in_channels):
        return weight.permute(0, 2, 3, 1).contiguous()
    if spconv_shape == (kernel_size, kernel_size, in_channels, out_channels):
        return weight.permute(2, 3, 1, 0).contiguous()
    raise ValueError(f"unexpected spconv weight shape {spconv_shape} for {tuple(weight.shape)}")


class SparseBatchNorm(nn.BatchNorm2d):
    """Batch norm over the active sites only; parameters and buffers of ``nn.BatchNorm2d``."""

    def _check_input_dim(self, input: Tensor) -> None:  # noqa: A002 (torch's signature)
        if input.dim() == 4 and input.shape[0] == 1 and input.shape[3] == 1:
            return  # the (1, C, N, 1) view that forward passes on
        if input.dim() != 2:
            raise ValueError(f"expected (N, C) sparse features, got {input.dim()}-D input")

    def forward(self, sparse: SparseMap) -> SparseMap:  # type: ignore[override]
        features = sparse.features
        self._check_input_dim(features)
        # (N, C) -> (1, C, N, 1) as a view: exactly a channels-last 4-D map, for which torch has
        # a fast CPU kernel; on a plain (N, C) input the backward is several times slower.
        as_map = features.t()[None, :, :, None]
        normalized = super().forward(as_map)
        # (1, C, N, 1) -> (C, N) -> (N, C); squeeze, unlike indexing, has a view as backward
        return sparse.with_features(normalized.squeeze(3).squeeze(0).t())


class SparseReLU(nn.Module):
    """ReLU on the active sites."""

    def forward(self, sparse: SparseMap) -> SparseMap:
        return sparse.with_features(F.relu(sparse.features))


def sparse_max_pool2d(sparse: SparseMap, kernel_size: int = 2) -> SparseMap:
    """Non-overlapping max-pool (stride = kernel size, floor mode) over active sites.

    An output site exists where any input of its window is active; its value is the max over
    the active inputs only (equal to dense max-pool of the zero-filled map when features >= 0).
    As in ``F.max_pool2d``, the gradient goes to the first maximum of the window in row-major
    order.
    """
    height, width = sparse.spatial_size
    out_height, out_width = height // kernel_size, width // kernel_size
    num_sites, channels = sparse.features.shape
    device = sparse.coords.device
    item, y, x = sparse.coords.unbind(dim=1)
    inside = (y < out_height * kernel_size) & (x < out_width * kernel_size)  # floor mode
    # Output sites: the occupied windows, in (item, y, x) order like every SparseMap.
    occupied = torch.zeros(
        sparse.batch_size, out_height, out_width, dtype=torch.bool, device=device
    )
    occupied[item[inside], y[inside] // kernel_size, x[inside] // kernel_size] = True
    coords = occupied.nonzero()  # (M, 3)
    # Window table: the input site at each of the window's kernel_size**2 positions, or N
    # (a -inf row, so inactive positions never win) where there is none.
    grid = torch.full(
        (sparse.batch_size, height, width), num_sites, dtype=torch.long, device=device
    )
    grid[item, y, x] = torch.arange(num_sites, device=device)
    span = torch.arange(kernel_size, device=device)
    window_y = span.repeat_interleave(kernel_size)  # (k*k,)
    window_x = span.repeat(kernel_size)
    out_item, out_y, out_x = coords.unbind(dim=1)
    windows = grid[
        out_item[:, None],
        out_y[:, None] * kernel_size + window_y,
        out_x[:, None] * kernel_size + window_x,
    ]  # (M, k*k)
    features = sparse.features
    padded = torch.cat([features, features.new_full((1, channels), float("-inf"))], dim=0)
    with torch.no_grad():
        # Running max over the window positions (a strict > keeps the first max on ties);
        # elementwise on (M, C), much faster on CPU than an argmax over a length-4 middle dim.
        best = padded.index_select(0, windows[:, 0])  # (M, C)
        source = windows[:, :1].expand(-1, channels).clone()  # (M, C) input site of the max
        for position in range(1, windows.shape[1]):
            candidate = padded.index_select(0, windows[:, position])
            better = candidate > best
            best = torch.where(better, candidate, best)
            source = torch.where(better, windows[:, position : position + 1], source)
    # gather's backward is a scatter-add into the winners: windows never overlap.
    pooled = padded.gather(0, source)
    return SparseMap(
        features=pooled,
        coords=coords,
        spatial_size=(out_height, out_width),
        batch_size=sparse.batch_size,
    )


class SparseMaxPool2d(nn.Module):
    """Module wrapper of :func:`sparse_max_pool2d`."""

    def __init__(self, kernel_size: int = 2) -> None:
        super().__init__()
        self.kernel_size = kernel_size

    def forward(self, sparse: SparseMap) -> SparseMap:
        return sparse_max_pool2d(sparse, self.kernel_size)


__all__ = [
    "BACKENDS",
    "SparseBatchNorm",
    "SparseMap",
    "SparseMaxPool2d",
    "SparseReLU",
    "SubmanifoldConv2d",
    "resolve_backend",
    "sparse_max_pool2d",
    "spconv_available",
    "spconv_weight_layout",
    "submanifold_conv_reference",
    "submanifold_conv_torch",
]
