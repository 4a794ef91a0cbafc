"""Dataset-agnostic build engine: raw media of "source units" -> the processed format.

A source unit is one video with its audio and the utterances cut from it (an IEMOCAP dialog, a
MOSEI video). Dataset modules (:mod:`mesm.data.iemocap`) turn a raw release into units; this
module processes them: a worker pool over units, each unit decoding its video once (streaming),
cropping faces, computing mel chunks and writing each utterance atomically. Utterances already
built are skipped, so a re-run resumes where an interrupted one stopped.

Sharding: ``build(..., num_shards=N, shard_index=I)`` builds only the units whose name hashes to
shard I (:func:`shard_of`, a function of the unit name alone, so every machine agrees without
talking to the others). N such runs, on N machines or a job array, write into one shared folder:
utterance ids of different units never collide and every file is written atomically. A sharded run
does not write ``manifest.jsonl`` (it would list a partial folder); it writes its marker
``shards/shard-<I>-of-<N>.json`` when it has finished, and :func:`merge_shards` (run once after all
shards) checks that every marker is present and writes the one manifest of the whole folder.

Failure reasons (the ``reason`` field of a failed record, and the summary's categories) are the
``REASON_*`` constants below; the ``error`` field adds the details.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import queue
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mesm.data.format import (
    STATUS_OK,
    FormatError,
    FormatInfo,
    ProcessedWriter,
    UtteranceRecord,
    read_info,
)
from mesm.media.audio import AudioError, MelConfig, audio_chunks, audio_duration, read_segment
from mesm.media.video import FrameRequest, VideoError, probe_video, sample_times, stream_frames

REASON_MISSING_VIDEO = "missing video"
REASON_CORRUPT_VIDEO = "corrupt video"
REASON_MISSING_AUDIO = "missing audio"
REASON_CORRUPT_AUDIO = "corrupt audio"
REASON_OUTSIDE_MEDIA = "times outside the media"
REASON_EMPTY_TEXT = "empty text"
REASON_NOT_UTF8 = "text is not UTF-8"
REASON_NOT_IN_LABELS = "in transcription but not in labels"
REASON_NOT_IN_TRANSCRIPTION = "in labels but not in transcription"
REASON_INVALID_TIMES = "invalid times"
REASON_SILENT_AUDIO = "silent audio"
REASON_NO_FACE = "no face detected"
REASON_INTERNAL = "unexpected error"

SPLITS: tuple[str, ...] = ("train", "valid", "test")
UNASSIGNED = "unassigned"
SHARD_DIR = "shards"


@dataclass
class UtteranceSpec:
    """One utterance to build.

    Attributes:
        id: utterance id (a file name).
        start: start time in seconds in the unit's media.
        end: end time in seconds.
        labels: class names.
        text: the sentence.
        split: ``train``, ``valid``, ``test`` or ``unassigned``.
        side: ``L``/``R`` when the video shows two people side by side, else None.
        x_range: horizontal part of the frame showing the speaker, as fractions of the width.
        channel: audio channel of the speaker; None mixes all channels.
        reason: set when parsing already found the utterance unusable (then ``error`` explains).
        error: details of ``reason``.
    """

    id: str
    start: float
    end: float
    labels: list[str]
    text: str
    split: str = UNASSIGNED
    side: str | None = None
    x_range: tuple[float, float] = (0.0, 1.0)
    channel: int | None = 0
    reason: str | None = None
    error: str | None = None


@dataclass
class SourceUnit:
    """One video + audio and the utterances cut from them."""

    name: str
    video: Path
    audio: Path
    utterances: list[UtteranceSpec]


@dataclass(frozen=True)
class BuildOptions:
    """How units are processed (what :func:`process_unit` needs in a worker).

    Attributes:
        min_audio_rms: an utterance whose audio RMS (full scale 1.0) is below this fails as
            :data:`REASON_SILENT_AUDIO`; None accepts any audio.
        require_face: an utterance where MTCNN finds no face in any sampled frame fails as
            :data:`REASON_NO_FACE`; False keeps it with centred crops.
    """

    dataset: str
    fps: float = 2.0
    mel: MelConfig = MelConfig()
    face_size: int = 48
    face_margin: int = 2
    device: str | None = None
    min_audio_rms: float | None = None
    require_face: bool = False


@dataclass
class UnitResult:
    """What one unit produced, sent back from a worker."""

    records: list[dict[str, Any]]
    built: int = 0
    skipped: int = 0
    frames: int = 0


@dataclass
class BuildSummary:
    """Outcome of a build run.

    Attributes:
        counts: split -> class -> number of ok utterances (all ok records of the folder).
        totals: split -> number of ok utterances (differs from the sum of ``counts`` when an
            utterance may have several labels or none).
        unlabelled: split -> ok utterances with no label (multi-label data).
        excluded_labels: label -> utterances not written because their label is not a class.
        raw_problems: problem -> raw entries (lines, label rows) that name no utterance record.
        failures: reason -> failed utterances.
        failed_in_splits: reason -> failed utterances that the split assignment names (for the
            default split lists: the listed segments that the cleaning dropped).
        missing_from_raw: ids named by the split lists but absent from the raw data.
        unassigned: utterances named by no split list (written with split ``unassigned``).
        built: utterances processed by this run; skipped: already built by an earlier run.
        frames: face frames processed by this run.
        seconds: wall-clock time of the run.
        shard: ``(index, count)`` for a sharded run, whose counts cover its own units only.
    """

    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    totals: dict[str, int] = field(default_factory=dict)
    unlabelled: dict[str, int] = field(default_factory=dict)
    excluded_labels: dict[str, int] = field(default_factory=dict)
    raw_problems: dict[str, int] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    failed_in_splits: dict[str, int] = field(default_factory=dict)
    missing_from_raw: int = 0
    unassigned: int = 0
    ok: int = 0
    failed: int = 0
    built: int = 0
    skipped: int = 0
    frames: int = 0
    seconds: float = 0.0
    shard: tuple[int, int] | None = None

    def exit_code(self, strict: bool = False) -> int:
        """0 on success; 1 when nothing could be built, or with ``strict`` when anything failed.

        A shard with no utterance at all (more shards than units) is not a failure.
        """
        empty_shard = self.shard is not None and self.ok + self.failed == 0
        if (self.ok == 0 and not empty_shard) or (strict and self.failed > 0):
            return 1
        return 0

    def format(self) -> str:
        """Multi-line human-readable summary."""
        scope = f"shard {self.shard[0]} of {self.shard[1]}: " if self.shard else ""
        lines = [
            f"{scope}utterances ok: {self.ok}, failed: {self.failed} "
            f"(this run built {self.built}, skipped {self.skipped} already built, "
            f"{self.frames} frames, {self.seconds:.1f} s)"
        ]
        if self.built and self.seconds > 0:
            lines.append(
                f"throughput: {self.built / self.seconds:.2f} utterances/s, "
                f"{self.frames / self.seconds:.1f} frames/s"
            )
        for split, per_class in self.counts.items():
            detail = ", ".join(f"{name} {count}" for name, count in per_class.items())
            if self.unlabelled.get(split):
                detail += f", no label {self.unlabelled[split]}"
            total = self.totals.get(split, sum(per_class.values()))
            lines.append(f"  {split}: {total} ({detail})")
        if self.excluded_labels:
            detail = ", ".join(f"{k} {v}" for k, v in sorted(self.excluded_labels.items()))
            lines.append(f"excluded labels (not written): {detail}")
        if self.raw_problems:
            lines.append("raw entries not written:")
            lines.extend(f"  {name}: {count}" for name, count in sorted(self.raw_problems.items()))
        if self.failures:
            lines.append("failures by reason:")
            lines.extend(f"  {reason}: {count}" for reason, count in sorted(self.failures.items()))
        if self.failed_in_splits:
            detail = ", ".join(f"{k} {v}" for k, v in sorted(self.failed_in_splits.items()))
            lines.append(
                f"failed utterances that a split names (dropped from it): "
                f"{sum(self.failed_in_splits.values())} ({detail})"
            )
        if self.unassigned:
            lines.append(
                f"utterances in no split list (written as '{UNASSIGNED}'): {self.unassigned}"
            )
        if self.missing_from_raw:
            lines.append(f"split-list ids absent from the raw data: {self.missing_from_raw}")
        return "\n".join(lines)


def limit_units(units: Sequence[SourceUnit], limit: int | None) -> list[SourceUnit]:
    """The units holding only the first ``limit`` utterances, in unit order (``--limit``)."""
    if limit is None:
        return list(units)
    kept = []
    remaining = limit
    for unit in units:
        unit.utterances = unit.utterances[: max(0, remaining)]
        remaining -= len(unit.utterances)
        if unit.utterances:
            kept.append(unit)
    return kept


def add_build_arguments(
    parser: argparse.ArgumentParser, *, default_split_dir: Path, resplit_help: str, item: str
) -> None:
    """The options every dataset builder shares (``preprocessing/build_*.py``).

    Args:
        parser: the script's parser (``--raw`` and dataset-specific options are its own).
        default_split_dir: default of ``--split-dir`` (the paper's lists for that dataset).
        resplit_help: help of ``--resplit`` (what a new split draws).
        item: what one record is called in help texts ("utterances", "segments").
    """
    parser.add_argument(
        "--out", type=Path, required=True, help="output folder (resumed if present)"
    )
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--fps", type=float, default=2.0, help="face frames per second (default 2)")
    splits = parser.add_mutually_exclusive_group()
    splits.add_argument(
        "--split-dir",
        type=Path,
        default=default_split_dir,
        help="folder of train.txt/valid.txt/test.txt (default: the MESM paper's lists)",
    )
    splits.add_argument("--resplit", type=int, metavar="SEED", help=resplit_help)
    parser.add_argument("--limit", type=int, help=f"build only the first N {item} (trials)")
    parser.add_argument("--strict", action="store_true", help="exit non-zero if anything failed")
    parser.add_argument(
        "--log-mel",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="store log(mel + 1e-6) rather than power mel (default: log)",
    )
    parser.add_argument("--device", help="MTCNN device (default: cuda when available)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def stratified_split(
    labels: Mapping[str, str], seed: int, fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)
) -> dict[str, str]:
    """A deterministic stratified train/valid/test split.

    Args:
        labels: utterance id -> the label to stratify on.
        seed: random seed; the same seed and ids give the same split.
        fractions: train, valid, test shares (the rest after train and valid goes to test).

    Returns:
        id -> ``train`` | ``valid`` | ``test``.
    """
    rng = np.random.default_rng(seed)
    by_label: dict[str, list[str]] = defaultdict(list)
    for utterance_id in sorted(labels):
        by_label[labels[utterance_id]].append(utterance_id)
    assignment: dict[str, str] = {}
    for label in sorted(by_label):
        ids = by_label[label]
        order = rng.permutation(len(ids))
        n_train = round(fractions[0] * len(ids))
        n_valid = round(fractions[1] * len(ids))
        for rank, index in enumerate(order):
            split = "train" if rank < n_train else "valid" if rank < n_train + n_valid else "test"
            assignment[ids[index]] = split
    return assignment


def read_split_lists(split_dir: str | Path) -> dict[str, str]:
    """id -> split from ``train.txt``, ``valid.txt``, ``test.txt`` (one id per line).

    Raises:
        FileNotFoundError: a list is missing.
        ValueError: an id appears in two lists.
    """
    assignment: dict[str, str] = {}
    for split in SPLITS:
        path = Path(split_dir) / f"{split}.txt"
        if not path.is_file():
            raise FileNotFoundError(f"split list {path} not found")
        for line in path.read_text(encoding="utf-8").splitlines():
            utterance_id = line.strip()
            if not utterance_id:
                continue
            if utterance_id in assignment:
                raise ValueError(
                    f"{utterance_id} is in both {assignment[utterance_id]}.txt and {split}.txt"
                )
            assignment[utterance_id] = split
    return assignment


def _record(spec: UtteranceSpec, dataset: str, source: str) -> UtteranceRecord:
    return UtteranceRecord(
        id=spec.id,
        dataset=dataset,
        split=spec.split,
        labels=list(spec.labels),
        text=spec.text,
        start=spec.start,
        end=spec.end,
        side=spec.side,
        source=source,
    )


_CROPPER: Any = None


def _face_cropper(options: BuildOptions) -> Any:
    # One detector per process: loading MTCNN costs far more than one utterance.
    global _CROPPER
    if _CROPPER is None:
        from mesm.media.faces import FaceCropper

        _CROPPER = FaceCropper(options.face_size, options.face_margin, options.device)
    return _CROPPER


def _same_metadata(stored: UtteranceRecord, fresh: UtteranceRecord) -> bool:
    keys = ("split", "labels", "text", "start", "end", "side", "source", "dataset")
    return all(getattr(stored, key) == getattr(fresh, key) for key in keys)


def process_unit(
    unit: SourceUnit, out: str | Path, info: FormatInfo, options: BuildOptions, progress: Any = None
) -> UnitResult:
    """Build every utterance of one unit that is not built yet.

    Args:
        unit: the video, audio and utterances.
        out: the processed folder.
        info: its format parameters.
        options: processing parameters.
        progress: optional object with ``put(n)`` told after each finished utterance.

    Returns:
        The records of all utterances of the unit and counts of work done.
    """
    writer = ProcessedWriter(out, info)
    result = UnitResult(records=[])
    todo: dict[str, tuple[UtteranceSpec, UtteranceRecord]] = {}

    def finish(record: UtteranceRecord) -> None:
        result.records.append(record.to_dict())
        if progress is not None:
            progress.put(1)

    def fail(record: UtteranceRecord, reason: str, error: str) -> None:
        writer.write_failure(record, reason, error)
        result.built += 1
        finish(record)

    for spec in unit.utterances:
        record = _record(spec, options.dataset, unit.name)
        stored = writer.finished(spec.id)
        if spec.reason is None and stored is not None:
            # Already built: only metadata (a new split, say) may need refreshing.
            if not _same_metadata(stored, record):
                record.n_frames, record.n_audio_chunks = stored.n_frames, stored.n_audio_chunks
                record.n_faces_detected = stored.n_faces_detected
                writer.write_record(record)
                stored = record
            result.skipped += 1
            finish(stored)
        elif spec.reason is not None:
            fail(record, spec.reason, spec.error or spec.reason)
        else:
            todo[spec.id] = (spec, record)
    if not todo:
        return result

    # Audio first: it is cheap, and an utterance whose audio fails needs no video decoding.
    chunks: dict[str, np.ndarray] = {}
    try:
        audio_duration(unit.audio)
        audio_problem: tuple[str, str] | None = None
    except AudioError as error:
        missing = not Path(unit.audio).is_file()
        audio_problem = (REASON_MISSING_AUDIO if missing else REASON_CORRUPT_AUDIO, str(error))
    try:
        video = probe_video(unit.video)
        video_problem: tuple[str, str] | None = None
    except VideoError as error:
        missing = not Path(unit.video).is_file()
        video_problem = (REASON_MISSING_VIDEO if missing else REASON_CORRUPT_VIDEO, str(error))
    for utterance_id, (spec, record) in list(todo.items()):
        problem = audio_problem or video_problem
        if problem is None and spec.end > video.duration + 1.0 / video.fps:
            problem = (
                REASON_OUTSIDE_MEDIA,
                f"segment [{spec.start:.3f}, {spec.end:.3f}] s, video {unit.video} lasts "
                f"{video.duration:.3f} s",
            )
        if problem is None:
            try:
                samples = read_segment(unit.audio, spec.start, spec.end, spec.channel)
                rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
                if options.min_audio_rms is not None and rms < options.min_audio_rms:
                    problem = (
                        REASON_SILENT_AUDIO,
                        f"segment [{spec.start:.3f}, {spec.end:.3f}] s of {unit.audio} has RMS "
                        f"{rms:.2e} < {options.min_audio_rms:.0e}",
                    )
                else:
                    chunks[utterance_id] = audio_chunks(samples, options.mel).numpy()
            except AudioError as error:
                message = str(error)
                reason = (
                    REASON_OUTSIDE_MEDIA
                    if message.startswith(REASON_OUTSIDE_MEDIA)
                    else REASON_CORRUPT_AUDIO
                )
                problem = (reason, message)
        if problem is not None:
            fail(record, *problem)
            del todo[utterance_id]
    if not todo:
        return result

    requests = [
        FrameRequest(spec.id, sample_times(spec.start, spec.end, options.fps), spec.x_range)
        for spec, _ in todo.values()
    ]
    cropper = _face_cropper(options)
    try:
        for frames in stream_frames(unit.video, requests, video):
            spec, record = todo.pop(frames.key)
            if frames.frames is None:
                fail(record, REASON_CORRUPT_VIDEO, frames.error or "unreadable frames")
                continue
            try:
                crops = cropper(frames.frames)
                if options.require_face and crops.n_detected == 0:
                    fail(
                        record,
                        REASON_NO_FACE,
                        f"no face in any of the {len(frames.frames)} frames sampled from "
                        f"[{spec.start:.3f}, {spec.end:.3f}] s of {unit.video}",
                    )
                    result.frames += len(frames.frames)
                    continue
                record.n_faces_detected = crops.n_detected
                writer.write_utterance(record, crops.faces, chunks[spec.id])
            except Exception as error:  # one bad utterance must not stop the dialog's others
                fail(record, REASON_INTERNAL, f"{type(error).__name__}: {error}")
                continue
            result.built += 1
            result.frames += int(crops.faces.shape[0])
            finish(record)
    except VideoError as error:
        for _, record in list(todo.values()):
            fail(record, REASON_CORRUPT_VIDEO, str(error))
    return result


_PROGRESS: Any = None


def _init_worker(progress: Any) -> None:
    global _PROGRESS
    _PROGRESS = progress
    # Parallelism comes from the worker pool; intra-op threads would only oversubscribe the cores.
    torch.set_num_threads(1)


def _run_unit(unit: SourceUnit, out: str, info: FormatInfo, options: BuildOptions) -> UnitResult:
    return process_unit(unit, out, info, options, _PROGRESS)


@contextmanager
def _single_threaded() -> Iterator[None]:
    """One intra-op torch thread while units are processed in this process, then as before.

    MTCNN's small convolutions gain nothing from several threads, and on a busy machine their
    synchronisation makes detection an order of magnitude slower (measured: 0.07 s vs 1 s per
    call on 2 shared cores).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class _Ticker:
    """In-process progress sink with the queue's ``put`` interface."""

    def __init__(self, bar: Any) -> None:
        self.bar = bar

    def put(self, count: int) -> None:
        self.bar.update(count)


def _pool_context() -> Any:
    """forkserver where the platform has it, else spawn (never fork: torch is not fork-safe).

    forkserver workers fork from one server process that imported torch and MTCNN once, so a pool
    of N workers pays those imports once instead of N times.
    """
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["mesm.data.build", "mesm.media.faces", "facenet_pytorch"])
        return context
    return multiprocessing.get_context("spawn")


