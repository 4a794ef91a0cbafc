"""Shared fixtures: a tiny BERT saved to a folder (no hub access) and small batches."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from mesm.data.batch import SequenceInput, TokenInput

VOCAB = 40


@pytest.fixture(scope="session")
def tiny_text_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Folder holding a 1-layer, 32-wide BERT saved with save_pretrained."""
    from transformers import BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny_bert")
    config = BertConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=48,
        max_position_embeddings=32,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    return str(Path(folder))


@pytest.fixture
def make_inputs() -> Callable[..., dict[str, TokenInput | SequenceInput]]:
    """The :func:`random_inputs` factory, as a fixture (test folders are not packages)."""
    return random_inputs


def random_inputs(
    batch_size: int = 2, vision_steps: int = 3, audio_steps: int = 2, seed: int = 0
) -> dict[str, TokenInput | SequenceInput]:
    """Random inputs following mesm.data.batch; item 1 is shorter (padded, zero) in each."""
    generator = torch.Generator().manual_seed(seed)
    vision_mask = torch.ones(batch_size, vision_steps, dtype=torch.bool)
    audio_mask = torch.ones(batch_size, audio_steps, dtype=torch.bool)
    vision_mask[1:, 1:] = False
    audio_mask[1:, 1:] = False
    vision = torch.randn(batch_size, vision_steps, 3, 48, 48, generator=generator)
    audio = torch.randn(batch_size, audio_steps, 1, 128, 32, generator=generator)
    text_mask = torch.ones(batch_size, 6, dtype=torch.long)
    text_mask[1:, 4:] = 0
    return {
        "text": TokenInput(
            torch.randint(1, VOCAB, (batch_size, 6), generator=generator), text_mask
        ),
        "vision": SequenceInput(vision * vision_mask[..., None, None, None], vision_mask),
        "audio": SequenceInput(audio * audio_mask[..., None, None, None], audio_mask),
    }
