"""Shared pieces of the benchmark scripts: a tiny local text model and a synthetic batch.

Letters: B batch, S steps.
"""

from __future__ import annotations

import torch

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
    batch_size: int, face_frames: int = FACE_FRAMES, audio_chunks: int = AUDIO_CHUNKS, seed: int = 0
) -> dict[str, TokenInput | SequenceInput]:
    """Full-length random inputs (no padding) with the sizes of MESM.md section 3."""
    generator = torch.Generator().manual_seed(seed)
    return {
        "text": TokenInput(
            torch.randint(1, 1000, (batch_size, TOKENS), generator=generator),
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
