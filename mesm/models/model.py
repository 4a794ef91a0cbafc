"""FE2E and MESM: encoders keyed by modality, per-modality heads, learned logit fusion.

FE2E runs the dense frame CNN; MESM the sparse one, whose attention is queried by the text
[CLS]. Both share parameter names outside ``*.frame_encoder.attention.*``, so a FE2E state dict
loads into MESM with ``load_state_dict(state, strict=False)``, the only missing keys being the
attention layers (see :func:`dense_to_sparse_state`).

Letters: B batch, C classes, S steps, L tokens, D text feature size.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from mesm.data.batch import MODALITIES, ModalityInput, SequenceInput, TokenInput
from mesm.models.encoders import (
    AttentionLevel,
    DenseFrameCNN,
    SparseFrameCNN,
    TextEncoder,
    VisualEncoder,
)
from mesm.models.fusion import WeightedLogitFusion
from mesm.models.registry import register_model

# Channels and spatial size of one frame of each frame modality (MESM.md section 3).
FRAME_INPUTS: dict[str, tuple[int, tuple[int, int]]] = {
    "audio": (1, (128, 32)),
    "vision": (3, (48, 48)),
}
TEXT = "text"
# Chosen from the experiment in docs/models.md (mesm.bench.attention_modes): "weighted" does give
# the attention layers a gradient, but in the short synthetic run it did not beat the paper's
# "mask" (loss 0.670 vs 0.592, accuracy 0.688 vs 0.723), so the paper's behaviour stays default.
DEFAULT_ATTENTION = "mask"


@dataclass
class ModelOutput:
    """Output of FE2E and MESM.

    Attributes:
        logits: (B, C) fused logits.
        modality_logits: modality -> (B, C) logits of its own head.
        kept_fraction: frame modality -> (levels,) fraction of scored sites the nucleus kept at
            each attention level, over the whole batch; empty dict for FE2E.
        flops: (B,) float64 feature-extraction FLOPs per item of this forward, FLOPs = 2 x MACs
            (see :mod:`mesm.models.flops`): convolutions of the frame CNNs on the real steps
            and their Linear 1024 / Linear d head; the text model, the Transformers and the
            attention scorers are not counted.
        attention: frame modality -> its attention levels, only with ``return_attention=True``
            on MESM.
    """

    logits: Tensor
    modality_logits: dict[str, Tensor]
    kept_fraction: dict[str, Tensor]
    flops: Tensor
    attention: dict[str, list[AttentionLevel]] = field(default_factory=dict)


@dataclass
class EndToEndConfig:
    """Configuration of the FE2E / MESM family (translated to constructor arguments here only).

    ``sparse=False`` is FE2E, ``sparse=True`` MESM (``top_p``, ``attention``,
    ``sparse_backend`` only matter then).
    """

    num_classes: int
    text_model: str | None = None
    modalities: tuple[str, ...] = MODALITIES
    d_model: int = 64
    num_layers: int = 4
    num_heads: int = 4
    dim_feedforward: int = 256
    dropout: float = 0.1
    positional_encoding: bool = True
    freeze_text: bool = False
    sparse: bool = False
    top_p: float = 0.5
    attention: str = DEFAULT_ATTENTION
    sparse_backend: str = "auto"

    def __post_init__(self) -> None:
        self.modalities = tuple(self.modalities)  # lists from YAML configs compare as tuples


class EndToEndModel(nn.Module):
    """Encoders in a ``ModuleDict`` keyed by modality, fused by :class:`WeightedLogitFusion`.

    When ``text_queries_frames`` is set (MESM), the text [CLS] feature is passed to the frame
    encoders as attention query.
    """

    def __init__(
        self,
        encoders: Mapping[str, nn.Module],
        fusion: WeightedLogitFusion,
        text_queries_frames: bool = False,
    ) -> None:
        super().__init__()
        if text_queries_frames and TEXT not in encoders:
            raise ValueError(
                "MESM needs the text modality: the text [CLS] is the query of its attention"
            )
        self.encoders = nn.ModuleDict(encoders)
        self.fusion = fusion
        self.text_queries_frames = text_queries_frames

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.encoders.keys())

    @classmethod
    def from_config(cls, config: EndToEndConfig) -> EndToEndModel:
        unknown = [name for name in config.modalities if name not in MODALITIES]
        if unknown or not config.modalities:
            raise ValueError(
                f"modalities must be a non-empty subset of {MODALITIES}, got {config.modalities}"
            )
        if config.sparse and TEXT not in config.modalities:
            raise ValueError(
                "MESM needs the text modality: the text [CLS] is the query of its attention; "
                f"got modalities={config.modalities}"
            )
        encoders: dict[str, nn.Module] = {}
        feature_dims: dict[str, int] = {}
        query_dim = 0
        # Text first: MESM's frame encoders need its feature size and its output.
        if TEXT in config.modalities:
            if config.text_model is None:
                raise ValueError("the text modality needs text_model (a hub name or a folder)")
            text = TextEncoder(config.text_model, freeze=config.freeze_text)
            encoders[TEXT] = text
            feature_dims[TEXT] = query_dim = text.hidden_size
        for name in config.modalities:
            if name == TEXT:
                continue
            in_channels, input_size = FRAME_INPUTS[name]
            frame_encoder: nn.Module
            if config.sparse:
                frame_encoder = SparseFrameCNN(
                    in_channels,
                    input_size,
                    config.d_model,
                    query_dim=query_dim,
                    top_p=config.top_p,
                    attention=config.attention,
                    sparse_backend=config.sparse_backend,
                )
            else:
                frame_encoder = DenseFrameCNN(in_channels, input_size, config.d_model)
            encoders[name] = VisualEncoder(
                frame_encoder,
                d_model=config.d_model,
                num_layers=config.num_layers,
                num_heads=config.num_heads,
                dim_feedforward=config.dim_feedforward,
                dropout=config.dropout,
                positional_encoding=config.positional_encoding,
            )
            feature_dims[name] = config.d_model
        fusion = WeightedLogitFusion(feature_dims, config.num_classes)
        return cls(encoders, fusion, text_queries_frames=config.sparse)

    def forward(
        self, inputs: Mapping[str, ModalityInput], return_attention: bool = False
    ) -> ModelOutput:
        """Classify a batch.

        Args:
            inputs: modality -> input as in :mod:`mesm.data.batch`: "text" TokenInput (B, L),
                "audio" SequenceInput (B, S, 1, 128, 32), "vision" SequenceInput
                (B, S, 3, 48, 48); extra modalities are ignored.
            return_attention: fill ``ModelOutput.attention`` (MESM only).
        """
        missing = [name for name in self.encoders if name not in inputs]
        if missing:
            raise KeyError(f"inputs lack modalities {missing}; the model uses {self.modalities}")
        features: dict[str, Tensor] = {}
        kept_fraction: dict[str, Tensor] = {}
        attention: dict[str, list[AttentionLevel]] = {}
        flops: Tensor | None = None
        query: Tensor | None = None
        if TEXT in self.encoders:
            text_input = inputs[TEXT]
            if not isinstance(text_input, TokenInput):
                raise TypeError(f"'text' must be a TokenInput, got {type(text_input).__name__}")
            features[TEXT] = self.encoders[TEXT](text_input)
            if self.text_queries_frames:
                query = features[TEXT]
        for name, encoder in self.encoders.items():
            if name == TEXT:
                continue
            frame_input = inputs[name]
            if not isinstance(frame_input, SequenceInput):
                raise TypeError(
                    f"{name!r} must be a SequenceInput, got {type(frame_input).__name__}"
                )
            encoded = encoder(frame_input, query=query, return_attention=return_attention)
            features[name] = encoded.features
            flops = encoded.flops if flops is None else flops + encoded.flops
            if self.text_queries_frames:
                kept_fraction[name] = encoded.kept_fraction
            if return_attention and encoded.attention:
                attention[name] = encoded.attention
        logits, modality_logits = self.fusion(features)
        if flops is None:  # text only: no feature-extraction CNN ran
            flops = logits.new_zeros(logits.shape[0]).double()
        return ModelOutput(logits, modality_logits, kept_fraction, flops, attention)

    def parameter_groups(self, lr: float, text_lr_factor: float) -> list[dict]:
        """Optimizer groups: the text encoder at ``lr / text_lr_factor``, the rest at ``lr``.

        Frozen parameters are left out; every trainable parameter is in exactly one group.
        """
        text_ids = set()
        groups = []
        if TEXT in self.encoders:
            text_params = [p for p in self.encoders[TEXT].parameters() if p.requires_grad]
            text_ids = {id(p) for p in text_params}
            if text_params:
                groups.append({"params": text_params, "lr": lr / text_lr_factor, "name": TEXT})
        other = [p for p in self.parameters() if p.requires_grad and id(p) not in text_ids]
        groups.insert(0, {"params": other, "lr": lr, "name": "main"})
        return groups


def dense_to_sparse_state(dense_state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """A FE2E state dict for MESM: the names are already equal, so this is the identity.

    Load it with ``mesm_model.load_state_dict(state, strict=False)``; the missing keys are
    exactly the ``*.frame_encoder.attention.*`` parameters, which FE2E does not have.
    """
    return dict(dense_state)


@register_model("fe2e")
def fe2e(*, num_classes: int, **options: Any) -> EndToEndModel:
    """FE2E: dense per-frame CNNs, frame Transformers, text model, fused heads.

    ``options`` are the fields of :class:`EndToEndConfig` (``modalities``, ``text_model``,
    ``d_model``, ...), with its defaults.
    """
    return EndToEndModel.from_config(EndToEndConfig(num_classes=num_classes, **options))


@register_model("mesm")
def mesm(
    *,
    num_classes: int,
    top_p: float = 0.5,
    attention: str = DEFAULT_ATTENTION,
    sparse_backend: str = "auto",
    **options: Any,
) -> EndToEndModel:
    """MESM: FE2E with text-queried nucleus attention and submanifold sparse upper blocks.

    ``options`` are the other fields of :class:`EndToEndConfig`, as for :func:`fe2e`.
    """
    return EndToEndModel.from_config(
        EndToEndConfig(
            num_classes=num_classes,
            sparse=True,
            top_p=top_p,
            attention=attention,
            sparse_backend=sparse_backend,
            **options,
        )
    )


__all__ = [
    "DEFAULT_ATTENTION",
    "FRAME_INPUTS",
    "EndToEndConfig",
    "EndToEndModel",
    "ModelOutput",
    "dense_to_sparse_state",
    "fe2e",
    "mesm",
]
