"""Audio: reading a channel at 16 kHz, the mel-spectrogram, and its 400 ms chunks.

Mel-spectrogram (MESM.md section 3): power spectrum of a Hann-windowed STFT with n_fft 400 (25 ms)
and hop 200 (12.5 ms) at 16 kHz, frames centred (zero padding of n_fft // 2 at both ends, so a
signal of T samples gives 1 + T // hop frames), projected on 128 triangular mel filters.

The filterbank is HTK-style: mel(f) = 2595 * log10(1 + f / 700), filters equally spaced on that
scale between ``f_min`` and ``f_max`` (default 0 Hz to Nyquist), each a triangle of peak 1 on the
linear frequency axis, without area normalisation. With 128 filters over the 201 bins of a 400-point
FFT the lowest few filters are narrower than one bin (40 Hz) and stay empty, as in other HTK-style
implementations; they are kept so the layout of the 128 bins is the standard one.

Log compression (``log=True``, the default) stores log(mel + 1e-6): power mel values span many
orders of magnitude and a convolutional network trained from scratch learns far better on the log
scale. ``log=False`` keeps the power values.

Chunks: the (F, T') spectrogram is cut into chunks of 32 frames (400 ms), (K, 1, F, 32) with
K = ceil(T' / 32). The last chunk is zero-padded in the power domain, i.e. padded with silence; with
log compression those cells hold log(1e-6), the value of silence, rather than a misleading 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import soundfile
import torch
from torch import Tensor

SAMPLE_RATE = 16000
LOG_EPSILON = 1e-6


class AudioError(RuntimeError):
    """An audio file that cannot be read or a segment outside it."""


@dataclass(frozen=True)
class MelConfig:
    """Mel-spectrogram and chunking parameters (defaults are MESM's)."""

    sample_rate: int = SAMPLE_RATE
    n_fft: int = 400
    hop_length: int = 200
    n_mels: int = 128
    f_min: float = 0.0
    f_max: float | None = None
    power: float = 2.0
    log: bool = True
    chunk_frames: int = 32

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready parameters, recorded in the processed format."""
        values = asdict(self)
        values["mel_scale"] = "htk"
        values["window"] = "hann"
        values["log_epsilon"] = LOG_EPSILON
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> MelConfig:
        """The inverse of :meth:`to_dict` (e.g. a ``format.json``'s ``mel``).

        Raises:
            ValueError: the parameters name a mel scale, window or log epsilon this code does not
                compute.
        """
        fixed = {"mel_scale": "htk", "window": "hann", "log_epsilon": LOG_EPSILON}
        differing = {k: values[k] for k, v in fixed.items() if k in values and values[k] != v}
        if differing:
            raise ValueError(f"mel parameters {differing} differ from this code's {fixed}")
        names = {item.name for item in fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in names})


def hz_to_mel(frequency: Tensor) -> Tensor:
    """HTK mel scale."""
    return 2595.0 * torch.log10(1.0 + frequency / 700.0)


def mel_to_hz(mel: Tensor) -> Tensor:
    """Inverse of :func:`hz_to_mel`."""
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def mel_filterbank(
    n_fft: int, n_mels: int, sample_rate: int, f_min: float = 0.0, f_max: float | None = None
) -> Tensor:
    """Triangular HTK-style mel filters.

    Returns:
        (n_fft // 2 + 1, F) weights; column m is filter m over the STFT frequency bins.
    """
    f_max = sample_rate / 2 if f_max is None else f_max
    bins = torch.linspace(0.0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    low, high = hz_to_mel(torch.tensor([f_min, f_max], dtype=torch.float64))
    edges = mel_to_hz(torch.linspace(float(low), float(high), n_mels + 2, dtype=torch.float64))
    left, centre, right = edges[:-2], edges[1:-1], edges[2:]  # (F,) each
    rising = (bins[:, None] - left) / (centre - left)  # (n_freqs, F)
    falling = (right - bins[:, None]) / (right - centre)
    return torch.clamp(torch.minimum(rising, falling), min=0.0).to(torch.float32)


def mel_spectrogram(waveform: Tensor, config: MelConfig = MelConfig()) -> Tensor:
    """Power (or log) mel-spectrogram.

    Args:
        waveform: (T,) or (B, T) samples at ``config.sample_rate``.

    Returns:
        (F, T') or (B, F, T') with T' = 1 + T // hop_length.
    """
    if waveform.shape[-1] == 0:
        raise ValueError("cannot compute a spectrogram of an empty signal")
    window = torch.hann_window(config.n_fft, dtype=waveform.dtype, device=waveform.device)
    spectrum = torch.stft(
        waveform,
        n_fft=config.n_fft,
        hop_length=config.hop_length,
        window=window,
        center=True,
        pad_mode="constant",
        return_complex=True,
    )  # (..., n_freqs, T')
    power = spectrum.abs().pow(config.power)
    filters = mel_filterbank(
        config.n_fft, config.n_mels, config.sample_rate, config.f_min, config.f_max
    ).to(power.device, power.dtype)
    # (..., n_freqs, T') -> (..., F, T')
    mel = torch.einsum("...nt,nf->...ft", power, filters)
    return torch.log(mel + LOG_EPSILON) if config.log else mel


def chunk_spectrogram(mel: Tensor, chunk_frames: int = 32, log: bool = True) -> Tensor:
    """Cut a spectrogram into fixed-length chunks, padding the last one with silence.

    Args:
        mel: (F, T') spectrogram.
        chunk_frames: frames per chunk.
        log: whether ``mel`` is log-compressed (silence is then log(1e-6), else 0).

    Returns:
        (K, 1, F, chunk_frames) with K = ceil(T' / chunk_frames).
    """
    n_mels, frames = mel.shape
    chunks = max(1, math.ceil(frames / chunk_frames))
    silence = math.log(LOG_EPSILON) if log else 0.0
    padded = mel.new_full((n_mels, chunks * chunk_frames), silence)
    padded[:, :frames] = mel
    # (F, K*32) -> (F, K, 32) -> (K, 1, F, 32)
    return padded.reshape(n_mels, chunks, chunk_frames).permute(1, 0, 2).unsqueeze(1).contiguous()


def audio_chunks(waveform: np.ndarray | Tensor, config: MelConfig = MelConfig()) -> Tensor:
    """Mel chunks of one utterance.

    Args:
        waveform: (T,) mono samples at ``config.sample_rate``.

    Returns:
        (K, 1, F, chunk_frames) float32.
    """
    signal = torch.as_tensor(np.asarray(waveform, dtype=np.float32))
    mel = mel_spectrogram(signal, config)
    return chunk_spectrogram(mel, config.chunk_frames, config.log)


def resample(samples: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """Polyphase resampling of (T,) or (T, channels) samples along time."""
    if source_rate == target_rate:
        return samples
    from scipy.signal import resample_poly  # scipy comes with scikit-learn

    divisor = math.gcd(source_rate, target_rate)
    return resample_poly(samples, target_rate // divisor, source_rate // divisor, axis=0).astype(
        np.float32
    )


def audio_duration(path: str | Path) -> float:
    """Length of an audio file in seconds.

    Raises:
        AudioError: the file is missing or unreadable.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"missing audio {path}")
    try:
        info = soundfile.info(str(path))
    except (RuntimeError, soundfile.LibsndfileError) as error:
        raise AudioError(f"cannot read audio {path}: {error}") from error
    return float(info.frames) / float(info.samplerate)


def read_segment(
    path: str | Path,
    start: float,
    end: float,
    channel: int | None = 0,
    sample_rate: int = SAMPLE_RATE,
) -> np.ndarray:
    """Read [start, end) seconds of one channel, resampled to ``sample_rate``.

    Only the segment is read from disk, so memory does not depend on the file's length.

    Args:
        path: audio file.
        start: segment start in seconds.
        end: segment end in seconds.
        channel: channel to keep; None averages all channels (for mono-mixed sources).
        sample_rate: output rate.

    Returns:
        (T,) float32 samples.

    Raises:
        AudioError: missing or unreadable file, a channel the file lacks, or times outside the file.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"missing audio {path}")
    try:
        with soundfile.SoundFile(str(path)) as handle:
            rate, total, channels = handle.samplerate, handle.frames, handle.channels
            first, last = round(start * rate), round(end * rate)
            if start < 0 or last > total + round(0.01 * rate) or last <= first:
                raise AudioError(
                    f"times outside the media: segment [{start:.3f}, {end:.3f}] s, "
                    f"audio {path} lasts {total / rate:.3f} s"
                )
            if channel is not None and channel >= channels:
                raise AudioError(f"audio {path} has {channels} channel(s), channel {channel} asked")
            handle.seek(first)
            samples = handle.read(min(last, total) - first, dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError) as error:
        raise AudioError(f"cannot read audio {path}: {error}") from error
    mono = samples.mean(axis=1) if channel is None else samples[:, channel]
    return resample(np.ascontiguousarray(mono), rate, sample_rate)
