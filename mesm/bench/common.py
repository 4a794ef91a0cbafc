"""Shared pieces of the benchmark scripts: a tiny local text model, a synthetic batch and a
model loaded from a run's checkpoint.

Letters: B batch, S steps.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mesm.data.batch import SequenceInput, TokenInput

FACE_FRAMES = 9  # 4.5 s of video at one frame per 500 ms
AUDIO_CHUNKS = 12  # 4.8 s of audio in 400 ms chunks
TOKENS = 50


def save_tiny_text_model(folder: str, hidden_size: int = 32) -> str:
    """A 1-layer BERT saved with save_pretrained (no hub access needed); returns ``folder``."""
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=1000,
        hidden_size=hidden_size,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=4 * hidden_size,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(folder)
    return folder


def synthetic_batch(
    batch_size: int,
    face_frames: int = FACE_FRAMES,
    audio_chunks: int = AUDIO_CHUNKS,
    seed: int = 0,
    vocab_size: int = 1000,
) -> dict[str, TokenInput | SequenceInput]:
    """Full-length random inputs (no padding) with the sizes of MESM.md section 3.

    Token ids are drawn from [1, vocab_size) (the text model's vocabulary size).
    """
    generator = torch.Generator().manual_seed(seed)
    return {
        "text": TokenInput(
            torch.randint(1, vocab_size, (batch_size, TOKENS), generator=generator),
            torch.ones(batch_size, TOKENS, dtype=torch.long),
        ),
        "vision": SequenceInput(
            torch.randn(batch_size, face_frames, 3, 48, 48, generator=generator),
            torch.ones(batch_size, face_frames, dtype=torch.bool),
        ),
        "audio": SequenceInput(
            torch.randn(batch_size, audio_chunks, 1, 128, 32, generator=generator),
            torch.ones(batch_size, audio_chunks, dtype=torch.bool),
        ),
    }


@dataclass
class LoadedModel:
    """A model rebuilt from a checkpoint.

    Attributes:
        model: the model with the checkpoint's weights, in eval mode on the CPU.
        config: the run config stored in the checkpoint (plain dict).
        class_names: label names in logit order.
        text_model: the text model folder or name the model was built with (None without text).
        path: the checkpoint file.
    """

    model: nn.Module
    config: dict[str, Any]
    class_names: list[str]
    text_model: str | None
    path: Path


def checkpoint_file(path: str | os.PathLike[str]) -> Path:
    """``path`` itself, or ``path/best.pt`` when ``path`` is a run folder."""
    path = Path(path)
    return path / "best.pt" if path.is_dir() else path


def load_checkpoint_model(
    path: str | os.PathLike[str], sparse_backend: str | None = None
) -> LoadedModel:
    """Rebuild the model a ``best.pt``/``last.pt`` (or a run folder's ``best.pt``) was trained as.

    Args:
        path: checkpoint file or run folder.
        sparse_backend: override the stored sparse backend (``"torch"`` to run a GPU-trained
            MESM on the CPU); weights are the same for every backend.

    Raises:
        mesm.train.checkpoint.CheckpointError: missing or unreadable checkpoint.
    """
    from mesm.models import build_model
    from mesm.train.checkpoint import load_checkpoint
    from mesm.train.experiment import RunConfig, locate_text_model, model_kwargs

    file = checkpoint_file(path)
    checkpoint = load_checkpoint(file)
    config = RunConfig.from_stored(checkpoint.config)
    if sparse_backend is not None:
        config.sparse_backend = sparse_backend
    text_model = None
    if "t" in config.modalities:
        text_model = locate_text_model(config.text_model, file)
    kwargs = model_kwargs(config, len(checkpoint.class_names), text_model)
    model = build_model(str(config.model), **kwargs)
    model.load_state_dict(checkpoint.state_dict)
    model.eval()
    return LoadedModel(model, checkpoint.config, checkpoint.class_names, text_model, file)
