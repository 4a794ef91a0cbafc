"""CMU-MOSEI: parse the official raw release, clean it and build the processed dataset.

Official raw layout (``CMU_MOSEI/Raw/``, MESM.md section 2), one source unit per video:

- ``Videos/Full/Combined/<video_id>.mp4``: the full video;
- ``Audio/Full/WAV_16000/<video_id>.wav``: its audio at 16 kHz (channels are averaged);
- ``Transcript/Segmented/Combined/<video_id>.txt``: one segment per line,
  ``<video_id>___<clip>___<start>___<end>___<text>`` (seconds; the text keeps any later ``___``);
- labels, from either source (both give the same labels, see the tests):

  - ``Labels/*.csv``: crowd-worker batches, one row per answer, columns ``Input.VIDEO_ID``,
    ``Input.CLIP`` and ``Answer.anger`` ... ``Answer.surprise`` (Likert 0-3). A segment's score is
    the mean over its answers; answers whose ``AssignmentStatus`` is ``Rejected`` are ignored.
  - ``CMU_MOSEI_Labels.csd`` (CMU Multimodal SDK, HDF5; looked for in ``CMU_MOSEI/`` and
    ``Raw/Labels/``, or given): per video ``features`` (n, 7) = sentiment, happy, sad, anger,
    surprise, disgust, fear (means over annotators) and ``intervals`` (n, 2) in seconds. It names
    no clip: each row is matched to the transcript segment of the same video with the same start
    and end (within :data:`INTERVAL_TOLERANCE`).

  ``auto`` uses the CSV batches when ``Raw/Labels/*.csv`` exist, else the ``.csd`` file.

Segment id: ``<video_id>_<clip>``; video ids may contain ``_`` and ``-`` or be numeric, so an id is
split on its last ``_`` (:func:`split_segment_id`).

Labels: :data:`CLASSES` in that order, an emotion present when its score is > 0 (with the CSV
batches: when any accepted answer is > 0); multi-label, a segment may have none (an all-zero
target, kept).

Segments: cut at the transcript's start and end; whole frames (no side split) sampled at ``fps``
through MTCNN; audio mel chunks as for IEMOCAP; the transcript's text. Each video is decoded once,
streaming (:mod:`mesm.data.build`).

Cleaning. A segment is written as a failed record, with one of these reasons, when:

1. ``in transcription but not in labels``: no label row names it;
2. ``in labels but not in transcription``: a label row names a clip the transcript lacks (CSV only:
   a ``.csd`` row names no clip, so an unmatched row is counted among the raw entries instead);
3. ``invalid times``: start < 0, end <= start, or a time that is not a finite number;
4. ``times outside the media``: the segment ends after the video (by more than one frame) or the
   audio (by more than 10 ms);
5. ``text is not UTF-8`` or ``empty text``;
6. ``missing video``, ``corrupt video``, ``missing audio``, ``corrupt audio``;
7. ``silent audio``: the segment's audio RMS is below :data:`MIN_AUDIO_RMS` (-80 dBFS: digital
   silence, a dropped audio track, not a quiet speaker);
8. ``no face detected``: MTCNN finds no face in any frame sampled from the segment (the video
   shows something else than the speaker there: slides, a cut-away, a black screen).

Raw entries that cannot become a record (unparseable transcript lines or label rows, duplicate
clips, label intervals matching no segment, rejected answers) are counted in the summary's
``raw_problems``. Summary counts per reason are the cleaning report.

Splits: the lists of a split folder (default ``datasets_reorg/mosei``, the MESM paper's 20477
segments); kept segments in no list are written with split ``unassigned`` and counted, listed
segments that the cleaning dropped are counted by reason. Or a new split (``resplit_seed``):
70/10/20 of the *videos*, so no video spans two splits, drawn before ``limit`` applies.
"""

from __future__ import annotations

import csv
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mesm.data.build import (
    REASON_EMPTY_TEXT,
    REASON_INVALID_TIMES,
    REASON_NOT_IN_LABELS,
    REASON_NOT_IN_TRANSCRIPTION,
    REASON_NOT_UTF8,
    UNASSIGNED,
    BuildOptions,
    BuildSummary,
    SourceUnit,
    UtteranceSpec,
    build,
    limit_units,
    read_split_lists,
)
from mesm.data.format import FormatInfo
from mesm.media.audio import MelConfig

