"""Miniature raw CMU-MOSEI trees in the official layout, for tests, trials and throughput runs.

:func:`make_mosei_tree` writes, under a folder playing ``CMU_MOSEI``, ``Raw/Videos/Full/Combined``
(mp4), ``Raw/Audio/Full/WAV_16000`` (16 kHz mono wav), ``Raw/Transcript/Segmented/Combined``
(``<video_id>___<clip>___<start>___<end>___<text>`` lines), ``Raw/Labels/Batch_*.csv`` (crowd-worker
answers, several per segment, one of them rejected) and ``CMU_MOSEI_Labels.csd`` (the SDK's HDF5
labels: per video ``features`` (n, 7) and ``intervals`` (n, 2)), both label sources computed from
the same answers. Video ids are numeric, contain ``_`` (also followed by digits, as a clip number
is) and ``-``; clip numbers have gaps and exceed 9, so string and numeric order differ.

Labels are learnable from each modality on its own:

- vision: a real face photograph (scikit-image's astronaut) tinted by the segment's first emotion,
  shown only while a segment is spoken (noise in between); within a segment its brightness ramps
  from :data:`RAMP` low to high, a time code that tests read back from the stored crops;
- audio: the sum of a tone per present emotion over faint noise;
- text: words typical of each present emotion among filler words.

With ``inject_bad`` the tree also holds one of each cleaning case (see :mod:`mesm.data.mosei`):
invalid times, times outside the media, empty text, non-UTF-8 text, a segment without labels,
labels of a clip without a transcript line, silent audio, a segment without a face, a corrupt
video and an unparseable transcript line.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import soundfile

from mesm.data.build import (
    REASON_CORRUPT_VIDEO,
    REASON_EMPTY_TEXT,
    REASON_INVALID_TIMES,
    REASON_NO_FACE,
    REASON_NOT_IN_LABELS,
    REASON_NOT_IN_TRANSCRIPTION,
    REASON_NOT_UTF8,
    REASON_OUTSIDE_MEDIA,
    REASON_SILENT_AUDIO,
)
from mesm.data.mosei import (
    AUDIO_SUBDIR,
    CLASSES,
    CSD_FEATURES,
    CSD_FILE,
    CSV_ANSWER_COLUMNS,
    CSV_CLIP_COLUMN,
    CSV_REJECTED,
    CSV_STATUS_COLUMN,
    CSV_VIDEO_COLUMN,
    LABEL_SUBDIR,
    TRANSCRIPT_SUBDIR,
    VIDEO_SUBDIR,
    binarise,
    segment_id,
)
from mesm.data.synthetic import FILLER_WORDS, astronaut_face

SAMPLE_RATE = 16000
# Face brightness gain at the start and at the end of a segment.
RAMP: tuple[float, float] = (0.45, 1.25)
# Tone of each emotion in the audio, in Hz.
EMOTION_TONES: dict[str, float] = {
    "anger": 450.0, "disgust": 800.0, "fear": 1200.0, "happy": 1700.0, "sad": 2400.0,
    "surprise": 3300.0,
}  # fmt: skip
# RGB gain of the face by the segment's first emotion (none: untinted).
EMOTION_TINTS: dict[str, tuple[float, float, float]] = {
    "anger": (1.35, 0.75, 0.75), "disgust": (0.85, 1.3, 0.8), "fear": (0.8, 0.8, 1.0),
    "happy": (1.3, 1.2, 0.65), "sad": (0.7, 0.85, 1.35), "surprise": (1.2, 0.85, 1.25),
}  # fmt: skip
EMOTION_WORDS: dict[str, tuple[str, ...]] = {
    "anger": ("furious", "outrageous", "hate", "ridiculous"),
    "disgust": ("gross", "disgusting", "nasty", "awful"),
    "fear": ("scared", "afraid", "worried", "terrifying"),
    "happy": ("love", "great", "wonderful", "enjoyed"),
    "sad": ("miss", "lonely", "sorry", "lost"),
    "surprise": ("wow", "unexpected", "shocked", "suddenly"),
}
ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@dataclass
class SyntheticSegment:
    """One generated segment.

    Attributes:
        id: ``<video_id>_<clip>``.
        video_id: its video.
        clip: clip number.
        start: start in seconds, as written to the transcript.
        end: end in seconds.
        text: the transcript text (None: the line holds non-UTF-8 bytes).
        scores: mean accepted answer per class (:data:`CLASSES` order); None when no label row
            names the segment.
        in_transcript: False for labels of a clip the transcript lacks.
        face: whether the face is shown while it is spoken.
        expected_reason: the failure reason the builder must record (CSV labels), None when ok.
    """

    id: str
    video_id: str
    clip: int
    start: float
    end: float
    text: str | None
    scores: tuple[float, ...] | None
    in_transcript: bool = True
    face: bool = True
    silent: bool = False
    expected_reason: str | None = None

    @property
    def labels(self) -> list[str]:
        """Present emotions (score > 0)."""
        return binarise(self.scores) if self.scores is not None else []


@dataclass
class SyntheticMoseiTree:
    """What :func:`make_mosei_tree` generated."""

    root: Path
    video_ids: list[str]
    segments: list[SyntheticSegment]
    fps: float
    durations: dict[str, float] = field(default_factory=dict)
    rejected_answers: int = 0
    unparseable_lines: int = 0

    @property
    def csd(self) -> Path:
        return self.root / CSD_FILE

    def by_id(self) -> dict[str, SyntheticSegment]:
        return {segment.id: segment for segment in self.segments}

    def expected_ok(self) -> list[SyntheticSegment]:
        """Segments the builder must write with status ok, sorted by id."""
        return sorted((s for s in self.segments if s.expected_reason is None), key=lambda s: s.id)

    def expected_failures(self, label_source: str = "csv") -> dict[str, str]:
        """id -> reason of every segment written as failed with this label source.

        A ``.csd`` row names no clip, so labels of a clip without a transcript line give no record
        with the ``.csd`` (the row is counted as matching no segment instead).
        """
        return {
            s.id: s.expected_reason
            for s in self.segments
            if s.expected_reason is not None and (s.in_transcript or label_source == "csv")
        }

    def face_gain(self, segment: SyntheticSegment, time: float) -> float:
        """Brightness gain of the face in the video frame shown at ``time``."""
        index = round(time * self.fps)
        fraction = (index / self.fps - segment.start) / (segment.end - segment.start)
        return RAMP[0] + (RAMP[1] - RAMP[0]) * min(1.0, max(0.0, fraction))


def _video_ids(count: int, rng: np.random.Generator) -> list[str]:
    """Numeric, ``..._<digit>``, ``.._._..`` with a dash, then random YouTube-like ids."""

    def random_id(length: int) -> str:
        return "".join(ID_ALPHABET[i] for i in rng.integers(len(ID_ALPHABET), size=length))

    fixed = [
        str(int(rng.integers(100000, 400000))),
        random_id(9).replace("_", "x") + f"_{int(rng.integers(10))}",
        "-" + random_id(5).replace("_", "y") + "_" + random_id(2) + "_" + random_id(2),
    ]
    ids: list[str] = []
    for candidate in fixed + [random_id(11) for _ in range(count * 2)]:
        if candidate not in ids and not candidate.startswith("."):
            ids.append(candidate)
    return ids[:count]


def _scores(labels: list[str], annotators: int, rng: np.random.Generator) -> np.ndarray:
    """(annotators, C) Likert answers: a present emotion gets > 0 from at least one annotator."""
    answers = np.zeros((annotators, len(CLASSES)), dtype=np.int64)
    for label in labels:
        column = CLASSES.index(label)
        answers[:, column] = rng.integers(0, 4, size=annotators)
        answers[int(rng.integers(annotators)), column] = int(rng.integers(1, 4))
    return answers


def _sentence(labels: list[str], rng: np.random.Generator) -> str:
    words = [str(w) for w in rng.choice(FILLER_WORDS, size=int(rng.integers(3, 7)))]
    for label in labels or ["okay"]:
        cue = str(rng.choice(EMOTION_WORDS[label])) if label in EMOTION_WORDS else label
        words.insert(int(rng.integers(len(words) + 1)), cue)
    sentence = " ".join(words)
    return sentence[0].upper() + sentence[1:] + "."


def _draw_labels(rng: np.random.Generator) -> list[str]:
    count = int(rng.choice([0, 1, 1, 1, 2]))
    picked = rng.choice(len(CLASSES), size=count, replace=False)
    return [CLASSES[i] for i in sorted(int(i) for i in picked)]


def _write_video(
    path: Path,
    segments: list[SyntheticSegment],
    duration: float,
    fps: float,
    frame_size: tuple[int, int],
    face: np.ndarray,
    rng: np.random.Generator,
    tree: SyntheticMoseiTree,
) -> None:
    height, width = frame_size
    face_h = round(height * 0.5)
    face_w = round(face_h * face.shape[1] / face.shape[0])
    face = cv2.resize(face, (face_w, face_h), interpolation=cv2.INTER_AREA).astype(np.float32)
    background = rng.integers(20, 90, size=(height, width, 3), dtype=np.uint8)
    noise_pool = rng.integers(0, 40, size=(6, height, width, 3), dtype=np.uint8)
    looks = []
    for segment in segments:
        first = segment.labels[0] if segment.labels else ""
        tint = np.array(EMOTION_TINTS.get(first, (1.0, 1.0, 1.0)), np.float32)
        top = int(rng.integers(5, height - face_h - 5))
        left = int(rng.integers(5, width - face_w - 5))
        looks.append((segment, tint, top, left))
    # A time maps to the nearest frame, up to half a frame away: show the face that long around
    # the segment so every frame sampled from it has the face.
    slack = 0.5 / fps
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write an mp4v video to {path}")
    try:
        for index in range(math.ceil(duration * fps)):
            time = index / fps
            frame = background + noise_pool[index % len(noise_pool)]
            for segment, tint, top, left in looks:
                if segment.start - slack <= time < segment.end + slack:
                    gain = tint * tree.face_gain(segment, time)
                    image = np.clip(face * gain, 0, 255).astype(np.uint8)
                    frame[top : top + face_h, left : left + face_w] = image
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()


def _write_audio(
    path: Path, segments: list[SyntheticSegment], duration: float, rng: np.random.Generator
) -> None:
    samples = round(duration * SAMPLE_RATE)
    time = np.arange(samples) / SAMPLE_RATE
    audio = (rng.standard_normal(samples) * 0.01).astype(np.float32)
    for segment in segments:
        first, last = round(segment.start * SAMPLE_RATE), round(segment.end * SAMPLE_RATE)
        if segment.silent:
            audio[first:last] = 0.0
            continue
        local = time[first:last] - segment.start
        for label in segment.labels:
            tone = EMOTION_TONES[label] * rng.uniform(0.97, 1.03)
            amplitude = 0.3 / len(segment.labels)
            audio[first:last] += (amplitude * np.sin(2 * np.pi * tone * local)).astype(np.float32)
    soundfile.write(str(path), np.clip(audio, -1, 1), SAMPLE_RATE, subtype="PCM_16")


def _write_csd(path: Path, tree: SyntheticMoseiTree, rng: np.random.Generator) -> None:
    import h5py

    index = {name: CSD_FEATURES.index(name) for name in CLASSES}
    with h5py.File(path, "w") as handle:
        sequence = handle.create_group("All Labels")
        data = sequence.create_group("data")
        for video_id in tree.video_ids:
            rows = [s for s in tree.segments if s.video_id == video_id and s.scores is not None]
            features = np.zeros((len(rows), len(CSD_FEATURES)), dtype=np.float32)
            intervals = np.zeros((len(rows), 2), dtype=np.float64)
            for row, segment in enumerate(rows):
                features[row, 0] = rng.uniform(-3, 3)  # sentiment, unused
                for name, score in zip(CLASSES, segment.scores or (), strict=True):
                    features[row, index[name]] = score
                # The SDK's intervals need not repeat the transcript's times to the last digit.
                intervals[row] = (segment.start, segment.end) + rng.uniform(-2e-3, 2e-3, size=2)
            group = data.create_group(video_id)
            group.create_dataset("features", data=features)
            group.create_dataset("intervals", data=intervals)
        metadata = sequence.create_group("metadata")
        metadata.attrs["root name"] = "All Labels"
        metadata.attrs["dimension names"] = ",".join(CSD_FEATURES)


def _write_csv_batches(
    folder: Path, rows: list[dict[str, str]], rng: np.random.Generator, batches: int = 2
) -> None:
    columns = [
        "HITId", "WorkerId", CSV_STATUS_COLUMN, CSV_VIDEO_COLUMN, CSV_CLIP_COLUMN,
        *CSV_ANSWER_COLUMNS, "Answer.sentiment",
    ]  # fmt: skip
    order = rng.permutation(len(rows))
    for batch in range(batches):
        path = folder / f"Batch_{batch + 1}_results.csv"
        with open(path, "w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            for index in order[batch::batches]:
                writer.writerow(rows[int(index)])


def make_mosei_tree(
    root: str | Path,
    *,
    videos: int = 5,
    segments_per_video: int = 4,
    seed: int = 0,
    duration: tuple[float, float] = (1.0, 2.2),
    fps: float = 10.0,
    frame_size: tuple[int, int] = (180, 240),
    annotators: int = 3,
    inject_bad: bool = False,
) -> SyntheticMoseiTree:
    """Write a miniature CMU-MOSEI raw release under ``root``.

    Args:
        root: the folder playing ``CMU_MOSEI``.
        videos: number of videos.
        segments_per_video: well-formed segments per video (bad ones come in addition).
        seed: random seed (the same seed writes the same tree).
        duration: range of segment durations in seconds.
        fps: video frame rate.
        frame_size: (height, width) of the frames.
        annotators: accepted crowd-worker answers per segment.
        inject_bad: add one of each cleaning case (needs at least 4 videos): in the first video
            invalid times, times outside the media, empty text, non-UTF-8 text, a segment without
            labels, labels of a clip without a transcript line and an unparseable line; in the
            second silent audio and a segment without a face; the last video is corrupt.

    Returns:
        A description of every segment, with the failure reason expected for the bad ones.
    """
    if inject_bad and videos < 4:
        raise ValueError("inject_bad needs at least 4 videos")
    if videos < 1 or segments_per_video < 1:
        raise ValueError("need at least one video and one segment per video")
    root = Path(root)
    rng = np.random.default_rng(seed)
    face = astronaut_face()
    ids = _video_ids(videos, rng)
    tree = SyntheticMoseiTree(root=root, video_ids=ids, segments=[], fps=fps)
    csv_rows: list[dict[str, str]] = []
    top = root / "Raw"
    for sub in (VIDEO_SUBDIR, AUDIO_SUBDIR, TRANSCRIPT_SUBDIR, LABEL_SUBDIR):
        (top / sub).mkdir(parents=True, exist_ok=True)

    for number, video_id in enumerate(ids):
        # Kinds of segment in time order; "normal" ones are well formed.
        kinds = ["normal"] * segments_per_video
        if inject_bad and number == 0:
            kinds += ["empty text", "not utf-8", "unlabelled"]
        if inject_bad and number == 1:
            kinds += ["silent", "no face"]
        kinds = [kinds[int(i)] for i in rng.permutation(len(kinds))]
        clips = sorted(int(c) for c in rng.choice(3 * len(kinds) + 12, len(kinds), replace=False))
        segments: list[SyntheticSegment] = []
        any_normal = False
        time = round(float(rng.uniform(0.3, 0.8)), 3)
        for kind, clip in zip(kinds, clips, strict=True):
            length = float(rng.uniform(*duration))
            labels = _draw_labels(rng)
            if number == 0 and kind == "normal" and not any_normal:
                labels = []  # every tree has a segment with no emotion, kept as an all-zero target
                any_normal = True
            answers = _scores(labels, annotators, rng)
            segment = SyntheticSegment(
                id=segment_id(video_id, clip),
                video_id=video_id,
                clip=clip,
                start=time,
                end=round(time + length, 3),
                text=_sentence(labels, rng),
                scores=tuple(float(v) for v in answers.mean(axis=0)),
            )
            if kind == "empty text":
                segment.text, segment.expected_reason = "", REASON_EMPTY_TEXT
            elif kind == "not utf-8":
                segment.text, segment.expected_reason = None, REASON_NOT_UTF8
            elif kind == "unlabelled":
                segment.scores, segment.expected_reason = None, REASON_NOT_IN_LABELS
            elif kind == "silent":
                segment.silent, segment.expected_reason = True, REASON_SILENT_AUDIO
            elif kind == "no face":
                segment.face, segment.expected_reason = False, REASON_NO_FACE
            segments.append(segment)
            if segment.scores is not None:
                csv_rows.extend(_csv_rows(segment, answers, rng))
            time = round(segment.end + float(rng.uniform(0.2, 0.6)), 3)
        length = round(time + 0.3, 3)
        tree.durations[video_id] = length
        if number == 1 and any(s.labels != list(CLASSES) for s in segments):
            # A rejected answer that would add an emotion: both label sources must ignore it.
            target = next(s for s in segments if s.labels != list(CLASSES))
            absent = next(c for c in CLASSES if c not in target.labels)
            bogus = np.zeros((1, len(CLASSES)), dtype=np.int64)
            bogus[0, CLASSES.index(absent)] = 3
            csv_rows.extend(_csv_rows(target, bogus, rng, status=CSV_REJECTED))
            tree.rejected_answers += 1
        extra: list[SyntheticSegment] = []
        if inject_bad and number == 0:
            extra = _bad_timing_segments(video_id, clips[-1], length, annotators, rng, csv_rows)
        corrupt = inject_bad and number == videos - 1
        if corrupt:
            for segment in segments:
                segment.expected_reason = segment.expected_reason or REASON_CORRUPT_VIDEO
        _write_files(top, video_id, segments, extra, length, fps, frame_size, face, rng, tree)
        if corrupt:
            (top / VIDEO_SUBDIR / f"{video_id}.mp4").write_bytes(
                b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + rng.bytes(4096)
            )
        if inject_bad and number == 0:
            with open(top / TRANSCRIPT_SUBDIR / f"{video_id}.txt", "ab") as handle:
                handle.write(b"this line is not a segment\n")
            tree.unparseable_lines += 1
        tree.segments.extend(segments + extra)
    _write_csv_batches(top / LABEL_SUBDIR, csv_rows, rng)
    _write_csd(tree.csd, tree, rng)
    tree.segments.sort(key=lambda s: s.id)
    return tree


def _csv_rows(
    segment: SyntheticSegment,
    answers: np.ndarray,
    rng: np.random.Generator,
    status: str = "Approved",
) -> list[dict[str, str]]:
    rows = []
    for answer in answers:
        row = {
            "HITId": f"H{int(rng.integers(10**9))}",
            "WorkerId": f"W{int(rng.integers(10**6))}",
            CSV_STATUS_COLUMN: status,
            CSV_VIDEO_COLUMN: segment.video_id,
            CSV_CLIP_COLUMN: str(segment.clip),
            "Answer.sentiment": str(int(rng.integers(-3, 4))),
        }
        row.update(
            {column: str(int(v)) for column, v in zip(CSV_ANSWER_COLUMNS, answer, strict=True)}
        )
        rows.append(row)
    return rows


def _bad_timing_segments(
    video_id: str,
    last_clip: int,
    length: float,
    annotators: int,
    rng: np.random.Generator,
    csv_rows: list[dict[str, str]],
) -> list[SyntheticSegment]:
    """Labelled segments with reversed times, times beyond the media, or no transcript line."""
    specs = [
        (REASON_INVALID_TIMES, round(length * 0.5 + 1.2, 3), round(length * 0.5, 3), True),
        (REASON_OUTSIDE_MEDIA, round(length + 3.0, 3), round(length + 4.5, 3), True),
        (REASON_NOT_IN_TRANSCRIPTION, round(length + 10.0, 3), round(length + 11.0, 3), False),
    ]
    segments = []
    for offset, (reason, start, end, in_transcript) in enumerate(specs, start=1):
        labels = _draw_labels(rng) or ["happy"]
        answers = _scores(labels, annotators, rng)
        segment = SyntheticSegment(
            id=segment_id(video_id, last_clip + offset),
            video_id=video_id,
            clip=last_clip + offset,
            start=start,
            end=end,
            text=_sentence(labels, rng),
            scores=tuple(float(v) for v in answers.mean(axis=0)),
            in_transcript=in_transcript,
            face=False,
            expected_reason=reason,
        )
        segments.append(segment)
        csv_rows.extend(_csv_rows(segment, answers, rng))
    return segments


def _write_files(
    top: Path,
    video_id: str,
    segments: list[SyntheticSegment],
    extra: list[SyntheticSegment],
    length: float,
    fps: float,
    frame_size: tuple[int, int],
    face: np.ndarray,
    rng: np.random.Generator,
    tree: SyntheticMoseiTree,
) -> None:
    shown = [s for s in segments if s.face]
    _write_video(
        top / VIDEO_SUBDIR / f"{video_id}.mp4", shown, length, fps, frame_size, face, rng, tree
    )
    _write_audio(top / AUDIO_SUBDIR / f"{video_id}.wav", segments, length, rng)
    lines = []
    for segment in sorted(segments + extra, key=lambda s: s.clip):
        if not segment.in_transcript:
            continue
        text = b"caf\xe9 \xff\xfe broken" if segment.text is None else segment.text.encode()
        head = f"{video_id}___{segment.clip}___{segment.start:.3f}___{segment.end:.3f}___"
        lines.append(head.encode() + text + b"\n")
    (top / TRANSCRIPT_SUBDIR / f"{video_id}.txt").write_bytes(b"".join(lines))
