"""Per-modality encoders: frame CNNs (dense FE2E, sparse MESM), the frame-sequence Transformer
and the Hugging Face text encoder.

Letters: B batch, S frames or chunks per item, F real frames of the whole batch, C channels,
H, W spatial size, L tokens, D text feature size, N active sites.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import Tensor, nn

from mesm.data.batch import SequenceInput, TokenInput
from mesm.models.attention import (
    ATTENTION_MODES,
    CrossModalAttention,
    nucleus_mask,
    weighted_rescale,
)
from mesm.models.blocks import DENSE_LAYERS, VGGStack, sparse_layers
from mesm.models.flops import dense_flops, submanifold_conv_flops
from mesm.models.sparse import SparseMap, SubmanifoldConv2d

logger = logging.getLogger(__name__)

HIDDEN_FEATURES = 1024


@dataclass
class AttentionLevel:
    """The attention of one MESM level over all frames of a batch (for analysis and figures).

    Attributes:
        coords: (N, 3) int64 (frame, y, x) of the sites scored at this level; ``frame`` is the
            global frame number in the batch (row-major order of the real steps of ``mask``).
        weights: (N,) attention weights, summing to 1 per frame.
        kept: (N,) bool, True at the sites the nucleus kept.
        spatial_size: (H, W) of the map at this level.
        frame_to_step: (F, 2) int64 (item, step) of each global frame.
    """

    coords: Tensor
    weights: Tensor
    kept: Tensor
    spatial_size: tuple[int, int]
    frame_to_step: Tensor | None = None


@dataclass
class FrameEncoderOutput:
    """Output of a frame CNN over the F real frames of a batch.

    Attributes:
        features: (F, d) one vector per frame.
        flops: (F,) float64 FLOPs spent on each frame (see :mod:`mesm.models.flops`).
        kept_fraction: (levels,) fraction of scored sites kept at each attention level (all
            frames together); empty without attention.
        attention: per-level details, only when asked for.
    """

    features: Tensor
    flops: Tensor
    kept_fraction: Tensor
    attention: list[AttentionLevel]


def _projection(in_features: int, out_features: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(in_features, HIDDEN_FEATURES),
        nn.ReLU(),
        nn.Linear(HIDDEN_FEATURES, out_features),
    )


class DenseFrameCNN(nn.Module):
    """The FE2E frame CNN: dense VGG trunk -> flatten -> Linear 1024 -> ReLU -> Linear d."""

    def __init__(self, in_channels: int, input_size: tuple[int, int], out_features: int) -> None:
        super().__init__()
        self.trunk = VGGStack(in_channels, DENSE_LAYERS, DENSE_LAYERS)
        channels, height, width = VGGStack.output_shape(input_size)
        self.projection = _projection(channels * height * width, out_features)
        self.input_size = input_size
        self.frame_flops = (
            dense_flops(self.trunk, input_size)[0]
            + dense_flops(self.projection, (height, width))[0]
        )

    def forward(
        self, frames: Tensor, frame_queries: Tensor | None = None, return_attention: bool = False
    ) -> FrameEncoderOutput:
        """Encode frames.

        Args:
            frames: (F, C, H, W) real frames only.
            frame_queries: unused (FE2E has no attention); accepted for a common interface.
            return_attention: unused.
        """
        x = self.trunk.lower(frames)
        for block in self.trunk.upper:
            x = block(x)
        features = self.projection(x)
        flops = torch.full(
            (frames.shape[0],), float(self.frame_flops), dtype=torch.float64, device=frames.device
        )
        return FrameEncoderOutput(features, flops, frames.new_zeros(0), [])


class SparseFrameCNN(nn.Module):
    """The MESM frame CNN: dense lower trunk, then attention + nucleus + sparse block x 3.

    Parameter names equal :class:`DenseFrameCNN`'s plus ``attention.*``, so a FE2E frame CNN's
    state dict loads into it (``strict=False``; only the attention layers are then missing).
    """

    def __init__(
        self,
        in_channels: int,
        input_size: tuple[int, int],
        out_features: int,
        query_dim: int,
        top_p: float = 0.5,
        attention: str = "weighted",
        sparse_backend: str = "auto",
    ) -> None:
        super().__init__()
        if attention not in ATTENTION_MODES:
            raise ValueError(
                f"unknown attention mode {attention!r}; choose one of {ATTENTION_MODES}"
            )
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        self.trunk = VGGStack(in_channels, DENSE_LAYERS, sparse_layers(sparse_backend))
        channels, height, width = VGGStack.output_shape(input_size)
        self.projection = _projection(channels * height * width, out_features)
        # k = channels at each level (MESM.md section 3).
        self.attention = nn.ModuleList(
            CrossModalAttention(k, query_dim, k) for k in self.trunk.upper_in_channels
        )
        self.input_size = input_size
        self.top_p = top_p
        self.attention_mode = attention
        self.lower_flops = dense_flops(self.trunk.lower, input_size)[0]
        self.projection_flops = dense_flops(self.projection, (height, width))[0]

    def forward(
        self, frames: Tensor, frame_queries: Tensor | None = None, return_attention: bool = False
    ) -> FrameEncoderOutput:
        """Encode frames, running the upper blocks only on the sites the nucleus keeps.

        Args:
            frames: (F, C, H, W) real frames only.
            frame_queries: (F, D) text feature of each frame's item (the attention query).
            return_attention: also return the per-level sites, weights and kept flags.
        """
        if frame_queries is None:
            raise ValueError("MESM's frame CNN needs the text [CLS] feature as attention query")
        num_frames = frames.shape[0]
        dense = self.trunk.lower(frames)  # (F, 64, H/2, W/2)
        every_site = dense.new_ones(num_frames, *dense.shape[2:], dtype=torch.bool)
        sparse = SparseMap.from_dense(dense, every_site)
        flops = torch.full(
            (num_frames,), float(self.lower_flops), dtype=torch.float64, device=frames.device
        )
        kept_fraction = []
        levels = []
        blocks: list[nn.Sequential] = list(self.trunk.upper)  # type: ignore[arg-type]
        for attention, block in zip(self.attention, blocks, strict=True):
            frame_index = sparse.coords[:, 0]
            weights = attention(sparse.features, frame_index, frame_queries)
            keep = nucleus_mask(weights, frame_index, num_frames, self.top_p)
            features = sparse.features
            if self.attention_mode == "weighted":
                scale = weighted_rescale(weights, keep, frame_index, num_frames)
                features = features * scale[:, None]
            kept_fraction.append(keep.float().mean())
            if return_attention:
                levels.append(
                    AttentionLevel(
                        coords=sparse.coords,
                        weights=weights.detach(),
                        kept=keep,
                        spatial_size=sparse.spatial_size,
                    )
                )
            sparse = SparseMap(
                features=features[keep],
                coords=sparse.coords[keep],
                spatial_size=sparse.spatial_size,
                batch_size=num_frames,
            )
            for layer in block:
                if isinstance(layer, SubmanifoldConv2d):
                    flops = flops + submanifold_conv_flops(sparse, layer)
                sparse = layer(sparse)
        out = self.projection(sparse.to_dense())  # (F, 512, h, w) -> (F, d)
        flops = flops + self.projection_flops
        return FrameEncoderOutput(out, flops, torch.stack(kept_fraction), levels)


def sinusoidal_positions(length: int, dim: int, device: torch.device) -> Tensor:
    """(length, dim) fixed sinusoidal position encodings (Vaswani et al. 2017)."""
    position = torch.arange(length, dtype=torch.float32, device=device)[:, None]
    frequency = torch.exp(
        torch.arange(0, dim, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / dim)
    )
    encoding = torch.zeros(length, dim, device=device)
    encoding[:, 0::2] = torch.sin(position * frequency)
    encoding[:, 1::2] = torch.cos(position * frequency)[:, : dim // 2]
    return encoding


@dataclass
class EncoderOutput:
    """Output of a modality encoder.

    Attributes:
        features: (B, d) utterance feature (the [CLS] output).
        flops: (B,) float64 feature-extraction FLOPs per item (zero for text).
        kept_fraction: (levels,) kept fraction per attention level; empty without attention.
        attention: per-level details, only when asked for.
    """

    features: Tensor
    flops: Tensor
    kept_fraction: Tensor
    attention: list[AttentionLevel]


class VisualEncoder(nn.Module):
    """Frame CNN on the real steps, then a Transformer over each item's steps with a [CLS].

    Used for face frames (3x48x48) and mel chunks (1x128x32) alike; the CNN is injected.
    """

    def __init__(
        self,
        frame_encoder: nn.Module,
        d_model: int = 64,
        num_layers: int = 4,
        num_heads: int = 4,
        dim_feedforward: int = 256,
        dropout: float = 0.1,
        positional_encoding: bool = True,
    ) -> None:
        super().__init__()
        self.frame_encoder = frame_encoder
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d_model))
        nn.init.normal_(self.cls_token, std=0.02)
        layer = nn.TransformerEncoderLayer(
            d_model, num_heads, dim_feedforward, dropout, batch_first=True
        )
        self.transformer = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.d_model = d_model
        self.positional_encoding = positional_encoding

    def forward(
        self, inputs: SequenceInput, query: Tensor | None = None, return_attention: bool = False
    ) -> EncoderOutput:
        """Encode a padded batch of sequences.

        Args:
            inputs: values (B, S, C, H, W) and mask (B, S); padded steps are never computed.
            query: (B, D) text feature, needed by a MESM frame CNN.
            return_attention: also return the attention levels of a MESM frame CNN.
        """
        values, mask = inputs.values, inputs.mask
        batch_size, steps = mask.shape
        item, step = mask.nonzero(as_tuple=True)  # (F,), (F,) in row-major order
        frames = values[item, step]  # (B, S, C, H, W) -> (F, C, H, W), real steps only
        frame_queries = query[item] if query is not None else None  # (B, D) -> (F, D)
        encoded = self.frame_encoder(frames, frame_queries, return_attention)
        # (F, d) -> (B, S, d), zeros at padded steps (masked out of attention below)
        sequence = encoded.features.new_zeros(batch_size, steps, encoded.features.shape[1])
        sequence = sequence.index_put((item, step), encoded.features)
        cls = self.cls_token.expand(batch_size, -1, -1)
        tokens = torch.cat([cls, sequence], dim=1)  # (B, 1 + S, d)
        if self.positional_encoding:
            tokens = tokens + sinusoidal_positions(steps + 1, self.d_model, tokens.device)
        padding = torch.cat([mask.new_zeros(batch_size, 1), ~mask], dim=1)  # True = ignore
        hidden = self.transformer(tokens, src_key_padding_mask=padding)
        flops = encoded.flops.new_zeros(batch_size).index_add(0, item, encoded.flops)
        frame_to_step = torch.stack([item, step], dim=1)
        attention = [replace(level, frame_to_step=frame_to_step) for level in encoded.attention]
        return EncoderOutput(hidden[:, 0], flops, encoded.kept_fraction, attention)


def _has_weights(folder: Path) -> bool:
    patterns = ("*.safetensors", "*.bin", "*.safetensors.index.json", "*.bin.index.json")
    return any(any(folder.glob(pattern)) for pattern in patterns)


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' warnings and progress bars (restoring both afterwards)."""
    from transformers.utils import logging as hf_logging

    previous = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(previous)
        if bars:
            hf_logging.enable_progress_bar()