def _needs_media(unit: SourceUnit, writer: ProcessedWriter) -> bool:
    """Whether some utterance of ``unit`` must be built from its media."""
    return any(spec.reason is None and writer.finished(spec.id) is None for spec in unit.utterances)


def _drain(ticks: Any, bar: Any, timeout: float | None) -> None:
    """Move every pending progress tick to the bar, waiting up to ``timeout`` for the first."""
    try:
        count = ticks.get(timeout=timeout) if timeout else ticks.get_nowait()
        while True:
            bar.update(count)
            count = ticks.get_nowait()
    except queue.Empty:
        pass


def shard_of(name: str, num_shards: int) -> int:
    """The shard (0 .. num_shards - 1) of a unit: a stable hash of its name alone.

    Depending on nothing but the name, it is the same on every machine and in every run, whatever
    else the raw tree holds; units (not utterances) are sharded so each video is decoded once.
    """
    return zlib.crc32(name.encode("utf-8")) % num_shards


def _check_shard(num_shards: int, shard_index: int) -> None:
    if num_shards < 1 or not 0 <= shard_index < num_shards:
        raise ValueError(
            f"shard index {shard_index} of {num_shards} shards: need num_shards >= 1 and "
            "0 <= shard_index < num_shards"
        )


def shard_marker_path(out: str | Path, shard_index: int, num_shards: int) -> Path:
    """Where a sharded run records that it finished."""
    return Path(out) / SHARD_DIR / f"shard-{shard_index:04d}-of-{num_shards:04d}.json"


