"""FE2E and MESM models: VGG blocks, submanifold sparse convolution, cross-modal nucleus
attention, encoders, fusion, FLOPs and a model registry.

Importing this package registers ``"fe2e"`` and ``"mesm"``::

    from mesm.models import build_model
    model = build_model("mesm", num_classes=6, text_model="albert-base-v2", top_p=0.5)
"""

from mesm.models.attention import CrossModalAttention, nucleus_mask, segment_softmax
from mesm.models.blocks import DENSE_LAYERS, LayerKinds, VGGStack, sparse_layers
from mesm.models.encoders import (
    AttentionLevel,
    DenseFrameCNN,
    SparseFrameCNN,
    TextEncoder,
    VisualEncoder,
)
from mesm.models.fusion import WeightedLogitFusion
from mesm.models.model import (
    DEFAULT_ATTENTION,
    EndToEndConfig,
    EndToEndModel,
    ModelOutput,
    dense_to_sparse_state,
)
from mesm.models.registry import build_model, list_models, register_model
from mesm.models.sparse import SparseMap, SubmanifoldConv2d

__all__ = [
    "DEFAULT_ATTENTION",
    "DENSE_LAYERS",
    "AttentionLevel",
    "CrossModalAttention",
    "DenseFrameCNN",
    "EndToEndConfig",
    "EndToEndModel",
    "LayerKinds",
    "ModelOutput",
    "SparseFrameCNN",
    "SparseMap",
    "SubmanifoldConv2d",
    "TextEncoder",
    "VGGStack",
    "VisualEncoder",
    "WeightedLogitFusion",
    "build_model",
    "dense_to_sparse_state",
    "list_models",
    "nucleus_mask",
    "register_model",
    "segment_softmax",
    "sparse_layers",
]
