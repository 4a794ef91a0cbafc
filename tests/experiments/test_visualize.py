"""experiments/visualize.py: PNGs of a tiny MESM checkpoint; overlays = the kept sites."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from mesm.data.format import FormatInfo, ProcessedWriter, UtteranceRecord
from mesm.models import build_model
from mesm.train.checkpoint import save_checkpoint
from mesm.train.text_model import build_text_model

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "visualize.py"
CLASSES = ["ang", "exc", "fru", "hap", "neu", "sad"]
TEXTS = ["I am so angry now", "that is wonderful news", "leave me alone please"]


def _main():
    spec = importlib.util.spec_from_file_location("visualize_cli", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def write_processed(root: Path) -> list[str]:
    """A processed IEMOCAP-format folder of three random utterances of unequal lengths."""
    info = FormatInfo(dataset="iemocap", classes=CLASSES, fps=2.0, mel={"n_mels": 128})
    writer = ProcessedWriter(root, info)
    rng = np.random.default_rng(0)
    ids = []
    for index, (text, faces, chunks) in enumerate(zip(TEXTS, (2, 3, 1), (2, 1, 3), strict=True)):
        record = UtteranceRecord(
            id=f"Ses01F_impro01_F00{index}",
            dataset="iemocap",
            split=("train", "valid", "test")[index],
            labels=[CLASSES[index]],
            text=text,
            start=0.0,
            end=1.0,
        )
        writer.write_utterance(
            record,
            rng.integers(0, 256, (faces, 3, 48, 48), dtype=np.uint8),
            rng.normal(size=(chunks, 1, 128, 32)).astype(np.float16),
        )
        ids.append(record.id)
    writer.write_manifest()
    return ids


def write_checkpoint(folder: Path, model_name: str, text_model: str) -> Path:
    torch.manual_seed(0)
    options = {"top_p": 0.3, "sparse_backend": "torch"} if model_name == "mesm" else {}
    model = build_model(model_name, num_classes=len(CLASSES), text_model=text_model, **options)
    config = {
        "model": model_name,
        "modalities": "tav",
        "top_p": options.get("top_p"),
        "attention": "mask",
        "sparse_backend": "torch",
        "text_model": text_model,
        "text_max_len": 20,
        "img_interval": 500.0,
    }
    return save_checkpoint(
        folder / "best.pt",
        state_dict=model.state_dict(),
        config=config,
        class_names=CLASSES,
        thresholds=[0.5] * len(CLASSES),
    )


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    root = tmp_path_factory.mktemp("visualize")
    ids = write_processed(root / "data")
    text_model = str(build_text_model(TEXTS, root / "text_model", vocab_size=60, hidden_size=16))
    mesm = write_checkpoint(root / "mesm", "mesm", text_model)
    fe2e = write_checkpoint(root / "fe2e", "fe2e", text_model)
    return {"root": root, "ids": ids, "mesm": mesm, "fe2e": fe2e, "data": root / "data"}


def test_script_writes_one_png_per_utterance_and_modality(scene, tmp_path) -> None:
    import matplotlib.image

    ids = scene["ids"][:2]
    argv = ["--checkpoint", str(scene["mesm"].parent), "--data", str(scene["data"])]
    assert _main()([*argv, "--ids", *ids, "--out", str(tmp_path)]) == 0
    for utterance in ids:
        for modality in ("vision", "audio"):
            path = tmp_path / f"{utterance}_{modality}.png"
            assert path.stat().st_size > 5000
            image = matplotlib.image.imread(path)
            assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def test_overlay_marks_exactly_the_sites_the_model_kept(scene, tmp_path) -> None:
    from mesm.bench.common import load_checkpoint_model
    from mesm.viz.attention_maps import DROPPED, KEPT, NOT_SCORED, attention_figures

    ids = scene["ids"]
    figures = attention_figures(scene["mesm"], scene["data"], ids, tmp_path)
    assert figures.ids == ids
    # The model's own output, computed separately: sites of each utterance per level.
    loaded = load_checkpoint_model(scene["mesm"])
    for modality, levels in figures.attention.items():
        for level_index, level in enumerate(levels):
            frame_item = level.frame_to_step[level.coords[:, 0], 0]
            frame_step = level.frame_to_step[level.coords[:, 0], 1]
            for item, utterance in enumerate(ids):
                shown = next(m for m in figures.utterances[utterance] if m.modality == modality)
                states = shown.levels[level_index]
                mine = frame_item == item
                kept = {
                    (int(s), int(y), int(x))
                    for s, y, x, k in zip(
                        frame_step[mine],
                        *level.coords[mine, 1:].unbind(1),
                        level.kept[mine],
                        strict=True,
                    )
                    if k
                }
                assert set(map(tuple, np.argwhere(states == KEPT).tolist())) == kept
                assert (states == DROPPED).sum() == int((~level.kept[mine]).sum())
                assert (states != NOT_SCORED).sum() == int(mine.sum())
                # Level l sites are 2**(l+1) pixels wide in the drawn overlay.
                factor = 2 ** (level_index + 1)
                upsampled = shown.upsampled(level_index)
                assert np.array_equal(
                    upsampled[:, ::factor, ::factor][:, : states.shape[1], : states.shape[2]],
                    states,
                )
    assert loaded.config["model"] == "mesm"
    # Kept sites exist and are a strict subset of the scored ones at top-p 0.3.
    first = figures.attention["vision"][0]
    assert 0 < int(first.kept.sum()) < first.kept.numel()


def test_fe2e_checkpoint_and_unknown_id_are_refused(scene, tmp_path, capsys) -> None:
    base = ["--data", str(scene["data"]), "--out", str(tmp_path)]
    assert _main()(["--checkpoint", str(scene["fe2e"]), *base, "--ids", scene["ids"][0]]) == 2
    assert "need a MESM checkpoint" in capsys.readouterr().err
    assert _main()(["--checkpoint", str(scene["mesm"]), *base, "--ids", "nope"]) == 2
    assert "['nope'] are not in" in capsys.readouterr().err
