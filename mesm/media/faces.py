"""Face cropping with MTCNN (facenet-pytorch): 48x48 crops, margin 2, frames batched.

Detection runs offline, once per frame, in preprocessing (never inside a model's ``forward``).
A frame where MTCNN finds no face reuses the box of the nearest frame of the same utterance that
has one; an utterance with no detection at all falls back to a centred square crop. The number of
frames with a real detection is returned so the manifest can record how much is real.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch

# Face normalisation on the 0-255 scale (MESM.md section 3): (pixel - mean) / std per channel.
FACE_MEAN: tuple[float, float, float] = (159.0, 111.0, 102.0)
FACE_STD: tuple[float, float, float] = (37.0, 33.0, 32.0)

FACE_SIZE = 48
FACE_MARGIN = 2


@dataclass
class FaceCrops:
    """Faces of one utterance.

    Attributes:
        faces: (S, 3, H, W) uint8 RGB crops, H = W = image size.
        n_detected: how many of the S frames had a real MTCNN detection.
    """

    faces: np.ndarray
    n_detected: int


def _load_mtcnn(image_size: int, margin: int, device: torch.device) -> Any:
    try:
        from facenet_pytorch import MTCNN
    except ImportError as error:  # pragma: no cover - facenet-pytorch is a core dependency
        raise ImportError(
            "face cropping needs facenet-pytorch; install the package with `uv sync` "
            "(it is a core dependency of mesm)"
        ) from error
    return MTCNN(image_size=image_size, margin=margin, post_process=False, device=device)


def expand_box(
    box: np.ndarray, image_size: int, margin: int, height: int, width: int
) -> np.ndarray:
    """Grow detection boxes by the MTCNN margin and clip them to the frame.

    The margin is given in pixels of the final crop, as facenet-pytorch defines it, so it is scaled
    by box size / (image_size - margin) in the source frame.

    Args:
        box: (S, 4) x1, y1, x2, y2 in frame pixels.

    Returns:
        (S, 4) integer boxes inside the frame, each at least one pixel wide and tall.
    """
    scale = margin / (image_size - margin)
    grow = np.stack(
        [(box[:, 2] - box[:, 0]) * scale, (box[:, 3] - box[:, 1]) * scale], axis=1
    )  # (S, 2)
    grown = np.concatenate([box[:, :2] - grow / 2, box[:, 2:] + grow / 2], axis=1)
    limits = np.array([width, height, width, height], dtype=np.float64)
    clipped = np.clip(np.round(grown), 0, limits).astype(np.int64)
    clipped[:, 2] = np.maximum(clipped[:, 2], clipped[:, 0] + 1)
    clipped[:, 3] = np.maximum(clipped[:, 3], clipped[:, 1] + 1)
    return clipped


def fill_missing_boxes(boxes: np.ndarray, detected: np.ndarray) -> np.ndarray:
    """Give each frame without a detection the box of the nearest frame that has one.

    Args:
        boxes: (S, 4) boxes; rows where ``detected`` is False are ignored.
        detected: (S,) bool.

    Returns:
        (S, 4) boxes. Ties between an earlier and a later frame go to the earlier one.
    """
    found = np.flatnonzero(detected)
    if found.size == 0:
        raise ValueError("no frame has a detection to reuse")
    frames = np.arange(len(boxes))
    after = np.clip(np.searchsorted(found, frames), 0, found.size - 1)
    before = np.clip(after - 1, 0, found.size - 1)
    use_before = np.abs(frames - found[before]) <= np.abs(found[after] - frames)
    nearest = np.where(use_before, found[before], found[after])
    return boxes[nearest]


def centred_box(height: int, width: int) -> np.ndarray:
    """(4,) the largest centred square of a frame, used when no frame of an utterance has a face."""
    side = min(height, width)
    x1, y1 = (width - side) // 2, (height - side) // 2
    return np.array([x1, y1, x1 + side, y1 + side], dtype=np.int64)


class FaceCropper:
    """Detect and crop the face of each frame with MTCNN.

    Args:
        image_size: side of the square crops.
        margin: margin in pixels of the crop, as in facenet-pytorch.
        device: where MTCNN runs; None picks CUDA when available, else CPU.
        batch_size: frames per detector call.
        min_face_size: smallest face MTCNN looks for, in pixels.
    """

    def __init__(
        self,
        image_size: int = FACE_SIZE,
        margin: int = FACE_MARGIN,
        device: str | torch.device | None = None,
        batch_size: int = 64,
        min_face_size: int = 20,
    ) -> None:
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.image_size = image_size
        self.margin = margin
        self.batch_size = batch_size
        self.detector = _load_mtcnn(image_size, margin, torch.device(device))
        self.detector.min_face_size = min_face_size

    def detect(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Most confident face box per frame.

        Args:
            frames: (S, H, W, 3) uint8 RGB frames of one size.

        Returns:
            boxes (S, 4) x1, y1, x2, y2 (zeros where none) and detected (S,) bool.
        """
        boxes = np.zeros((len(frames), 4), dtype=np.float64)
        detected = np.zeros(len(frames), dtype=bool)
        for first in range(0, len(frames), self.batch_size):
            batch = frames[first : first + self.batch_size]
            batch_boxes, batch_probs = self.detector.detect(batch)
            for offset, (frame_boxes, frame_probs) in enumerate(
                zip(batch_boxes, batch_probs, strict=True)
            ):
                if frame_boxes is None or len(frame_boxes) == 0:
                    continue
                best = int(np.argmax(np.asarray(frame_probs, dtype=np.float64)))
                boxes[first + offset] = frame_boxes[best]
                detected[first + offset] = True
        return boxes, detected

    def __call__(self, frames: np.ndarray) -> FaceCrops:
        """Crop one face per frame.

        Args:
            frames: (S, H, W, 3) uint8 RGB frames of one utterance.

        Returns:
            (S, 3, image_size, image_size) uint8 crops and the number of real detections.
        """
        if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
            raise ValueError(f"expected (S, H, W, 3) frames with S >= 1, got {frames.shape}")
        height, width = frames.shape[1:3]
        boxes, detected = self.detect(frames)
        n_detected = int(detected.sum())
        if n_detected:
            pixel_boxes = expand_box(
                fill_missing_boxes(boxes, detected), self.image_size, self.margin, height, width
            )
        else:
            pixel_boxes = np.repeat(centred_box(height, width)[None], len(frames), axis=0)
        size = (self.image_size, self.image_size)
        crops = np.stack(
            [
                cv2.resize(frame[y1:y2, x1:x2], size, interpolation=cv2.INTER_AREA)
                for frame, (x1, y1, x2, y2) in zip(frames, pixel_boxes, strict=True)
            ]
        )  # (S, H, W, 3)
        # (S, H, W, 3) -> (S, 3, H, W)
        return FaceCrops(np.ascontiguousarray(crops.transpose(0, 3, 1, 2)), n_detected)
