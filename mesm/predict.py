"""Emotions of any video: a trained checkpoint applied to a recording, whole or per SRT segment.

The media of each segment go through the preprocessing pipeline itself, not a copy of it: the
segments become the utterances of one :class:`~mesm.data.build.SourceUnit`, which
:func:`~mesm.data.build.process_unit` builds into a temporary processed folder (frames sampled at
the checkpoint's frame interval, MTCNN face crops, mel chunks stored as the format stores them),
read back by :class:`~mesm.data.dataset.ProcessedDataset`, collated by
:class:`~mesm.data.collate.Collator` and scored by :func:`mesm.train.fit.predict`. A video therefore
gives exactly the probabilities the model gives to the same utterance built by
``preprocessing/build_iemocap.py``. Decisions use the per-class thresholds stored in the checkpoint.

The audio comes from the video's own track (decoded by FFmpeg through PyAV,
:mod:`mesm.media.container`) or from a separate file (IEMOCAP ships its sound as WAV files).
Side-by-side two-person frames (the IEMOCAP layout) are handled with ``side``: the left or right
half of the frame and audio channel 0 or 1, as the IEMOCAP build does.

Every problem with the user's input raises :class:`PredictError`, whose message is one line.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile
import torch

SIDES: tuple[str, ...] = ("left", "right")
# Horizontal part of the frame and audio channel of each side (IEMOCAP: channel 0 = left actor).
_SIDE_LAYOUT: dict[str, tuple[tuple[float, float], int]] = {
    "left": ((0.0, 0.5), 0),
    "right": ((0.5, 1.0), 1),
}
FORMATS: tuple[str, ...] = ("table", "json", "csv")
_SEGMENT_ID = "segment-{:05d}"

_SRT_TIME = r"(\d+):(\d{1,2}):(\d{1,2})[,.](\d{1,3})"
_SRT_TIMING = re.compile(rf"^\s*{_SRT_TIME}\s*-->\s*{_SRT_TIME}")
_SRT_TAG = re.compile(r"<[^>]+>|\{\\[^}]*\}")


class PredictError(RuntimeError):
    """A user error: unreadable media, no audio track, no face, empty text, bad checkpoint."""


@dataclass(frozen=True)
class Segment:
    """A time span of the video to classify.

    Attributes:
        index: 1-based number (the SRT cue number when read from subtitles).
        start: start in seconds.
        end: end in seconds.
        text: what is said in it ("" when unknown).
    """

    index: int
    start: float
    end: float
    text: str = ""


@dataclass
class SegmentPrediction:
    """The model's output for one segment.

    Attributes:
        segment: the span and text.
        probabilities: (C,) float64 sigmoid probabilities in the checkpoint's class order.
        decisions: (C,) bool, probability >= the class's stored threshold.
        n_frames: face frames sampled.
        n_faces_detected: frames where MTCNN found a face (the others reuse a neighbour's box).
    """

    segment: Segment
    probabilities: np.ndarray
    decisions: np.ndarray
    n_frames: int
    n_faces_detected: int

    def emotions(self, class_names: Sequence[str]) -> list[str]:
        """Names of the classes decided present."""
        return [name for name, present in zip(class_names, self.decisions, strict=True) if present]


@dataclass
class VideoPrediction:
    """Predictions for every segment of one video."""

    video: Path
    checkpoint: Path
    class_names: list[str]
    thresholds: np.ndarray
    modalities: tuple[str, ...]
    side: str | None
    segments: list[SegmentPrediction] = field(default_factory=list)


# ----------------------------------------------------------------------------------- SRT
def _seconds(hours: str, minutes: str, seconds: str, millis: str) -> float:
    return int(hours) * 3600 + int(minutes) * 60 + int(seconds) + int(millis.ljust(3, "0")) / 1000


def parse_srt(text: str, source: str = "subtitles") -> list[Segment]:
    """Cues of SubRip subtitles.

    A cue is an optional number line, a ``HH:MM:SS,mmm --> HH:MM:SS,mmm`` line (a ``.`` decimal
    separator is accepted) and text lines, which are joined with spaces after removing formatting
    tags (``<i>``, ``{\\an8}``). Cues are separated by blank lines; a byte-order mark and CRLF line
    ends are accepted.

    Args:
        text: the file's content.
        source: name used in error messages.

    Returns:
        Segments in file order, numbered by their cue number (or position when unnumbered).

    Raises:
        PredictError: no cue, a block without a timing line, or a cue that ends before it starts.
    """
    lines = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n").split("\n")
    segments: list[Segment] = []
    block: list[tuple[int, str]] = []
    for number, line in enumerate([*lines, ""], start=1):
        if line.strip():
            block.append((number, line.strip()))
            continue
        if not block:
            continue
        position = 0
        if _SRT_TIMING.match(block[0][1]) is None and len(block) > 1:
            position = 1  # the cue number line
        line_number, timing_line = block[position]
        timing = _SRT_TIMING.match(timing_line)
        if timing is None:
            raise PredictError(
                f"{source} line {line_number}: expected a timing line like "
                f"'00:00:01,000 --> 00:00:02,500', got {timing_line!r}"
            )
        start, end = _seconds(*timing.groups()[:4]), _seconds(*timing.groups()[4:])
        if end <= start:
            raise PredictError(
                f"{source} line {line_number}: the cue ends at {end:.3f} s, not after its start "
                f"{start:.3f} s"
            )
        words = " ".join(_SRT_TAG.sub("", content) for _, content in block[position + 1 :])
        cue = block[0][1] if position == 1 else ""
        index = int(cue) if cue.isdigit() else len(segments) + 1
        segments.append(Segment(index, start, end, " ".join(words.split())))
        block = []
    if not segments:
        raise PredictError(f"{source} holds no subtitle cue")
    return segments


def read_srt(path: str | Path) -> list[Segment]:
    """Parse an SRT file (UTF-8).

    Raises:
        PredictError: unreadable or not UTF-8, or not valid SRT (see :func:`parse_srt`).
    """
    path = Path(path)
    try:
        content = path.read_bytes().decode("utf-8")
    except OSError as error:
        raise PredictError(f"cannot read subtitles {path}: {error.strerror or error}") from error
    except UnicodeDecodeError as error:
        raise PredictError(f"subtitles {path} are not UTF-8 text ({error.reason})") from error
    return parse_srt(content, str(path))


def read_transcript(path: str | Path) -> str:
    """The text of a transcript file, whitespace collapsed.

    Raises:
        PredictError: unreadable, not UTF-8, or empty.
    """
    path = Path(path)
    try:
        content = path.read_bytes().decode("utf-8-sig")
    except OSError as error:
        raise PredictError(f"cannot read transcript {path}: {error.strerror or error}") from error
    except UnicodeDecodeError as error:
        raise PredictError(f"transcript {path} is not UTF-8 text ({error.reason})") from error
    text = " ".join(content.split())
    if not text:
        raise PredictError(f"transcript {path} is empty")
    return text


# ----------------------------------------------------------------------------------- model
def _restricted_state(
    state: dict[str, torch.Tensor], trained: tuple[str, ...], kept: tuple[str, ...]
) -> dict[str, torch.Tensor]:
    """The state dict of the same model with only ``kept`` modalities.

    Encoders and heads of dropped modalities are left out and the fusion keeps the learned weights
    of the kept ones, so fused logits = sum over kept m of alpha_m * head_m(feature_m).
    """
    dropped = [name for name in trained if name not in kept]
    prefixes = tuple(
        prefix for name in dropped for prefix in (f"encoders.{name}.", f"fusion.heads.{name}.")
    )
    restricted = {key: value for key, value in state.items() if not key.startswith(prefixes)}
    weights_key = "fusion.modality_weights"
    if weights_key in restricted:
        order = [trained.index(name) for name in kept]
        restricted[weights_key] = restricted[weights_key][order]
    return restricted


def _stored_mel(config: dict[str, Any], checkpoint: str | Path) -> Any:
    """The mel parameters the checkpoint's training data were built with (MESM's defaults for
    checkpoints that predate ``data_format``)."""
    from mesm.media.audio import MelConfig

    data_format = config.get("data_format") or {}
    try:
        return MelConfig.from_dict(data_format.get("mel") or {})
    except (TypeError, ValueError) as error:
        raise PredictError(f"checkpoint {checkpoint}: unusable mel parameters: {error}") from error


class Predictor:
    """A checkpoint loaded once, ready to classify any number of videos.

    Args:
        checkpoint: a ``best.pt``/``last.pt`` written by a training run.
        device: ``cpu`` or ``cuda`` (model and MTCNN).
        modalities: letters among t, a, v to use, a subset of the checkpoint's; None uses all of
            them. Dropping a modality keeps the fusion weights of the others (a dense model only:
            MESM's attention is queried by the text).

    Raises:
        PredictError: unreadable checkpoint or of another format version, unknown device, a
            modality the checkpoint lacks or its model cannot run without, a text model that
            cannot be loaded.
    """

    def __init__(
        self, checkpoint: str | Path, device: str = "cpu", modalities: str | None = None
    ) -> None:
        from mesm.train.checkpoint import CheckpointError, load_checkpoint
        from mesm.train.experiment import ConfigError, RunConfig, parse_modalities

        if device not in ("cpu", "cuda"):
            raise PredictError(f"device must be cpu or cuda, got {device!r}")
        if device == "cuda" and not torch.cuda.is_available():
            raise PredictError("--device cuda asked but no CUDA device is available")
        self.device = torch.device(device)
        try:
            self.checkpoint = load_checkpoint(checkpoint, map_location="cpu")
        except CheckpointError as error:
            raise PredictError(str(error)) from error
        stored = self.checkpoint.config
        self.config = RunConfig.from_stored(stored)
        if self.config.model is None:
            raise PredictError(f"checkpoint {checkpoint} does not name its model in its config")
        try:
            self.trained_modalities = parse_modalities(self.config.modalities)
            self.modalities = (
                self.trained_modalities if modalities is None else parse_modalities(modalities)
            )
        except ConfigError as error:
            raise PredictError(str(error)) from error
        missing = [name for name in self.modalities if name not in self.trained_modalities]
        if missing:
            raise PredictError(
                f"checkpoint {checkpoint} was trained on {list(self.trained_modalities)}, "
                f"not on {missing}"
            )
        self.class_names = list(self.checkpoint.class_names)
        self.thresholds = np.asarray(self.checkpoint.thresholds, dtype=np.float64)
        self.fps = 1000.0 / float(self.config.img_interval)
        self.mel = _stored_mel(stored, checkpoint)
        self.model, self.collator = self._load()

    @property
    def uses_text(self) -> bool:
        return "text" in self.modalities

    def _load(self) -> tuple[torch.nn.Module, Any]:
        """Build the model (restricted to the chosen modalities) and its collator."""
        from mesm.data.collate import Collator
        from mesm.models import build_model
        from mesm.train.experiment import locate_text_model, model_kwargs

        path = self.checkpoint.path
        text_model = None
        tokenizer = None
        if self.uses_text:
            text_model = locate_text_model(str(self.config.text_model), path)
            try:
                from transformers import AutoTokenizer

                tokenizer = AutoTokenizer.from_pretrained(text_model)
            except (OSError, ValueError) as error:
                raise PredictError(
                    f"cannot load the text model {text_model!r} of checkpoint {path} (a run's "
                    f"text_model folder, or a Hugging Face name that is cached): {error}".replace(
                        "\n", " "
                    )
                ) from error
        code = "".join(name[0] for name in self.modalities)
        config = dataclasses.replace(self.config, modalities=code)
        try:
            model = build_model(
                str(config.model), **model_kwargs(config, len(self.class_names), text_model)
            )
        except ValueError as error:  # e.g. MESM without text
            raise PredictError(
                f"checkpoint {path} ({config.model}) cannot run on modalities "
                f"{list(self.modalities)}: {error}"
            ) from error
        state = _restricted_state(
            self.checkpoint.state_dict, self.trained_modalities, self.modalities
        )
        try:
            model.load_state_dict(state)
        except RuntimeError as error:
            first = str(error).splitlines()[0]
            raise PredictError(
                f"the weights of checkpoint {path} do not fit a {config.model} model on "
                f"modalities {list(self.modalities)}: {first}"
            ) from error
        model.eval()
        collator = Collator(
            self.modalities, tokenizer=tokenizer, text_max_len=int(self.config.text_max_len)
        )
        return model.to(self.device), collator

    def predict(
        self,
        video: str | Path,
        segments: Sequence[Segment] | None = None,
        text: str | None = None,
        side: str | None = None,
        audio: str | Path | None = None,
    ) -> VideoPrediction:
        """Classify the whole video (one segment) or each of ``segments``.

        Args:
            video: any container OpenCV's FFmpeg reads (mp4, avi, mkv, webm, ...).
            segments: time spans with their text; None classifies the whole video with ``text``
                (from 0 to the end of the shorter of the video and the sound).
            text: the transcript of the whole video (only without ``segments``).
            side: None for whole frames and all audio channels mixed; ``left``/``right`` for the
                left/right half of side-by-side frames and audio channel 0/1.
            audio: a sound file (WAV, FLAC, OGG) to use instead of the video's audio track.

        Raises:
            PredictError: unreadable video or audio, no audio track, missing or empty text, no
                face in any sampled frame, a segment outside the media.
        """
        from mesm.data.build import (
            UNASSIGNED,
            BuildOptions,
            SourceUnit,
            UtteranceSpec,
            process_unit,
        )
        from mesm.data.dataset import ProcessedDataset
        from mesm.data.format import STATUS_OK, FormatInfo, ProcessedWriter, UtteranceRecord
        from mesm.media.audio import AudioError, audio_duration
        from mesm.media.video import VideoError, probe_video
        from mesm.train.fit import predict as predict_probabilities
        from mesm.train.metrics import apply_thresholds

        video = Path(video)
        if segments is not None and text is not None:
            raise PredictError("give the text either for the whole video or in the segments")
        if side is not None and side not in SIDES:
            raise PredictError(f"side must be one of {SIDES}, got {side!r}")
        if self.uses_text:
            self._check_text(segments, text)
        try:
            info = probe_video(video)
        except VideoError as error:
            raise PredictError(str(error)) from error

        with tempfile.TemporaryDirectory(prefix="mesm-predict-") as folder:
            work = Path(folder)
            sound = self._sound_file(video, audio, info.duration, work)
            try:
                sound_length = audio_duration(sound)
                channels = soundfile.info(str(sound)).channels
            except (AudioError, RuntimeError) as error:
                raise PredictError(str(error)) from error
            if segments is None:
                segments = [Segment(1, 0.0, min(info.duration, sound_length), text or "")]
            x_range, channel = (0.0, 1.0), None
            if side is not None:
                x_range, side_channel = _SIDE_LAYOUT[side]
                channel = side_channel if channels > 1 else None
            specs = [
                UtteranceSpec(
                    id=_SEGMENT_ID.format(position),
                    start=segment.start,
                    end=segment.end,
                    labels=[],
                    text=segment.text,
                    x_range=x_range,
                    channel=channel,
                )
                for position, segment in enumerate(segments)
            ]
            mel = self.mel
            processed = work / "processed"
            format_info = FormatInfo(
                dataset="video", classes=self.class_names, fps=self.fps, mel=mel.to_dict()
            )
            options = BuildOptions(dataset="video", fps=self.fps, mel=mel, device=self.device.type)
            unit = SourceUnit(video.stem or "video", video, sound, specs)
            records = {
                record["id"]: UtteranceRecord.from_dict(record)
                for record in process_unit(unit, processed, format_info, options).records
            }
            for spec, segment in zip(specs, segments, strict=True):
                record = records[spec.id]
                if record.status != STATUS_OK:
                    raise PredictError(
                        f"segment {segment.index} [{segment.start:.3f}, {segment.end:.3f}] s: "
                        f"{record.reason} ({record.error})"
                    )
            if "vision" in self.modalities and not any(
                record.n_faces_detected for record in records.values()
            ):
                frames = sum(record.n_frames for record in records.values())
                where = "" if side is None else f" ({side} half of the frame)"
                hint = "" if side is not None else "; for side-by-side videos pass --side"
                raise PredictError(
                    f"no face found in any of the {frames} frames sampled from {video}{where}{hint}"
                )
            ProcessedWriter(processed, format_info).write_manifest()
            dataset = ProcessedDataset(processed, UNASSIGNED)
            loader = torch.utils.data.DataLoader(dataset, batch_size=1, collate_fn=self.collator)
            ids, probabilities, _ = predict_probabilities(self.model, loader, self.device)
        decisions = apply_thresholds(probabilities, self.thresholds)
        row_of = {utterance_id: row for row, utterance_id in enumerate(ids)}
        result = VideoPrediction(
            video=video,
            checkpoint=self.checkpoint.path,
            class_names=self.class_names,
            thresholds=self.thresholds,
            modalities=self.modalities,
            side=side,
        )
        for spec, segment in zip(specs, segments, strict=True):
            row = row_of[spec.id]
            record = records[spec.id]
            result.segments.append(
                SegmentPrediction(
                    segment=segment,
                    probabilities=probabilities[row],
                    decisions=decisions[row],
                    n_frames=record.n_frames,
                    n_faces_detected=record.n_faces_detected,
                )
            )
        return result

    def _check_text(self, segments: Sequence[Segment] | None, text: str | None) -> None:
        path = self.checkpoint.path
        others = "".join(name[0] for name in self.modalities if name != "text")
        fallback = (
            f", or --modalities {others} to leave text out (dense models only)" if others else ""
        )
        if segments is None:
            if text is None:
                raise PredictError(
                    f"checkpoint {path} uses text: give --text, --transcript or --segments with "
                    f"the words said{fallback}"
                )
            if not text.strip():
                raise PredictError("the transcript is empty")
            return
        for segment in segments:
            if not segment.text.strip():
                raise PredictError(
                    f"subtitle cue {segment.index} ({segment.start:.3f}-{segment.end:.3f} s) has "
                    f"no text and checkpoint {path} uses text{fallback}"
                )

    def _sound_file(
        self, video: Path, audio: str | Path | None, duration: float, work: Path
    ) -> Path:
        """A file soundfile reads holding the sound: ``audio``, or the video's track as WAV."""
        from mesm.media.audio import SAMPLE_RATE, AudioError
        from mesm.media.container import extract_audio_track
        from mesm.media.video import VideoError

        if audio is not None:
            return Path(audio)
        wav = work / "audio.wav"
        try:
            return extract_audio_track(video, wav)
        except AudioError as error:
            if "audio" in self.modalities or "no audio track" not in str(error):
                raise PredictError(
                    f"{error}; pass --audio FILE when the sound is in a separate file"
                ) from error
        except VideoError as error:
            raise PredictError(str(error)) from error
        # The model does not listen: silence lets the shared pipeline run unchanged.
        soundfile.write(str(wav), np.zeros(round(duration * SAMPLE_RATE) + 1), SAMPLE_RATE)
        return wav


def predict_video(
    video: str | Path,
    checkpoint: str | Path,
    *,
    segments: Sequence[Segment] | None = None,
    text: str | None = None,
    side: str | None = None,
    audio: str | Path | None = None,
    modalities: str | None = None,
    device: str = "cpu",
) -> VideoPrediction:
    """One-call form of :class:`Predictor` (see :meth:`Predictor.predict`)."""
    predictor = Predictor(checkpoint, device=device, modalities=modalities)
    return predictor.predict(video, segments=segments, text=text, side=side, audio=audio)


# ----------------------------------------------------------------------------------- output
def format_table(result: VideoPrediction) -> str:
    """A plain-text table: one row per segment, a probability column per class (``*`` marks a
    decision at the stored threshold), the decided emotions, and a threshold row."""
    names = result.class_names
    width = max(6, *(len(name) for name in names))
    lines = [
        f"{'segment':>9} {'start':>8} {'end':>8}  "
        + "".join(f"{name:>{width}}  " for name in names)
        + "emotions"
    ]
    for item in result.segments:
        cells = "".join(
            f"{probability:>{width}.3f}{'*' if decided else ' '} "
            for probability, decided in zip(item.probabilities, item.decisions, strict=True)
        )
        lines.append(
            f"{item.segment.index:>9} {item.segment.start:>8.2f} {item.segment.end:>8.2f}  "
            f"{cells}{', '.join(item.emotions(names)) or '-'}"
        )
    thresholds = "".join(f"{value:>{width}.3f}  " for value in result.thresholds)
    lines.append(f"{'threshold':>9} {'':>8} {'':>8}  {thresholds}".rstrip())
    lines.append(
        f"{result.video} by {result.checkpoint}: probabilities, * at or above the class "
        f"threshold (modalities {', '.join(result.modalities)})"
    )
    return "\n".join(lines)


def _by_class(names: Sequence[str], values: np.ndarray, kind: type) -> dict[str, Any]:
    return {name: kind(value) for name, value in zip(names, values, strict=True)}


def to_dict(result: VideoPrediction) -> dict[str, Any]:
    """JSON-ready description of the predictions."""
    names = result.class_names
    return {
        "video": str(result.video),
        "checkpoint": str(result.checkpoint),
        "modalities": list(result.modalities),
        "side": result.side,
        "classes": names,
        "thresholds": _by_class(names, result.thresholds, float),
        "segments": [
            {
                "index": item.segment.index,
                "start": item.segment.start,
                "end": item.segment.end,
                "text": item.segment.text,
                "probabilities": _by_class(names, item.probabilities, float),
                "decisions": _by_class(names, item.decisions, bool),
                "emotions": item.emotions(names),
                "frames": item.n_frames,
                "faces_detected": item.n_faces_detected,
            }
            for item in result.segments
        ],
    }


def format_json(result: VideoPrediction) -> str:
    return json.dumps(to_dict(result), indent=2, ensure_ascii=False, allow_nan=False)


def format_csv(result: VideoPrediction) -> str:
    """CSV with the columns of a run's ``predictions.csv``: ``prob_<class>``, ``label_<class>``."""
    names = result.class_names
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        [
            "segment",
            "start",
            "end",
            "text",
            *(f"prob_{name}" for name in names),
            *(f"label_{name}" for name in names),
        ]
    )
    for item in result.segments:
        writer.writerow(
            [
                item.segment.index,
                item.segment.start,
                item.segment.end,
                item.segment.text,
                *(repr(float(value)) for value in item.probabilities),
                *(int(value) for value in item.decisions),
            ]
        )
    return buffer.getvalue().rstrip("\n")


FORMATTERS = {"table": format_table, "json": format_json, "csv": format_csv}


def format_prediction(result: VideoPrediction, output_format: str) -> str:
    """``result`` as ``table``, ``json`` or ``csv`` text."""
    if output_format not in FORMATTERS:
        raise ValueError(f"format must be one of {FORMATS}, got {output_format!r}")
    return FORMATTERS[output_format](result)


__all__ = [
    "FORMATS",
    "SIDES",
    "PredictError",
    "Predictor",
    "Segment",
    "SegmentPrediction",
    "VideoPrediction",
    "format_csv",
    "format_json",
    "format_prediction",
    "format_table",
    "parse_srt",
    "predict_video",
    "read_srt",
    "read_transcript",
    "to_dict",
]
