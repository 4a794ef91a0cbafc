"""Streaming video decoding: sample the frames of many utterances of one video in one pass.

A dialog video is decoded once, sequentially, with OpenCV. Each utterance asks for frames at its own
timestamps; the decoder keeps only the frames of utterances whose time span is still open and hands
an utterance's frames over as soon as the stream passes its last requested frame. Memory therefore
grows with the number of overlapping utterances and their length, never with the video's length.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np


class VideoError(RuntimeError):
    """A video that cannot be opened or read."""


@dataclass(frozen=True)
class FrameRequest:
    """The frames one utterance needs.

    Attributes:
        key: identifies the request in the results (an utterance id).
        times: timestamps in seconds, ascending.
        x_range: horizontal part of the frame to keep, as fractions of the width: (0, 0.5) is the
            left half, (0, 1) the whole frame.
    """

    key: str
    times: tuple[float, ...]
    x_range: tuple[float, float] = (0.0, 1.0)


@dataclass
class FrameResult:
    """Frames of one request, or why there are none.

    Attributes:
        key: the request's key.
        frames: (S, H, W, 3) uint8 RGB, one frame per requested time; None on error.
        error: the reason the frames could not be read, None on success.
    """

    key: str
    frames: np.ndarray | None
    error: str | None = None


@dataclass(frozen=True)
class VideoInfo:
    """Stream properties read from the container."""

    fps: float
    frame_count: int
    width: int
    height: int

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.frame_count / self.fps


def sample_times(start: float, end: float, fps: float) -> tuple[float, ...]:
    """Timestamps of the frames sampled from [start, end) at ``fps`` frames per second.

    The first frame is at ``start``, then one every ``1 / fps`` seconds while before ``end``; an
    utterance shorter than one interval still gets its first frame, so every utterance has S >= 1.
    """
    if end <= start:
        return (start,)
    count = max(1, math.ceil((end - start) * fps - 1e-9))
    return tuple(start + index / fps for index in range(count))


def probe_video(path: str | Path) -> VideoInfo:
    """Read fps, frame count and size of a video without decoding it.

    Raises:
        VideoError: the file is missing or OpenCV cannot open it.
    """
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"missing video {path}")
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise VideoError(f"cannot open video {path}")
        fps = float(capture.get(cv2.CAP_PROP_FPS))
        frame_count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    finally:
        capture.release()
    if not fps > 0 or frame_count <= 0 or width <= 0 or height <= 0:
        raise VideoError(
            f"cannot read video {path}: fps={fps}, frames={frame_count}, size={width}x{height}"
        )
    return VideoInfo(fps=fps, frame_count=frame_count, width=width, height=height)


def stream_frames(
    path: str | Path, requests: Sequence[FrameRequest], info: VideoInfo | None = None
) -> Iterator[FrameResult]:
    """Decode ``path`` once and yield each request's frames as soon as they are complete.

    Each requested time maps to the nearest frame index (clamped to the last frame). Frames nobody
    needs are only grabbed, not converted. Results come in the order the requests finish, which is
    the order of their last frame.

    Args:
        path: the video file.
        requests: what to sample; keys must be unique.
        info: stream properties if already probed.

    Yields:
        One :class:`FrameResult` per request. If the stream ends early (a truncated file), every
        unfinished request gets an error result instead of frames.

    Raises:
        VideoError: the video cannot be opened at all.
    """
    info = info if info is not None else probe_video(path)
    # Flatten every (request, slot) into the frame index it needs, sorted by frame index.
    wanted: dict[int, list[tuple[int, int]]] = {}
    last_index: list[int] = []
    for request_index, request in enumerate(requests):
        indices = [min(info.frame_count - 1, max(0, round(t * info.fps))) for t in request.times]
        for slot, frame_index in enumerate(indices):
            wanted.setdefault(frame_index, []).append((request_index, slot))
        last_index.append(max(indices))
    finish_at: dict[int, list[int]] = {}
    for request_index, frame_index in enumerate(last_index):
        finish_at.setdefault(frame_index, []).append(request_index)
    buffers: dict[int, list[np.ndarray | None]] = {}

    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise VideoError(f"cannot open video {path}")
    try:
        final = max(wanted) if wanted else -1
        frame_index = 0
        while frame_index <= final:
            if not capture.grab():
                break
            if frame_index in wanted:
                ok, bgr = capture.retrieve()
                if not ok or bgr is None:
                    break
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                width = rgb.shape[1]
                for request_index, slot in wanted.pop(frame_index):
                    x0, x1 = requests[request_index].x_range
                    # Copy so the stored crop does not pin the whole decoded frame in memory.
                    crop = rgb[:, round(x0 * width) : round(x1 * width)].copy()
                    buffer = buffers.setdefault(
                        request_index, [None] * len(requests[request_index].times)
                    )
                    buffer[slot] = crop
                for request_index in finish_at.pop(frame_index, []):
                    frames = buffers.pop(request_index)
                    yield FrameResult(requests[request_index].key, np.stack(frames))  # type: ignore[arg-type]
            frame_index += 1
    finally:
        capture.release()
    for pending in sorted(request for indices in finish_at.values() for request in indices):
        buffers.pop(pending, None)
        yield FrameResult(
            requests[pending].key,
            None,
            f"video {path} ended after {frame_index} of {info.frame_count} frames",
        )