CLASSES: tuple[str, ...] = ("anger", "disgust", "fear", "happy", "sad", "surprise")
DEFAULT_SPLIT_DIR = Path(__file__).resolve().parents[2] / "datasets_reorg" / "mosei"

VIDEO_SUBDIR = Path("Videos", "Full", "Combined")
AUDIO_SUBDIR = Path("Audio", "Full", "WAV_16000")
TRANSCRIPT_SUBDIR = Path("Transcript", "Segmented", "Combined")
LABEL_SUBDIR = Path("Labels")
CSD_FILE = "CMU_MOSEI_Labels.csd"

CSV_VIDEO_COLUMN = "Input.VIDEO_ID"
CSV_CLIP_COLUMN = "Input.CLIP"
CSV_STATUS_COLUMN = "AssignmentStatus"
CSV_REJECTED = "Rejected"
# Answer column of each class, in CLASSES order.
CSV_ANSWER_COLUMNS: tuple[str, ...] = (
    "Answer.anger",
    "Answer.disgust",
    "Answer.fear",
    "Answer.happiness",
    "Answer.sadness",
    "Answer.surprise",
)
# Columns of the SDK's label features; CSD_CLASS_COLUMNS picks CLASSES from them.
CSD_FEATURES: tuple[str, ...] = (
    "sentiment",
    "happy",
    "sad",
    "anger",
    "surprise",
    "disgust",
    "fear",
)
CSD_CLASS_COLUMNS: tuple[int, ...] = tuple(CSD_FEATURES.index(name) for name in CLASSES)

LABEL_SOURCES: tuple[str, ...] = ("auto", "csv", "csd")
MIN_AUDIO_RMS = 1e-4
INTERVAL_TOLERANCE = 0.05

PROBLEM_TRANSCRIPT_LINE = "unparseable transcript lines"
PROBLEM_OTHER_VIDEO = "transcript lines naming another video"
PROBLEM_DUPLICATE_CLIP = "duplicate transcript clips (first kept)"
PROBLEM_LABEL_ROW = "unparseable label rows"
PROBLEM_LABEL_FILE = "label CSV files without the emotion columns"
PROBLEM_REJECTED = "rejected crowd-worker answers (ignored)"
PROBLEM_UNMATCHED_INTERVAL = "label intervals matching no transcript segment"

LabelScores = tuple[float, ...]
SegmentKey = tuple[str, int]


def segment_id(video_id: str, clip: int) -> str:
    """``<video_id>_<clip>``, the sample id of the split lists."""
    return f"{video_id}_{clip}"


def split_segment_id(sample_id: str) -> SegmentKey:
    """``(video_id, clip)`` of a sample id, split on the last ``_``.

    Raises:
        ValueError: no ``_``, or the part after it is not a clip number.
    """
    video_id, separator, clip = sample_id.rpartition("_")
    if not separator or not video_id or not clip.isdigit():
        raise ValueError(f"{sample_id!r} is not a MOSEI segment id <video_id>_<clip>")
    return video_id, int(clip)


def binarise(scores: Iterable[float]) -> list[str]:
    """Class names whose score is > 0, in :data:`CLASSES` order."""
    return [name for name, score in zip(CLASSES, scores, strict=True) if score > 0]


@dataclass(frozen=True)
class TranscriptSegment:
    """One transcript line; ``text`` is None when its bytes are not UTF-8."""

    video_id: str
    clip: int
    start: float
    end: float
    text: str | None