def build(
    units: Sequence[SourceUnit],
    out: str | Path,
    info: FormatInfo,
    options: BuildOptions,
    *,
    workers: int = 1,
    progress: bool = True,
    excluded_labels: Mapping[str, int] | None = None,
    missing_from_raw: int = 0,
    raw_problems: Mapping[str, int] | None = None,
    num_shards: int = 1,
    shard_index: int = 0,
) -> BuildSummary:
    """Process ``units`` into ``out`` and summarise the whole folder (or this shard).

    Args:
        units: what to build (all of them: a sharded run picks its own part).
        out: the processed folder (created; an existing one is resumed).
        info: format parameters written to ``format.json``.
        options: processing parameters.
        workers: processes; 0 or 1 processes in this process.
        progress: show a progress bar over utterances.
        excluded_labels: label counts not written, reported in the summary.
        missing_from_raw: split-list ids absent from the raw data, reported in the summary.
        raw_problems: counts of raw entries that name no record, reported in the summary.
        num_shards: with more than one, build only the units of shard ``shard_index``
            (:func:`shard_of`), write its marker instead of the manifest, and summarise its own
            utterances; :func:`merge_shards` then writes the manifest of the whole folder.
        shard_index: this run's shard.

    Returns:
        The summary; ``summary.exit_code(strict)`` gives the command's exit status.

    Raises:
        ValueError: a shard index outside ``0 .. num_shards - 1``.
    """
    from tqdm import tqdm

    _check_shard(num_shards, shard_index)
    started = time.perf_counter()
    writer = ProcessedWriter(out, info)
    marker: Path | None = None
    if num_shards > 1:
        units = [unit for unit in units if shard_of(unit.name, num_shards) == shard_index]
        # A marker means "this shard is complete": gone while it runs, so merge waits for it.
        marker = shard_marker_path(out, shard_index, num_shards)
        marker.unlink(missing_ok=True)
    total = sum(len(unit.utterances) for unit in units)
    results: list[UnitResult] = []
    # Larger units first so one long dialog does not finish last on an otherwise idle pool.
    ordered = sorted(units, key=lambda unit: -len(unit.utterances))
    # Units with no media work left (a resumed run) are finished here: starting worker processes
    # (each importing torch and MTCNN) would cost more than reading their records.
    media_units = [unit for unit in ordered if _needs_media(unit, writer)]
    workers = min(workers, len(media_units))
    with tqdm(total=total, unit="utt", disable=not progress, desc="building") as bar:
        ticker = _Ticker(bar)
        with _single_threaded():
            for unit in ordered:
                if workers <= 1 or not any(unit is other for other in media_units):
                    results.append(process_unit(unit, out, info, options, ticker))
        if workers > 1:
            context = _pool_context()
            ticks = context.Queue()
            with context.Pool(workers, initializer=_init_worker, initargs=(ticks,)) as pool:
                pending = [
                    pool.apply_async(_run_unit, (unit, str(out), info, options))
                    for unit in media_units
                ]
                while pending:
                    _drain(ticks, bar, timeout=0.2)
                    still = []
                    for job in pending:
                        if job.ready():
                            results.append(job.get())
                        else:
                            still.append(job)
                    pending = still
                _drain(ticks, bar, timeout=None)
    if marker is not None:
        records = [
            UtteranceRecord.from_dict(values) for result in results for values in result.records
        ]
    else:
        records = writer.write_manifest()
    summary = summarise(records, info.classes)
    summary.excluded_labels = dict(excluded_labels or {})
    summary.raw_problems = dict(raw_problems or {})
    summary.missing_from_raw = missing_from_raw
    summary.built = sum(result.built for result in results)
    summary.skipped = sum(result.skipped for result in results)
    summary.frames = sum(result.frames for result in results)
    summary.seconds = time.perf_counter() - started
    if marker is not None:
        summary.shard = (shard_index, num_shards)
        _write_marker(marker, summary, sorted(record.id for record in records))
    return summary


