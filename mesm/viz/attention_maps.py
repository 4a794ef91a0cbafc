"""What MESM's sparse attention keeps: face frames and mel chunks with the kept sites overlaid.

For each utterance and frame modality, one PNG: the first row shows the inputs (face frames or
mel-spectrogram chunks), then one row per attention level with every site of that level drawn
over the input as one of three states (the paper's Figures 3 and 4):

* kept by the nucleus (red tint),
* scored by the attention but dropped (darkened),
* not scored at all: no kept site of the previous level pooled into it (nearly black).

A site of level l covers a 2**(l+1) x 2**(l+1) block of input pixels (the stem's pool, then one
pool per upper block). Run it through ``experiments/visualize.py``.

Letters: S frames or chunks of an utterance, H, W input size, h, w size at a level, N sites,
F frames of the batch.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mesm.models.encoders import AttentionLevel
from mesm.viz.common import pyplot

NOT_SCORED, DROPPED, KEPT = 0, 1, 2
# RGBA drawn over the input for each state.
STATE_COLOURS: dict[int, tuple[float, float, float, float]] = {
    NOT_SCORED: (0.0, 0.0, 0.0, 0.85),
    DROPPED: (0.0, 0.0, 0.0, 0.55),
    KEPT: (1.0, 0.15, 0.1, 0.40),
}
SEQUENCE_KEYS = {"vision": "faces", "audio": "audio"}


@dataclass
class ModalityAttention:
    """The inputs of one frame modality of one utterance and the state of each site per level.

    Attributes:
        modality: ``"vision"`` or ``"audio"``.
        images: (S, H, W, 3) uint8 face frames or (S, H, W) float mel chunks.
        levels: per attention level, (S, h, w) int8 site states (NOT_SCORED, DROPPED, KEPT).
    """

    modality: str
    images: np.ndarray
    levels: list[np.ndarray]

    def upsampled(self, level: int) -> np.ndarray:
        """(S, H, W) site states of ``level`` at input resolution."""
        return upsample_states(self.levels[level], self.images.shape[1:3])


def level_site_states(level: AttentionLevel, item: int, steps: int) -> np.ndarray:
    """(S, h, w) int8 state of every site of one utterance at one attention level.

    Args:
        level: the model's attention output for the level (coords over the whole batch).
        item: the utterance's index in the batch.
        steps: its number of real frames S.
    """
    if level.frame_to_step is None:
        raise ValueError("the attention level has no frame_to_step map (run the full model)")
    height, width = level.spatial_size
    states = np.full((steps, height, width), NOT_SCORED, dtype=np.int8)
    frame, y, x = level.coords.cpu().unbind(dim=1)
    frame_item, frame_step = level.frame_to_step.cpu()[frame].unbind(dim=1)
    mine = frame_item == item
    values = torch.where(level.kept.cpu()[mine], KEPT, DROPPED).to(torch.int8).numpy()
    states[frame_step[mine].numpy(), y[mine].numpy(), x[mine].numpy()] = values
    return states


def upsample_states(states: np.ndarray, size: tuple[int, ...]) -> np.ndarray:
    """(S, h, w) -> (S, H, W): each site covers (H // h) x (W // w) pixels.

    Pixels of a ragged border that floor pooling dropped (H not a multiple of h) are NOT_SCORED.
    """
    height, width = int(size[0]), int(size[1])
    factor_y, factor_x = height // states.shape[1], width // states.shape[2]
    blocks = states.repeat(factor_y, axis=1).repeat(factor_x, axis=2)
    full = np.full((states.shape[0], height, width), NOT_SCORED, dtype=states.dtype)
    full[:, : blocks.shape[1], : blocks.shape[2]] = blocks
    return full


def overlay_rgba(states: np.ndarray) -> np.ndarray:
    """(..., H, W) site states -> (..., H, W, 4) float RGBA overlay."""
    colours = np.zeros((3, 4), dtype=np.float64)
    for state, colour in STATE_COLOURS.items():
        colours[state] = colour
    rgba: np.ndarray = colours[states]
    return rgba


def utterance_attention(
    attention: Mapping[str, Sequence[AttentionLevel]],
    item: int,
    images: Mapping[str, np.ndarray],
) -> list[ModalityAttention]:
    """Per frame modality, the inputs and site states of utterance ``item`` of a batch.

    Args:
        attention: ``ModelOutput.attention`` of ``model(inputs, return_attention=True)``.
        item: the utterance's index in that batch.
        images: modality -> (S, H, W, 3) faces or (S, H, W) mel chunks of that utterance.
    """
    result = []
    for modality, levels in attention.items():
        pictures = images[modality]
        steps = int(pictures.shape[0])
        states = [level_site_states(level, item, steps) for level in levels]
        result.append(ModalityAttention(modality, pictures, states))
    return result


def plot_modality_attention(
    attention: ModalityAttention, path: str | os.PathLike[str], title: str = ""
) -> Path:
    """One PNG: inputs in the first row, then each level's sites over them."""
    plt = pyplot()
    steps = attention.images.shape[0]
    rows = 1 + len(attention.levels)
    is_face = attention.images.ndim == 4
    cell = (1.3, 1.3) if is_face else (0.8, 2.6)
    figure, axes = plt.subplots(
        rows,
        steps,
        # at least 4.5 inches wide, so the title of a one-chunk utterance fits
        figsize=(max(4.5, 0.6 + cell[0] * steps), 1.0 + cell[1] * rows),
        squeeze=False,
    )
    for step in range(steps):
        for row in range(rows):
            axis = axes[row][step]
            if is_face:
                axis.imshow(attention.images[step])
            else:
                axis.imshow(attention.images[step], origin="lower", aspect="auto", cmap="gray")
            if row > 0:
                states = attention.upsampled(row - 1)[step]
                axis.imshow(
                    overlay_rgba(states),
                    origin="upper" if is_face else "lower",
                    aspect="equal" if is_face else "auto",
                    interpolation="nearest",
                )
            axis.set_xticks([])
            axis.set_yticks([])
            if step == 0:
                axis.set_ylabel("input" if row == 0 else f"level {row}")
            if row == 0:
                axis.set_title(f"{'frame' if is_face else 'chunk'} {step + 1}", fontsize=8)
    kept = [
        float((level == KEPT).sum()) / max(float((level != NOT_SCORED).sum()), 1.0)
        for level in attention.levels
    ]
    summary = ", ".join(f"L{i + 1} keeps {k:.0%}" for i, k in enumerate(kept))
    figure.suptitle(
        f"{title}\n{attention.modality}: {summary}\nred: kept, dark: dropped, black: not scored",
        fontsize=8,
    )
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


@dataclass
class AttentionFigures:
    """What :func:`attention_figures` produced.

    Attributes:
        paths: one PNG per utterance and frame modality.
        utterances: utterance id -> its per-modality attention (what the PNGs show).
        attention: the model's raw ``ModelOutput.attention`` of the batch.
        ids: the utterance ids in batch order.
    """

    paths: list[Path]
    utterances: dict[str, list[ModalityAttention]]
    attention: dict[str, list[AttentionLevel]]
    ids: list[str]


def _find_items(
    data: Path, ids: Sequence[str], frame_interval_ms: float | None
) -> list[dict[str, Any]]:
    from mesm.data.dataset import ProcessedDataset
    from mesm.data.format import read_manifest

    split_of = {record.id: record.split for record in read_manifest(data)}
    missing = [utterance for utterance in ids if utterance not in split_of]
    if missing:
        raise KeyError(f"utterance id(s) {missing} are not in {data}'s manifest")
    datasets: dict[str, ProcessedDataset] = {}
    items = []
    for utterance in ids:
        split = split_of[utterance]
        if split not in datasets:
            datasets[split] = ProcessedDataset(data, split, frame_interval_ms=frame_interval_ms)
        dataset = datasets[split]
        positions = [i for i, record in enumerate(dataset.records) if record.id == utterance]
        if not positions:
            raise KeyError(f"utterance {utterance} of {data} was not processed successfully")
        items.append(dataset[positions[0]])
    return items


def _images(item: Mapping[str, Any], modality: str) -> np.ndarray:
    values = item[SEQUENCE_KEYS[modality]]
    if modality == "vision":
        return np.asarray(values.permute(0, 2, 3, 1).numpy(), dtype=np.uint8)  # (S, H, W, 3)
    return np.asarray(values[:, 0].float().numpy())  # (S, 1, F, T) -> (S, F, T)


def attention_figures(
    checkpoint: str | os.PathLike[str],
    data: str | os.PathLike[str],
    ids: Sequence[str],
    out_dir: str | os.PathLike[str],
) -> AttentionFigures:
    """Run a MESM checkpoint on the given utterances and draw what its attention keeps.

    Args:
        checkpoint: a MESM ``best.pt``/``last.pt`` or its run folder.
        data: the processed dataset folder the utterances are in (any split).
        ids: utterance ids.
        out_dir: where ``<id>_<modality>.png`` files are written.

    Raises:
        ValueError: not a MESM checkpoint. KeyError: an unknown utterance id.
    """
    from transformers import AutoTokenizer

    from mesm.bench.common import load_checkpoint_model
    from mesm.bench.flops_sweep import model_encoders
    from mesm.data.batch import MODALITIES
    from mesm.data.collate import Collator

    if not ids:
        raise ValueError("give at least one utterance id")
    loaded = load_checkpoint_model(checkpoint, sparse_backend="torch")
    if not getattr(loaded.model, "text_queries_frames", False):
        raise ValueError(
            f"{loaded.path} is a {loaded.config.get('model')} checkpoint: attention figures need "
            "a MESM checkpoint"
        )
    encoders = model_encoders(loaded.model)
    modalities = tuple(name for name in MODALITIES if name in encoders)
    items = _find_items(Path(data), ids, loaded.config.get("img_interval"))
    tokenizer = AutoTokenizer.from_pretrained(loaded.text_model)
    collate = Collator(
        modalities, tokenizer=tokenizer, text_max_len=int(loaded.config.get("text_max_len", 50))
    )
    batch = collate(items)
    with torch.inference_mode():
        output = loaded.model(batch.inputs, return_attention=True)
    out = Path(out_dir)
    paths: list[Path] = []
    utterances: dict[str, list[ModalityAttention]] = {}
    for item_index, (utterance, item) in enumerate(zip(batch.ids, items, strict=True)):
        images = {modality: _images(item, modality) for modality in output.attention}
        per_modality = utterance_attention(output.attention, item_index, images)
        utterances[utterance] = per_modality
        for attention in per_modality:
            paths.append(
                plot_modality_attention(
                    attention,
                    out / f"{utterance}_{attention.modality}.png",
                    title=f"{utterance}\n{item['text'][:48]}",
                )
            )
    return AttentionFigures(paths, utterances, output.attention, batch.ids)


__all__ = [
    "DROPPED",
    "KEPT",
    "NOT_SCORED",
    "AttentionFigures",
    "ModalityAttention",
    "attention_figures",
    "level_site_states",
    "overlay_rgba",
    "plot_modality_attention",
    "upsample_states",
    "utterance_attention",
]