def parse_transcript(
    path: str | Path, video_id: str | None = None
) -> tuple[dict[int, TranscriptSegment], Counter[str]]:
    """Segments of one transcript file, by clip, and counts of lines that name none.

    Args:
        path: ``<video_id>.txt``.
        video_id: the video the file belongs to (default: the file's stem). Lines are split after
            ``<video_id>___`` so an id that itself contains ``___`` still parses.

    Returns:
        clip -> segment, and problem -> count (unparseable lines, lines naming another video,
        duplicate clips, whose first line is kept).
    """
    path = Path(path)
    video_id = path.stem if video_id is None else video_id
    segments: dict[int, TranscriptSegment] = {}
    problems: Counter[str] = Counter()
    prefix = f"{video_id}___"
    for raw_line in path.read_bytes().splitlines():
        try:
            line, valid = raw_line.decode("utf-8"), True
        except UnicodeDecodeError:
            line, valid = raw_line.decode("utf-8", errors="replace"), False
        line = line.strip("\r\n\ufeff")
        if not line.strip():
            continue
        if not line.startswith(prefix):
            parts = line.split("___", 4)
            other = len(parts) == 5 and parts[0] != video_id
            problems[PROBLEM_OTHER_VIDEO if other else PROBLEM_TRANSCRIPT_LINE] += 1
            continue
        parts = line[len(prefix) :].split("___", 3)
        try:
            if len(parts) != 4 or not parts[0].strip().isdigit():
                raise ValueError(line)
            clip, start, end = int(parts[0]), float(parts[1]), float(parts[2])
        except ValueError:
            problems[PROBLEM_TRANSCRIPT_LINE] += 1
            continue
        if clip in segments:
            problems[PROBLEM_DUPLICATE_CLIP] += 1
            continue
        text = parts[3].strip() if valid else None
        segments[clip] = TranscriptSegment(video_id, clip, start, end, text)
    return segments, problems


def read_csv_labels(
    paths: Iterable[str | Path],
) -> tuple[dict[SegmentKey, LabelScores], Counter[str]]:
    """Mean emotion scores per segment over the accepted answers of crowd-worker CSV batches.

    Returns:
        (video_id, clip) -> scores in :data:`CLASSES` order, and problem -> count (rejected
        answers, unparseable rows, files lacking the emotion columns).
    """
    sums: dict[SegmentKey, np.ndarray] = {}
    answers: Counter[SegmentKey] = Counter()
    problems: Counter[str] = Counter()
    required = (CSV_VIDEO_COLUMN, CSV_CLIP_COLUMN, *CSV_ANSWER_COLUMNS)
    for path in paths:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            if any(column not in (reader.fieldnames or ()) for column in required):
                problems[PROBLEM_LABEL_FILE] += 1
                continue
            for row in reader:
                if (row.get(CSV_STATUS_COLUMN) or "").strip() == CSV_REJECTED:
                    problems[PROBLEM_REJECTED] += 1
                    continue
                try:
                    video_id = (row[CSV_VIDEO_COLUMN] or "").strip()
                    clip_text = (row[CSV_CLIP_COLUMN] or "").strip()
                    if not video_id or not clip_text.isdigit():
                        raise ValueError(row)
                    scores = np.array([float(row[c] or "nan") for c in CSV_ANSWER_COLUMNS])
                    if not np.isfinite(scores).all():
                        raise ValueError(row)
                except (ValueError, TypeError):
                    problems[PROBLEM_LABEL_ROW] += 1
                    continue
                key = (video_id, int(clip_text))
                sums[key] = sums.get(key, np.zeros(len(CLASSES))) + scores
                answers[key] += 1
    means = {key: tuple(float(v) for v in total / answers[key]) for key, total in sums.items()}
    return means, problems


def _csd_data_group(handle: Any, path: Path) -> Any:
    """The ``data`` group of a computational sequence (under its one top-level group)."""
    import h5py

    for name in handle:
        group = handle[name]
        if isinstance(group, h5py.Group) and isinstance(group.get("data"), h5py.Group):
            return group["data"]
    raise ValueError(
        f"{path} is not a CMU Multimodal SDK computational sequence: no <sequence>/data group"
    )


