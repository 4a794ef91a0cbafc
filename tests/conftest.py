"""Fixtures shared by the predict tests (tests/test_predict.py, tests/test_cli.py).

``predict_scene`` is built once per session: a miniature IEMOCAP tree whose dialog video is
rewritten as a container holding the generated audio track as well (the official release keeps
the sound in separate WAV files), that tree reorganised by ``build_iemocap``, a from-scratch text
model, and MESM and FE2E checkpoints with fixed thresholds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile
import torch

CLASSES = ["ang", "exc", "fru", "hap", "neu", "sad"]
THRESHOLDS = [0.45, 0.5, 0.55, 0.4, 0.6, 0.35]


@dataclass
class PredictScene:
    """What the predict tests run on.

    Attributes:
        tree: the generated raw tree (utterance ids, sides, times, texts).
        video: the dialog's container, video and audio track (also the tree's ``.avi``).
        processed: ``build_iemocap`` output of the tree (every utterance split ``unassigned``).
        text_model: folder of the text model.
        mesm: MESM checkpoint (text, audio, vision).
        fe2e: FE2E checkpoint (text, audio, vision).
        frames: (S, H, W, 3) uint8 RGB frames of the dialog video.
        classes: class names of the checkpoints.
        thresholds: their stored thresholds.
    """

    tree: object
    video: Path
    processed: Path
    text_model: Path
    mesm: Path
    fe2e: Path
    frames: np.ndarray
    classes: list[str]
    thresholds: list[float]


def read_all_frames(path: Path) -> np.ndarray:
    """(S, H, W, 3) uint8 RGB: every frame of a video."""
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    capture.release()
    return np.stack(frames)


def save_tiny_checkpoint(path: Path, model_name: str, text_model: Path, seed: int) -> Path:
    """A randomly initialised model saved as a run saves its best.pt."""
    from mesm.models import build_model
    from mesm.train.checkpoint import save_checkpoint
    from mesm.train.experiment import model_kwargs, resolve_config

    flags = {"dataset": "demo", "model": model_name, "text_model": str(text_model)}
    config = resolve_config(None, flags)
    torch.manual_seed(seed)
    model = build_model(model_name, **model_kwargs(config, len(CLASSES), str(text_model)))
    return save_checkpoint(
        path,
        state_dict=model.state_dict(),
        config=config.to_dict(),
        class_names=CLASSES,
        thresholds=THRESHOLDS,
    )


@pytest.fixture(scope="session")
def predict_scene(tmp_path_factory) -> PredictScene:
    from mesm.data.iemocap import build_iemocap
    from mesm.data.synthetic import make_iemocap_tree
    from mesm.media.container import write_video
    from mesm.train.text_model import build_text_model

    root = tmp_path_factory.mktemp("predict")
    tree = make_iemocap_tree(
        root / "raw",
        sessions=1,
        dialogs_per_session=1,
        utterances_per_dialog=5,
        seed=10,
        frame_size=(144, 216),  # faces of 60 pixels: MTCNN finds them, and fast
    )
    dialog = root / "raw" / "Session1" / "dialog"
    name = tree.dialogs[0]
    video = dialog / "avi" / "DivX" / f"{name}.avi"
    samples, rate = soundfile.read(str(dialog / "wav" / f"{name}.wav"), dtype="int16")
    frames = read_all_frames(video)
    # The same pictures (lossless FFV1) and 16-bit samples, now one file with an audio track.
    write_video(video, frames, tree.fps, samples / 32768.0, rate, video_codec="ffv1")
    processed = root / "processed"
    build_iemocap(tree.root, processed, split_dir=None, progress=False)
    texts = [utterance.text for utterance in tree.utterances if utterance.text]
    text_model = build_text_model(texts, root / "text_model", vocab_size=150, seed=0)
    return PredictScene(
        tree=tree,
        video=video,
        processed=processed,
        text_model=text_model,
        mesm=save_tiny_checkpoint(root / "mesm" / "best.pt", "mesm", text_model, seed=1),
        fe2e=save_tiny_checkpoint(root / "fe2e" / "best.pt", "fe2e", text_model, seed=2),
        frames=frames,
        classes=CLASSES,
        thresholds=THRESHOLDS,
    )
