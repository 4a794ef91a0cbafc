"""Cross-modal attention over spatial sites and nucleus (top-p) site selection, vectorised.

All frames of all items of a batch are processed at once: every active site carries the index
of its frame (a segment id), and per-frame operations (softmax, sorting, cumulative mass) are
segment operations, with no Python loop over items, frames or sites.

Letters: N active sites, F frames (segments), C channels, D text feature size, K hidden size.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

ATTENTION_MODES: tuple[str, ...] = ("mask", "weighted")


def segment_softmax(scores: Tensor, segment: Tensor, num_segments: int) -> Tensor:
    """Softmax of ``scores`` within each segment.

    Args:
        scores: (N,) scores.
        segment: (N,) int64 segment id of each score, in [0, num_segments).
        num_segments: number of segments F (empty segments are allowed).

    Returns:
        (N,) weights summing to 1 within every non-empty segment.
    """
    # Subtracting each segment's max keeps exp() finite; it does not change the softmax.
    seg_max = scores.new_full((num_segments,), float("-inf"))
    seg_max = seg_max.scatter_reduce(0, segment, scores.detach(), reduce="amax")
    exp = torch.exp(scores - seg_max[segment])
    seg_sum = exp.new_zeros(num_segments).index_add(0, segment, exp)
    return exp / seg_sum[segment]


def nucleus_mask(weights: Tensor, segment: Tensor, num_segments: int, top_p: float) -> Tensor:
    """Per segment, the smallest set of sites whose weight mass reaches ``top_p``.

    Sites are ranked by weight, descending; ties go to the lower site index. A site is kept when
    the mass of the sites ranked before it (exclusive cumulative sum) is below ``top_p``, so the
    site that crosses ``top_p`` is kept and the first site always is (never an empty segment).
    ``top_p >= 1`` keeps everything, whatever the float round-off of the sums.

    Args:
        weights: (N,) non-negative weights, summing to 1 per segment.
        segment: (N,) int64 segment id of each site.
        num_segments: number of segments F.
        top_p: mass to reach, in (0, 1].

    Returns:
        (N,) bool, True at kept sites.
    """
    if not 0.0 < top_p:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if top_p >= 1.0:
        return torch.ones_like(weights, dtype=torch.bool)
    weights = weights.detach()
    # Two stable sorts: by weight descending (ties keep index order), then by segment.
    by_weight = torch.sort(weights, descending=True, stable=True).indices
    by_segment = torch.sort(segment[by_weight], stable=True).indices
    order = by_weight[by_segment]  # (N,) sites grouped by segment, heaviest first
    sorted_weights = weights[order].double()  # float64: long cumsums must not drift
    sorted_segment = segment[order]
    cumulative = torch.cumsum(sorted_weights, dim=0)
    # Mass of all earlier segments, subtracted to restart the cumsum in each segment.
    seg_total = sorted_weights.new_zeros(num_segments).index_add(0, sorted_segment, sorted_weights)
    seg_start = torch.cumsum(seg_total, dim=0) - seg_total
    exclusive = cumulative - sorted_weights - seg_start[sorted_segment]
    keep_sorted = exclusive < top_p
    keep = torch.empty_like(keep_sorted)
    keep[order] = keep_sorted
    return keep


def weighted_rescale(weights: Tensor, keep: Tensor, segment: Tensor, num_segments: int) -> Tensor:
    """(N,) factors w * n_kept / sum_kept(w) per segment (zero at dropped sites).

    Multiplying kept features by these factors weights them by attention while keeping their
    mean scale within a frame unchanged (the factors average to 1 over the kept sites).
    """
    kept_weights = weights * keep
    kept_count = keep.to(weights.dtype)
    seg_count = kept_count.new_zeros(num_segments).index_add(0, segment, kept_count)
    seg_mass = kept_weights.new_zeros(num_segments).index_add(0, segment, kept_weights)
    return kept_weights * (seg_count / seg_mass.clamp_min(torch.finfo(weights.dtype).tiny))[segment]


class CrossModalAttention(nn.Module):
    """Scores every site of a frame against the text [CLS] vector of its item.

    M_q = tanh(W_m M + b_m + W_q q) with K hidden units; weights = softmax over the frame's
    sites of (w_i . M_q + b_i) (MESM.md section 3). The score bias b_i is left out: a constant
    added to every site of a frame cancels in that frame's softmax, so it could never learn.
    """

    def __init__(self, channels: int, query_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.site_projection = nn.Linear(channels, hidden_dim)  # W_m, b_m
        self.query_projection = nn.Linear(query_dim, hidden_dim, bias=False)  # W_q
        self.score = nn.Linear(hidden_dim, 1, bias=False)  # w_i (b_i cancels in the softmax)

    def forward(self, features: Tensor, frame_index: Tensor, frame_queries: Tensor) -> Tensor:
        """Attention weights of the sites.

        Args:
            features: (N, C) site features.
            frame_index: (N,) int64 frame of each site.
            frame_queries: (F, D) text feature of each frame's item.

        Returns:
            (N,) weights, summing to 1 over each frame's sites.
        """
        # Project once per frame, then gather per site: F << N.
        query = self.query_projection(frame_queries)[frame_index]  # (F, K) -> (N, K)
        hidden = torch.tanh(self.site_projection(features) + query)
        scores = self.score(hidden).squeeze(-1)  # (N, 1) -> (N,)
        return segment_softmax(scores, frame_index, frame_queries.shape[0])


__all__ = [
    "ATTENTION_MODES",
    "CrossModalAttention",
    "nucleus_mask",
    "segment_softmax",
    "weighted_rescale",
]
