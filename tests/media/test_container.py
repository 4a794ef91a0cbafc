"""mesm.media.container: audio tracks of video containers, and writing such containers."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile

from mesm.media.audio import AudioError
from mesm.media.container import extract_audio_track, read_audio_track, write_video
from mesm.media.video import VideoError, probe_video

RATE = 16000


@pytest.fixture(scope="module")
def media():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, size=(12, 64, 80, 3), dtype=np.uint8)
    time = np.arange(round(1.2 * RATE)) / RATE
    stereo = np.stack([0.3 * np.sin(2 * np.pi * 440 * time), 0.2 * np.sin(2 * np.pi * 950 * time)])
    # On the 16-bit grid, so a lossless track must give these values back exactly.
    samples = np.round(stereo.T * 32768) / 32768
    return frames, samples.astype(np.float32)


@pytest.mark.parametrize(
    "name,video_codec,audio_codec",
    [("a.avi", "mjpeg", "pcm_s16le"), ("a.mkv", "ffv1", "flac")],
)
def test_lossless_tracks_come_back_exactly(media, tmp_path, name, video_codec, audio_codec):
    frames, samples = media
    path = write_video(tmp_path / name, frames, 10.0, samples, RATE, video_codec, audio_codec)
    decoded, rate = read_audio_track(path)
    assert rate == RATE and decoded.dtype == np.float32
    np.testing.assert_array_equal(decoded, samples)
    info = probe_video(path)  # the video stream stays readable by OpenCV
    assert (info.frame_count, info.width, info.height, info.fps) == (12, 80, 64, 10.0)


def test_wav_extracted_from_a_track_reads_as_the_16_bit_wav_it_came_from(media, tmp_path):
    _, samples = media
    soundfile.write(str(tmp_path / "ref.wav"), samples, RATE, subtype="PCM_16")
    reference, _ = soundfile.read(str(tmp_path / "ref.wav"), dtype="float32")
    video = write_video(tmp_path / "v.avi", media[0], 10.0, reference, RATE)
    extracted, rate = soundfile.read(str(extract_audio_track(video, tmp_path / "out.wav")))
    assert rate == RATE
    np.testing.assert_array_equal(extracted.astype(np.float32), reference)


def test_lossy_aac_track_in_mp4_keeps_the_tones(media, tmp_path):
    frames, samples = media
    path = write_video(tmp_path / "a.mp4", frames, 10.0, samples, RATE, "libx264", "aac")
    decoded, rate = read_audio_track(path)
    assert rate == RATE and decoded.shape[1] == 2
    # Spectral peak of each channel at its tone (AAC is lossy and adds encoder delay).
    spectrum = np.abs(np.fft.rfft(decoded[: len(samples)], axis=0))
    peaks = np.fft.rfftfreq(len(samples), 1 / RATE)[spectrum.argmax(axis=0)]
    np.testing.assert_allclose(peaks, [440, 950], atol=2)


def test_video_without_audio_track_and_unreadable_files(media, tmp_path):
    path = write_video(tmp_path / "mute.avi", media[0], 10.0)
    with pytest.raises(AudioError, match="has no audio track"):
        read_audio_track(path)
    (tmp_path / "bad.mp4").write_bytes(b"not a video at all" * 50)
    with pytest.raises(VideoError, match="cannot open"):
        read_audio_track(tmp_path / "bad.mp4")
    with pytest.raises(VideoError, match="missing video"):
        read_audio_track(tmp_path / "absent.mkv")