def read_csd_labels(
    path: str | Path,
    segments: Mapping[str, Mapping[int, TranscriptSegment]],
    tolerance: float = INTERVAL_TOLERANCE,
) -> tuple[dict[SegmentKey, LabelScores], Counter[str]]:
    """Emotion scores of ``CMU_MOSEI_Labels.csd``, matched to transcript segments by interval.

    Args:
        path: the HDF5 file (``<sequence>/data/<video_id>/{features,intervals}``).
        segments: video id -> clip -> transcript segment.
        tolerance: largest start or end difference, in seconds, for a match.

    Returns:
        (video_id, clip) -> scores in :data:`CLASSES` order, and problem -> count (rows matching
        no segment, rows of bad shape or with scores that are not finite).

    Raises:
        ValueError: the file is not a computational sequence.
    """
    import h5py

    path = Path(path)
    labels: dict[SegmentKey, LabelScores] = {}
    problems: Counter[str] = Counter()
    with h5py.File(path, "r") as handle:
        data = _csd_data_group(handle, path)
        for video_id in sorted(data):
            features = np.asarray(data[video_id]["features"], dtype=np.float64)
            intervals = np.asarray(data[video_id]["intervals"], dtype=np.float64)
            if (
                features.ndim != 2
                or features.shape[1] != len(CSD_FEATURES)
                or intervals.shape != (len(features), 2)
            ):
                problems[PROBLEM_LABEL_ROW] += max(len(features), len(intervals))
                continue
            candidates = sorted(segments.get(video_id, {}).values(), key=lambda s: s.clip)
            # (segments, 2) start and end; a matched segment's row becomes inf so no other row
            # takes it (rows of equal intervals go to clips in order).
            times = np.array([[s.start, s.end] for s in candidates], dtype=np.float64)
            times = times.reshape(len(candidates), 2)
            for row, interval in zip(features, intervals, strict=True):
                scores = row[list(CSD_CLASS_COLUMNS)]
                if not np.isfinite(scores).all():
                    problems[PROBLEM_LABEL_ROW] += 1
                    continue
                distance = np.abs(times - interval).max(axis=1, initial=0.0)  # (segments,)
                best = int(np.argmin(distance)) if len(distance) else -1
                if best < 0 or not distance[best] <= tolerance:
                    problems[PROBLEM_UNMATCHED_INTERVAL] += 1
                    continue
                times[best] = math.inf
                labels[(video_id, candidates[best].clip)] = tuple(float(v) for v in scores)
    return labels, problems


@dataclass
class MoseiRelease:
    """Paths of a raw CMU-MOSEI release."""

    raw: Path
    videos: Path
    audio: Path
    transcripts: Path
    labels: Path
    csd: Path | None

    def video_path(self, video_id: str) -> Path:
        return self.videos / f"{video_id}.mp4"

    def audio_path(self, video_id: str) -> Path:
        return self.audio / f"{video_id}.wav"


def find_release(raw: str | Path, csd_path: str | Path | None = None) -> MoseiRelease:
    """Locate the folders of a release given ``CMU_MOSEI`` (the folder holding ``Raw/``) or ``Raw``.

    Args:
        raw: the release folder.
        csd_path: the SDK label file; None looks for ``CMU_MOSEI_Labels.csd`` in the release
            folder and in ``Raw/Labels``.

    Raises:
        FileNotFoundError: no segmented transcript folder, or a given ``csd_path`` that is missing.
    """
    raw = Path(raw)
    top = raw / "Raw" if (raw / "Raw").is_dir() else raw
    transcripts = top / TRANSCRIPT_SUBDIR
    if not transcripts.is_dir():
        raise FileNotFoundError(
            f"no Raw/{TRANSCRIPT_SUBDIR.as_posix()} folder under {raw}: pass the CMU_MOSEI folder "
            "(the one holding Raw/)"
        )
    candidates = [raw / CSD_FILE, top / LABEL_SUBDIR / CSD_FILE]
    if csd_path is not None:
        candidates = [Path(csd_path)]
        if not candidates[0].is_file():
            raise FileNotFoundError(f"label file {csd_path} not found")
    found = [path for path in candidates if path.is_file()]
    csd = found[0] if found else None
    return MoseiRelease(
        raw=raw,
        videos=top / VIDEO_SUBDIR,
        audio=top / AUDIO_SUBDIR,
        transcripts=transcripts,
        labels=top / LABEL_SUBDIR,
        csd=csd,
    )


@dataclass
class MoseiSegments:
    """What parsing a release gave: one unit per video, the labels used and raw-entry counts."""

    units: list[SourceUnit]
    label_source: str
    scores: dict[SegmentKey, LabelScores]
    raw_problems: Counter[str] = field(default_factory=Counter)

    def specs(self) -> list[UtteranceSpec]:
        """Every segment spec, in unit order."""
        return [spec for unit in self.units for spec in unit.utterances]


