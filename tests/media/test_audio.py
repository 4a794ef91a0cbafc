import math

import numpy as np
import pytest
import soundfile
import torch

from mesm.media.audio import (
    LOG_EPSILON,
    AudioError,
    MelConfig,
    audio_chunks,
    chunk_spectrogram,
    hz_to_mel,
    mel_filterbank,
    mel_spectrogram,
    mel_to_hz,
    read_segment,
)

RATE = 16000


def _tone(frequency: float, seconds: float, rate: int = RATE) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * frequency * np.arange(round(seconds * rate)) / rate)).astype(
        np.float32
    )


def _centres() -> np.ndarray:
    low, high = hz_to_mel(torch.tensor([0.0, RATE / 2], dtype=torch.float64))
    return mel_to_hz(torch.linspace(float(low), float(high), 130, dtype=torch.float64))[
        1:-1
    ].numpy()


def test_htk_mel_scale_round_trips_and_maps_1000_hz_near_1000_mel():
    frequencies = torch.tensor([0.0, 440.0, 1000.0, 8000.0], dtype=torch.float64)
    assert torch.allclose(mel_to_hz(hz_to_mel(frequencies)), frequencies)
    assert abs(float(hz_to_mel(torch.tensor(1000.0))) - 1000.0) < 1.0


def test_filterbank_is_triangles_of_peak_one_in_increasing_order():
    filters = mel_filterbank(400, 128, RATE)
    assert filters.shape == (201, 128)
    assert float(filters.min()) >= 0.0 and float(filters.max()) <= 1.0 + 1e-6
    nonempty = filters.sum(0) > 0
    # Only low filters, narrower than one 40 Hz bin, may fall between bins.
    assert bool(nonempty[_centres() > 500.0].all())
    assert int((~nonempty).sum()) <= 8
    peaks = filters[:, nonempty].argmax(0)
    assert bool((peaks[1:] >= peaks[:-1]).all())
    # A filter centred exactly on a bin reaches 1 there.
    assert float(filters.max(0).values[-20:].min()) > 0.5


def test_mel_of_a_tone_peaks_at_the_filter_centred_nearest_the_tone():
    for frequency in (500.0, 1000.0, 3000.0):
        mel = mel_spectrogram(torch.from_numpy(_tone(frequency, 0.5)))
        peak = int(mel.mean(1).argmax())
        assert abs(_centres()[peak] - frequency) < 0.06 * frequency


def test_frame_and_chunk_counts_for_known_durations():
    config = MelConfig()
    for seconds, frames, chunks in ((1.0, 81, 3), (0.4, 33, 2), (0.39, 32, 1), (3.0, 241, 8)):
        samples = round(seconds * RATE)
        assert 1 + samples // config.hop_length == frames
        mel = mel_spectrogram(torch.zeros(samples) + 0.01, config)
        assert mel.shape == (128, frames)
        out = audio_chunks(np.full(samples, 0.01, np.float32), config)
        assert out.shape == (chunks, 1, 128, 32) == (math.ceil(frames / 32), 1, 128, 32)
        assert out.dtype == torch.float32


def test_last_chunk_is_padded_with_silence_in_both_scales():
    mel = torch.arange(2 * 40, dtype=torch.float32).reshape(2, 40)
    log_chunks = chunk_spectrogram(mel, 32, log=True)
    assert log_chunks.shape == (2, 1, 2, 32)
    assert torch.equal(log_chunks[0, 0], mel[:, :32])
    assert torch.equal(log_chunks[1, 0, :, :8], mel[:, 32:])
    assert torch.allclose(log_chunks[1, 0, :, 8:], torch.tensor(math.log(LOG_EPSILON)))
    power_chunks = chunk_spectrogram(mel, 32, log=False)
    assert float(power_chunks[1, 0, :, 8:].abs().max()) == 0.0


def test_log_option_is_log_of_power_plus_epsilon():
    signal = torch.from_numpy(_tone(700.0, 0.3))
    power = mel_spectrogram(signal, MelConfig(log=False))
    logged = mel_spectrogram(signal, MelConfig(log=True))
    assert torch.allclose(logged, torch.log(power + LOG_EPSILON), atol=1e-5)


def test_batched_spectrogram_matches_one_by_one():
    signals = torch.stack([torch.from_numpy(_tone(f, 0.25)) for f in (300.0, 2500.0)])
    batched = mel_spectrogram(signals)
    for row in range(2):
        assert torch.allclose(batched[row], mel_spectrogram(signals[row]), atol=1e-4)


def _dominant(samples: np.ndarray, rate: int = RATE) -> float:
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[spectrum.argmax()])


def test_read_segment_selects_the_channel_and_only_the_segment(tmp_path):
    path = tmp_path / "stereo.wav"
    stereo = np.stack([_tone(500.0, 2.0), _tone(2000.0, 2.0)], axis=1)
    soundfile.write(str(path), stereo, RATE)
    left = read_segment(path, 0.5, 1.5, channel=0)
    right = read_segment(path, 0.5, 1.5, channel=1)
    assert left.shape == right.shape == (RATE,)
    assert _dominant(left) == pytest.approx(500.0, abs=2.0)
    assert _dominant(right) == pytest.approx(2000.0, abs=2.0)


def test_read_segment_resamples_to_16_khz(tmp_path):
    path = tmp_path / "low_rate.wav"
    soundfile.write(str(path), _tone(440.0, 1.0, rate=8000), 8000)
    samples = read_segment(path, 0.0, 1.0, channel=0)
    assert samples.shape == (RATE,)
    assert _dominant(samples) == pytest.approx(440.0, abs=2.0)


def test_read_segment_errors_name_the_problem(tmp_path):
    path = tmp_path / "mono.wav"
    soundfile.write(str(path), _tone(440.0, 1.0), RATE)
    with pytest.raises(AudioError, match="times outside the media"):
        read_segment(path, 0.5, 3.0)
    with pytest.raises(AudioError, match="channel 1"):
        read_segment(path, 0.0, 0.5, channel=1)
    with pytest.raises(AudioError, match="missing audio"):
        read_segment(tmp_path / "absent.wav", 0.0, 0.5)
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk")
    with pytest.raises(AudioError, match="corrupt.wav"):
        read_segment(corrupt, 0.0, 0.5)