_MARKER_TOTALS = ("built", "skipped", "frames", "seconds")


def _write_marker(path: Path, summary: BuildSummary, ids: list[str]) -> None:
    # Whole-release facts (parse-level counts) are the same in every shard's marker; the work
    # counts are this shard's own and add up over shards.
    values = {
        "shard_index": summary.shard[0] if summary.shard else 0,
        "num_shards": summary.shard[1] if summary.shard else 1,
        "ids": ids,
        "excluded_labels": summary.excluded_labels,
        "raw_problems": summary.raw_problems,
        "missing_from_raw": summary.missing_from_raw,
        **{key: getattr(summary, key) for key in _MARKER_TOTALS},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(values), encoding="utf-8")
    temporary.replace(path)


def merge_shards(out: str | Path) -> BuildSummary:
    """Write the manifest of a folder built by sharded runs, once every shard has finished.

    Args:
        out: the processed folder the shards wrote into.

    Returns:
        The summary of the whole folder; ``built``, ``skipped``, ``frames`` and ``seconds`` add up
        the last run of each shard (``seconds`` is then machine time, not wall-clock time).

    Raises:
        FormatError: not a processed folder, no shard marker, markers of different shard counts,
            a shard not finished yet (named), or a finished shard whose records are missing.
    """
    out = Path(out)
    info = read_info(out)
    paths = sorted((out / SHARD_DIR).glob("shard-*-of-*.json"))
    if not paths:
        raise FormatError(
            f"no shard marker in {out / SHARD_DIR}: run the sharded builds (--num-shards N "
            "--shard-index I) to completion before merging"
        )
    markers = [json.loads(path.read_text(encoding="utf-8")) for path in paths]
    counts = sorted({int(marker["num_shards"]) for marker in markers})
    if len(counts) > 1:
        raise FormatError(
            f"{out / SHARD_DIR} holds markers of runs with {counts} shards; remove the markers of "
            "the sharding you abandoned and re-run"
        )
    num_shards = counts[0]
    done = {int(marker["shard_index"]) for marker in markers}
    missing = sorted(set(range(num_shards)) - done)
    if missing:
        raise FormatError(
            f"shard(s) {missing} of {num_shards} have not finished (no marker in "
            f"{out / SHARD_DIR}): run them (a re-run resumes) before merging"
        )
    writer = ProcessedWriter(out, info)
    records = writer.write_manifest()
    on_disk = {record.id for record in records}
    lost = sorted({i for marker in markers for i in marker["ids"]} - on_disk)
    if lost:
        raise FormatError(
            f"{len(lost)} utterance(s) listed by shard markers have no record in {out}, e.g. "
            f"{lost[:3]}; re-run their shards"
        )
    summary = summarise(records, info.classes)
    first = markers[0]
    summary.excluded_labels = dict(first["excluded_labels"])
    summary.raw_problems = dict(first["raw_problems"])
    summary.missing_from_raw = int(first["missing_from_raw"])
    for key in _MARKER_TOTALS:
        setattr(summary, key, sum(marker[key] for marker in markers))
    return summary


