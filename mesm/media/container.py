"""Audio tracks of video containers (mp4, avi, mkv, webm, ...) through FFmpeg (PyAV).

Video frames are decoded by :mod:`mesm.media.video` (OpenCV, whose bundled FFmpeg reads every
common container but no audio). The audio track of a container is decoded here with PyAV and
written to a WAV file, so that an utterance of a video is then cut, resampled and turned into mel
chunks by exactly the functions preprocessing uses for a dataset's separate audio files
(:func:`mesm.media.audio.read_segment`, :func:`mesm.media.audio.audio_chunks`).

:func:`write_video` writes a container with a video and an optional audio track, for tests and
demos: OpenCV can write video but no audio.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import soundfile

from mesm.media.audio import AudioError
from mesm.media.video import VideoError


def _import_av() -> Any:
    try:
        import av
    except ImportError as error:  # pragma: no cover - av is a core dependency
        raise ImportError(
            "reading audio tracks of video files needs PyAV (the `av` package, a core dependency "
            "of mesm): run `uv sync`"
        ) from error
    return av


def _open(path: Path, mode: str = "r") -> Any:
    av = _import_av()
    try:
        return av.open(str(path), mode)
    except (av.FFmpegError, OSError, ValueError) as error:
        verb = "open" if mode == "r" else "write"
        raise VideoError(f"cannot {verb} {path}: {error}") from error


def read_audio_track(path: str | Path) -> tuple[np.ndarray, int]:
    """Decode the first audio track of a media file.

    Args:
        path: any container FFmpeg reads (a plain audio file works too).

    Returns:
        samples (T, channels) float32 on the [-1, 1] scale (16-bit PCM x maps to x / 32768, as
        libsndfile reads WAV files) and the track's sample rate.

    Raises:
        VideoError: the file is missing or FFmpeg cannot open it.
        AudioError: the file has no audio track, or it cannot be decoded or holds no sample.
    """
    av = _import_av()
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"missing video {path}")
    with _open(path) as container:
        if not container.streams.audio:
            raise AudioError(f"{path} has no audio track")
        stream = container.streams.audio[0]
        # Planar float keeps every channel apart and converts integer PCM exactly.
        resampler = av.AudioResampler(format="fltp")
        planes: list[np.ndarray] = []
        try:
            for frame in container.decode(stream):
                planes.extend(part.to_ndarray() for part in resampler.resample(frame))
            planes.extend(part.to_ndarray() for part in resampler.resample(None))
        except av.FFmpegError as error:
            raise AudioError(f"cannot decode the audio track of {path}: {error}") from error
        rate = int(stream.rate)
    if not planes or rate <= 0:
        raise AudioError(f"the audio track of {path} holds no sample")
    # (channels, T) per frame -> (T, channels)
    samples = np.concatenate(planes, axis=1).T.astype(np.float32)
    if samples.shape[0] == 0:
        raise AudioError(f"the audio track of {path} holds no sample")
    return np.ascontiguousarray(samples), rate


def extract_audio_track(path: str | Path, wav_path: str | Path) -> Path:
    """Write the first audio track of ``path`` to a float WAV file at the track's own rate.

    Raises:
        VideoError, AudioError: as :func:`read_audio_track`.
    """
    samples, rate = read_audio_track(path)
    soundfile.write(str(wav_path), samples, rate, subtype="FLOAT")
    return Path(wav_path)


def write_video(
    path: str | Path,
    frames: np.ndarray,
    fps: float,
    audio: np.ndarray | None = None,
    sample_rate: int = 16000,
    video_codec: str = "mjpeg",
    audio_codec: str = "pcm_s16le",
) -> Path:
    """Write frames, and optionally an audio track, into a container chosen by the file suffix.

    Audio and video are interleaved frame by frame, as recorders write them.

    Args:
        path: the output file (``.avi``, ``.mkv``, ``.mp4``, ``.webm``, ...).
        frames: (S, H, W, 3) uint8 RGB frames.
        fps: frame rate.
        audio: (T,) or (T, channels) samples on the [-1, 1] scale, or None for no audio track.
        sample_rate: rate of ``audio``.
        video_codec: an FFmpeg encoder the container accepts (mjpeg, mpeg4, libx264, libvpx...).
        audio_codec: an FFmpeg audio encoder (pcm_s16le, aac, flac, libopus...).

    Returns:
        ``path``.
    """
    av = _import_av()
    path = Path(path)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (S, H, W, 3) uint8, got {frames.dtype}{frames.shape}")
    pcm: np.ndarray | None = None
    if audio is not None:
        audio = audio[:, None] if audio.ndim == 1 else audio
        # (T, channels) float -> (T, channels) int16, the format every audio encoder accepts.
        pcm = np.clip(np.round(audio * 32768.0), -32768, 32767).astype(np.int16)
    height, width = frames.shape[1:3]
    with _open(path, "w") as container:
        video = container.add_stream(video_codec, rate=Fraction(fps).limit_denominator(1001))
        video.width, video.height = width, height
        video.pix_fmt = "yuvj420p" if video_codec == "mjpeg" else "yuv420p"
        sound = None
        if pcm is not None:
            layout = {1: "mono", 2: "stereo"}.get(pcm.shape[1])
            if layout is None:
                raise ValueError(f"audio must have 1 or 2 channels, got {pcm.shape[1]}")
            sound = container.add_stream(audio_codec, rate=sample_rate, layout=layout)
        written = 0
        for index, image in enumerate(frames):
            for packet in video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
            if sound is not None and pcm is not None:
                upto = (
                    pcm.shape[0]
                    if index == len(frames) - 1
                    else round((index + 1) * sample_rate / fps)
                )
                if upto > written:
                    # (T', channels) -> (1, T' * channels): packed 16-bit samples.
                    chunk = av.AudioFrame.from_ndarray(
                        np.ascontiguousarray(pcm[written:upto]).reshape(1, -1),
                        format="s16",
                        layout=sound.layout.name,
                    )
                    chunk.sample_rate, chunk.pts = sample_rate, written
                    chunk.time_base = Fraction(1, sample_rate)
                    for packet in sound.encode(chunk):
                        container.mux(packet)
                    written = upto
        for stream in (video, sound):
            if stream is not None:
                for packet in stream.encode(None):
                    container.mux(packet)
    return path


__all__ = ["extract_audio_track", "read_audio_track", "write_video"]
