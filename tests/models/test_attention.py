"""Segment softmax, nucleus mask and cross-modal attention."""

from __future__ import annotations

import pytest
import torch

from mesm.models.attention import (
    CrossModalAttention,
    nucleus_mask,
    segment_softmax,
    weighted_rescale,
)


def segments(sizes: list[int]) -> torch.Tensor:
    return torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))


def naive_nucleus(weights: torch.Tensor, segment: torch.Tensor, top_p: float) -> torch.Tensor:
    keep = torch.zeros_like(weights, dtype=torch.bool)
    for frame in segment.unique().tolist():
        index = (segment == frame).nonzero().flatten()
        ranked = sorted(index.tolist(), key=lambda i: (-weights[i].item(), i))
        mass = 0.0
        for site in ranked:
            if mass >= top_p:
                break
            keep[site] = True
            mass += weights[site].item()
    return keep


def test_segment_softmax_equals_per_segment_softmax() -> None:
    segment = segments([3, 1, 5])
    scores = torch.randn(9) * 10
    weights = segment_softmax(scores, segment, 4)  # segment 3 is empty
    for frame in range(3):
        part = segment == frame
        torch.testing.assert_close(weights[part], torch.softmax(scores[part], 0))


@pytest.mark.parametrize("top_p", [0.1, 0.3, 0.5, 0.7, 0.9, 0.999])
def test_nucleus_mask_properties_and_naive_loop(top_p: float) -> None:
    generator = torch.Generator().manual_seed(int(top_p * 1000))
    sizes = [1, 4, 9, 16, 7]
    segment = segments(sizes)
    weights = segment_softmax(torch.randn(sum(sizes), generator=generator) * 2, segment, 5)
    keep = nucleus_mask(weights, segment, 5, top_p)
    assert torch.equal(keep, naive_nucleus(weights, segment, top_p))
    for frame in range(len(sizes)):
        part = weights[segment == frame]
        kept = part[keep[segment == frame]]
        assert kept.numel() >= 1
        assert kept.sum() >= top_p - 1e-6 or kept.numel() == part.numel()
        # Minimal: dropping the lightest kept site falls below p.
        assert kept.sum() - kept.min() < top_p
        # Kept sites are the heaviest ones.
        if kept.numel() < part.numel():
            assert kept.min() >= part[~keep[segment == frame]].max()


def test_nucleus_mask_crossing_site_and_ties() -> None:
    segment = torch.zeros(4, dtype=torch.long)
    weights = torch.tensor([0.25, 0.25, 0.25, 0.25])
    # Mass 0.5 is reached after two sites; ties go to the lower index.
    assert nucleus_mask(weights, segment, 1, 0.5).tolist() == [True, True, False, False]
    # 0.6 needs the crossing third site.
    assert nucleus_mask(weights, segment, 1, 0.6).tolist() == [True, True, True, False]


def test_nucleus_keeps_all_at_p_one_and_one_site_minimum() -> None:
    segment = segments([5, 3])
    weights = torch.tensor([0.2] * 5 + [1 / 3] * 3, dtype=torch.float32)
    assert nucleus_mask(weights, segment, 2, 1.0).all()
    tiny = nucleus_mask(weights, segment, 2, 1e-9)
    assert tiny.tolist() == [True, False, False, False, False, True, False, False]
    with pytest.raises(ValueError, match="top_p"):
        nucleus_mask(weights, segment, 2, 0.0)


def test_weighted_rescale_keeps_mean_scale() -> None:
    segment = segments([4, 3])
    weights = torch.tensor([0.4, 0.3, 0.2, 0.1, 0.5, 0.3, 0.2])
    keep = torch.tensor([True, True, False, False, True, True, True])
    scale = weighted_rescale(weights, keep, segment, 2)
    assert scale[~keep].abs().sum() == 0
    torch.testing.assert_close(scale[:2].mean(), torch.tensor(1.0))
    torch.testing.assert_close(scale[4:].mean(), torch.tensor(1.0))
    torch.testing.assert_close(scale[0] / scale[1], torch.tensor(4 / 3))


def test_cross_modal_attention_equals_per_frame_loop() -> None:
    torch.manual_seed(0)
    attention = CrossModalAttention(channels=6, query_dim=5, hidden_dim=4)
    segment = segments([4, 2, 3])
    features = torch.randn(9, 6)
    queries = torch.randn(3, 5)
    weights = attention(features, segment, queries)
    for frame in range(3):
        part = features[segment == frame]
        hidden = torch.tanh(
            attention.site_projection(part) + attention.query_projection(queries[frame])
        )
        expected = torch.softmax(attention.score(hidden).squeeze(-1), 0)
        torch.testing.assert_close(weights[segment == frame], expected)