def _check_segment(spec: UtteranceSpec, segment: TranscriptSegment, transcript: Path) -> None:
    """Set ``spec.reason`` for a segment the transcript alone shows unusable, else its text."""
    times_ok = math.isfinite(segment.start) and math.isfinite(segment.end)
    if not times_ok or segment.start < 0 or segment.end <= segment.start:
        spec.reason = REASON_INVALID_TIMES
        spec.error = (
            f"segment {spec.id} of {transcript} has start {segment.start} and end {segment.end}"
        )
    elif segment.text is None:
        spec.reason = REASON_NOT_UTF8
        spec.error = f"the line of {spec.id} in {transcript} is not valid UTF-8"
    elif not segment.text:
        spec.reason = REASON_EMPTY_TEXT
        spec.error = f"the line of {spec.id} in {transcript} has no text"
    else:
        spec.text = segment.text


def read_release(
    raw: str | Path, *, label_source: str = "auto", csd_path: str | Path | None = None
) -> MoseiSegments:
    """Parse transcripts and labels into one source unit per video, specs sorted by clip.

    Args:
        raw: the ``CMU_MOSEI`` folder.
        label_source: ``csv`` (``Raw/Labels/*.csv``), ``csd`` (``CMU_MOSEI_Labels.csd``) or
            ``auto`` (CSV batches when present, else the ``.csd``).
        csd_path: the ``.csd`` file when not in its usual places.

    Raises:
        FileNotFoundError: no transcripts, or no file of the chosen label source.
        ValueError: an unknown label source.
    """
    if label_source not in LABEL_SOURCES:
        raise ValueError(f"label source must be one of {LABEL_SOURCES}, got {label_source!r}")
    release = find_release(raw, csd_path)
    problems: Counter[str] = Counter()
    segments: dict[str, dict[int, TranscriptSegment]] = {}
    transcript_paths: dict[str, Path] = {}
    for path in sorted(release.transcripts.glob("*.txt")):
        if path.name.startswith("."):  # macOS "._" resource files
            continue
        segments[path.stem], file_problems = parse_transcript(path)
        transcript_paths[path.stem] = path
        problems.update(file_problems)

    csv_files = sorted(release.labels.glob("*.csv")) if release.labels.is_dir() else []
    source = label_source
    if source == "auto":
        source = "csv" if csv_files else "csd"
    if source == "csv":
        if not csv_files:
            raise FileNotFoundError(f"no crowd-worker label batches {release.labels}/*.csv")
        scores, label_problems = read_csv_labels(csv_files)
    else:
        if release.csd is None:
            raise FileNotFoundError(
                f"no labels: neither {release.labels}/*.csv nor {CSD_FILE} in {release.raw} or "
                f"{release.labels} (pass the .csd file's path)"
            )
        scores, label_problems = read_csd_labels(release.csd, segments)
    problems.update(label_problems)

    clips: dict[str, set[int]] = defaultdict(set)
    for video_id, per_clip in segments.items():
        clips[video_id].update(per_clip)
    for video_id, clip in scores:
        clips[video_id].add(clip)
    units = []
    for video_id in sorted(clips):
        transcript = transcript_paths.get(video_id, release.transcripts / f"{video_id}.txt")
        specs = []
        for clip in sorted(clips[video_id]):
            segment = segments.get(video_id, {}).get(clip)
            label = scores.get((video_id, clip))
            spec = UtteranceSpec(
                id=segment_id(video_id, clip),
                start=segment.start if segment else 0.0,
                end=segment.end if segment else 0.0,
                labels=binarise(label) if label is not None else [],
                text="",
                channel=None,
            )
            if segment is None:
                spec.reason = REASON_NOT_IN_TRANSCRIPTION
                spec.error = f"{spec.id} has labels but no line in {transcript}"
            elif label is None:
                spec.reason = REASON_NOT_IN_LABELS
                spec.error = f"{spec.id} is in {transcript} but no label ({source}) names it"
            else:
                _check_segment(spec, segment, transcript)
            specs.append(spec)
        units.append(
            SourceUnit(video_id, release.video_path(video_id), release.audio_path(video_id), specs)
        )
    return MoseiSegments(units=units, label_source=source, scores=scores, raw_problems=problems)


