import dataclasses

import cv2
import numpy as np
import pytest

from mesm.media.video import FrameRequest, VideoError, probe_video, sample_times, stream_frames

FPS = 10.0


@pytest.fixture(scope="module")
def numbered_video(tmp_path_factory):
    """40 frames at 10 fps; left half brightness 5*i, right half 250 - 5*i (frame i)."""
    path = tmp_path_factory.mktemp("video") / "numbered.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (64, 32))
    for index in range(40):
        frame = np.zeros((32, 64, 3), np.uint8)
        frame[:, :32] = 5 * index
        frame[:, 32:] = 250 - 5 * index
        writer.write(frame)
    writer.release()
    return path


def _index_of(frame: np.ndarray, left: bool = True) -> int:
    value = float(frame[4:-4, 4:-4].mean())
    return round(value / 5) if left else round((250 - value) / 5)


def test_sample_times_every_interval_and_at_least_one():
    assert sample_times(0.0, 1.0, 2.0) == (0.0, 0.5)
    assert sample_times(1.0, 2.01, 2.0) == (1.0, 1.5, 2.0)
    assert sample_times(3.0, 3.2, 2.0) == (3.0,)
    assert sample_times(3.0, 3.0, 2.0) == (3.0,)


def test_probe_reads_stream_properties(numbered_video, tmp_path):
    info = probe_video(numbered_video)
    assert (info.fps, info.frame_count, info.width, info.height) == (FPS, 40, 64, 32)
    assert info.duration == pytest.approx(4.0)
    with pytest.raises(VideoError, match="missing video"):
        probe_video(tmp_path / "absent.avi")
    garbage = tmp_path / "garbage.avi"
    garbage.write_bytes(b"not a video at all" * 10)
    with pytest.raises(VideoError, match="garbage.avi"):
        probe_video(garbage)


def test_requests_get_the_nearest_frames_of_their_half(numbered_video):
    requests = [
        FrameRequest("late", (2.0, 2.5, 3.9), (0.0, 0.5)),
        FrameRequest("early", (0.0, 0.34), (0.5, 1.0)),
        FrameRequest("overlap", (0.3, 2.2), (0.0, 0.5)),
    ]
    results = list(stream_frames(numbered_video, requests))
    # Handed over as soon as the stream passes each request's last frame.
    assert [result.key for result in results] == ["early", "overlap", "late"]
    frames = {result.key: result.frames for result in results}
    assert frames["early"].shape == (2, 32, 32, 3)
    assert [_index_of(f, left=False) for f in frames["early"]] == [0, 3]
    assert [_index_of(f) for f in frames["late"]] == [20, 25, 39]
    assert [_index_of(f) for f in frames["overlap"]] == [3, 22]
    assert all(result.error is None for result in results)


def test_times_past_the_end_clamp_to_the_last_frame(numbered_video):
    (result,) = stream_frames(numbered_video, [FrameRequest("tail", (3.95, 10.0))])
    assert [_index_of(f[:, :32]) for f in result.frames] == [39, 39]


def test_stream_ending_early_gives_error_results_not_frames(numbered_video):
    # A file shorter than its header claims (a truncated copy): pretend the header says 80 frames.
    info = dataclasses.replace(probe_video(numbered_video), frame_count=80)
    requests = [FrameRequest("start", (0.0,)), FrameRequest("end", (6.0,))]
    by_key = {result.key: result for result in stream_frames(numbered_video, requests, info)}
    assert by_key["start"].frames is not None
    assert by_key["end"].frames is None and "ended after 40 of 80 frames" in by_key["end"].error
