"""mesm.viz.attention_maps: site states, upsampling and overlay colours by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mesm.models.encoders import AttentionLevel
from mesm.viz.attention_maps import (
    DROPPED,
    KEPT,
    NOT_SCORED,
    STATE_COLOURS,
    ModalityAttention,
    level_site_states,
    overlay_rgba,
    plot_modality_attention,
    upsample_states,
)


def _level() -> AttentionLevel:
    # Frames 0, 1 belong to item 0 (steps 0, 1), frame 2 to item 1 (step 0); a 2x2 map.
    return AttentionLevel(
        coords=torch.tensor([[0, 0, 0], [0, 1, 1], [1, 0, 1], [2, 1, 0]]),
        weights=torch.tensor([0.7, 0.3, 1.0, 1.0]),
        kept=torch.tensor([True, False, True, True]),
        spatial_size=(2, 2),
        frame_to_step=torch.tensor([[0, 0], [0, 1], [1, 0]]),
    )


def test_level_site_states_by_hand() -> None:
    states = level_site_states(_level(), item=0, steps=2)
    expected = np.full((2, 2, 2), NOT_SCORED)
    expected[0, 0, 0], expected[0, 1, 1], expected[1, 0, 1] = KEPT, DROPPED, KEPT
    assert np.array_equal(states, expected)
    other = level_site_states(_level(), item=1, steps=1)
    assert other[0].tolist() == [[NOT_SCORED, NOT_SCORED], [KEPT, NOT_SCORED]]


def test_level_without_frame_map_is_refused() -> None:
    level = _level()
    level.frame_to_step = None
    with pytest.raises(ValueError, match="frame_to_step"):
        level_site_states(level, 0, 2)


def test_upsample_states_blocks_and_ragged_border() -> None:
    states = np.array([[[KEPT, DROPPED]]], dtype=np.int8)  # (1, 1, 2)
    full = upsample_states(states, (3, 5))  # 3 // 1 = 3 rows, 5 // 2 = 2 columns per site
    assert full.shape == (1, 3, 5)
    assert full[0].tolist() == [[KEPT, KEPT, DROPPED, DROPPED, NOT_SCORED]] * 3


def test_overlay_colours_and_png(tmp_path) -> None:
    states = np.array([[NOT_SCORED, DROPPED, KEPT]], dtype=np.int8)
    rgba = overlay_rgba(states)
    assert [tuple(pixel) for pixel in rgba[0]] == [STATE_COLOURS[s] for s in (0, 1, 2)]
    faces = np.zeros((2, 48, 48, 3), dtype=np.uint8)
    levels = [np.full((2, 24 // 2**i, 24 // 2**i), KEPT, dtype=np.int8) for i in range(3)]
    path = plot_modality_attention(ModalityAttention("vision", faces, levels), tmp_path / "a.png")
    assert path.stat().st_size > 1000