def video_split(
    video_ids: Iterable[str], seed: int, fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)
) -> dict[str, str]:
    """A deterministic split of videos, so no video spans two splits.

    Args:
        video_ids: the videos (order and repeats do not matter).
        seed: random seed; the same seed and videos give the same split.
        fractions: train, valid, test shares; with three videos or more, valid and test get at
            least one each (a miniature tree still has every split).

    Returns:
        video id -> ``train`` | ``valid`` | ``test``.
    """
    ids = sorted(set(video_ids))
    n_valid, n_test = round(fractions[1] * len(ids)), round(fractions[2] * len(ids))
    if len(ids) >= 3:
        n_valid, n_test = max(1, n_valid), max(1, n_test)
    n_train = len(ids) - n_valid - n_test
    order = np.random.default_rng(seed).permutation(len(ids))
    return {
        ids[index]: "train" if rank < n_train else "valid" if rank < n_train + n_valid else "test"
        for rank, index in enumerate(order)
    }


def build_mosei(
    raw: str | Path,
    out: str | Path,
    *,
    workers: int = 1,
    fps: float = 2.0,
    split_dir: str | Path | None = DEFAULT_SPLIT_DIR,
    resplit_seed: int | None = None,
    limit: int | None = None,
    log_mel: bool = True,
    device: str | None = None,
    progress: bool = True,
    label_source: str = "auto",
    csd_path: str | Path | None = None,
    num_shards: int = 1,
    shard_index: int = 0,
) -> BuildSummary:
    """Reorganise a CMU-MOSEI raw release into the processed format.

    Args:
        raw: the ``CMU_MOSEI`` folder (holding ``Raw/``).
        out: the processed folder (an existing one is resumed; shards may share it).
        workers: processes (each decodes whole videos).
        fps: face frames sampled per second.
        split_dir: folder of ``train.txt``/``valid.txt``/``test.txt``; unused with a resplit.
        resplit_seed: draw a new 70/10/20 split of the videos with this seed instead.
        limit: build only the first ``limit`` segments (sorted by video and clip), for trials.
        log_mel: log-compress the mel-spectrogram.
        device: MTCNN device; None picks CUDA when available.
        progress: show a progress bar.
        label_source: ``auto``, ``csv`` or ``csd`` (see :func:`read_release`).
        csd_path: the ``.csd`` label file when not in its usual places.
        num_shards: build only the videos of shard ``shard_index`` out of ``num_shards``; merge
            with :func:`mesm.data.build.merge_shards` once all have finished.
        shard_index: this run's shard.

    Returns:
        The build summary (of this shard when sharded); ``exit_code(strict)`` is the exit status.
    """
    parsed = read_release(raw, label_source=label_source, csd_path=csd_path)
    units = parsed.units
    all_specs = parsed.specs()
    missing = 0
    if resplit_seed is not None:
        by_video = video_split((unit.name for unit in units), resplit_seed)
        for unit in units:
            for spec in unit.utterances:
                spec.split = by_video[unit.name]
    else:
        assignment = read_split_lists(split_dir) if split_dir is not None else {}
        missing = len(assignment.keys() - {spec.id for spec in all_specs})
        for spec in all_specs:
            spec.split = assignment.get(spec.id, UNASSIGNED)
    units = limit_units(units, limit)
    mel = MelConfig(log=log_mel)
    info = FormatInfo(dataset="mosei", classes=list(CLASSES), fps=fps, mel=mel.to_dict())
    options = BuildOptions(
        dataset="mosei",
        fps=fps,
        mel=mel,
        device=device,
        min_audio_rms=MIN_AUDIO_RMS,
        require_face=True,
    )
    return build(
        units,
        out,
        info,
        options,
        workers=workers,
        progress=progress,
        missing_from_raw=missing,
        raw_problems=parsed.raw_problems,
        num_shards=num_shards,
        shard_index=shard_index,
    )