def summarise(records: Iterable[UtteranceRecord], classes: Sequence[str]) -> BuildSummary:
    """Counts per split and class of ok records, and failures by reason."""
    counts: dict[str, dict[str, int]] = {}
    totals: Counter[str] = Counter()
    unlabelled: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    failed_in_splits: Counter[str] = Counter()
    summary = BuildSummary()
    for record in records:
        if record.status == STATUS_OK:
            summary.ok += 1
            per_class = counts.setdefault(record.split, {name: 0 for name in classes})
            for label in record.labels:
                per_class[label] = per_class.get(label, 0) + 1
            totals[record.split] += 1
            unlabelled[record.split] += not record.labels
            summary.unassigned += record.split == UNASSIGNED
        else:
            summary.failed += 1
            failures[record.reason or REASON_INTERNAL] += 1
            if record.split != UNASSIGNED:
                failed_in_splits[record.reason or REASON_INTERNAL] += 1
    order = {name: index for index, name in enumerate((*SPLITS, UNASSIGNED))}
    summary.counts = dict(sorted(counts.items(), key=lambda item: order.get(item[0], math.inf)))
    summary.totals = dict(totals)
    summary.unlabelled = {split: count for split, count in unlabelled.items() if count}
    summary.failures = dict(failures)
    summary.failed_in_splits = dict(failed_in_splits)
    return summary