class TextEncoder(nn.Module):
    """Any Hugging Face encoder by hub name or local folder; its [CLS] (first token) output.

    The pooler, when the architecture has one, is left out (``add_pooling_layer=False``): only
    the first token's hidden state is used, as in MESM.
    """

    def __init__(self, model_name_or_path: str, freeze: bool = False) -> None:
        super().__init__()
        try:
            from transformers import AutoConfig, AutoModel
        except ImportError as error:  # pragma: no cover - transformers is a core dependency
            raise ImportError("TextEncoder needs transformers: `uv sync`") from error
        folder = Path(model_name_or_path)
        if folder.is_dir() and (folder / "config.json").exists() and not _has_weights(folder):
            warnings.warn(
                f"{folder} holds a config but no weights: the text model starts from random "
                "weights",
                stacklevel=2,
            )
            config = AutoConfig.from_pretrained(model_name_or_path)
            try:
                self.model = AutoModel.from_config(config, add_pooling_layer=False)
            except TypeError:
                self.model = AutoModel.from_config(config)
        else:
            with quiet_transformers():  # its load report lists the pooler we leave out on purpose
                try:
                    self.model = AutoModel.from_pretrained(
                        model_name_or_path, add_pooling_layer=False
                    )
                except TypeError:
                    self.model = AutoModel.from_pretrained(model_name_or_path)
        self.hidden_size = int(self.model.config.hidden_size)
        self.frozen = freeze
        # from_pretrained returns the model in eval mode; Lightning keeps module modes as found,
        # so without this the text encoder would fine-tune with its dropout off.
        self.model.train(not freeze)
        if freeze:
            self.model.requires_grad_(False)

    def train(self, mode: bool = True) -> TextEncoder:
        super().train(mode)
        if self.frozen:
            self.model.eval()  # a frozen encoder keeps dropout off
        return self

    def forward(self, inputs: TokenInput) -> Tensor:
        """(B, D) hidden state of the first token for input_ids / attention_mask (B, L)."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            output = self.model(input_ids=inputs.input_ids, attention_mask=inputs.attention_mask)
        return output.last_hidden_state[:, 0]


__all__ = [
    "AttentionLevel",
    "DenseFrameCNN",
    "EncoderOutput",
    "FrameEncoderOutput",
    "SparseFrameCNN",
    "TextEncoder",
    "VisualEncoder",
    "quiet_transformers",
    "sinusoidal_positions",
]
