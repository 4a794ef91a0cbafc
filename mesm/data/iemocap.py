"""IEMOCAP: parse the official release and build the processed dataset.

Official layout (``IEMOCAP_full_release/``, MESM.md section 2), per session ``SessionK/dialog/``:

- ``avi/DivX/<dialog>.avi``: both actors side by side;
- ``wav/<dialog>.wav``: 16 kHz stereo, channel 0 = the left actor;
- ``transcriptions/<dialog>.txt``: ``<utt_id> [start-end]: sentence``; lines whose id has no
  speaker part (noises) are skipped;
- ``EmoEvaluation/<dialog>.txt``: a header, then per utterance a tab-separated line
  ``[start - end]  <utt_id>  <label>  [v, a, d]`` followed by annotator lines (ignored).

Rules:

- Start/end times come from EmoEvaluation; the sentence from the transcription.
- Side: the left half of the frame (and audio channel 0) shows the actor whose letter matches the
  dialog's own letter: ``Ses01F_impro01`` + ``..._F000`` -> left, ``..._M000`` -> right.
- Classes: :data:`CLASSES`, in that order. Utterances with other labels (fea, sur, dis, oth,
  xxx) are counted in the summary and not written.
- An utterance present in only one of transcription and EmoEvaluation, with empty text, or with
  bytes that are not UTF-8 is written as failed with that reason.
- Splits: the lists of a split folder (default ``datasets_reorg/iemocap``, the MESM paper's); an
  utterance in no list is written with split ``unassigned`` and counted in the summary. Or a new
  stratified 70/10/20 split (``resplit_seed``), drawn over every kept-class utterance of the release
  before ``limit`` applies, so a trial run with ``limit`` sees the same splits as a full one.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from mesm.data.build import (
    REASON_EMPTY_TEXT,
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
    stratified_split,
)
from mesm.data.format import FormatInfo
from mesm.media.audio import MelConfig

CLASSES: tuple[str, ...] = ("ang", "exc", "fru", "hap", "neu", "sad")
ALL_LABELS: tuple[str, ...] = (*CLASSES, "fea", "sur", "dis", "oth", "xxx")
DEFAULT_SPLIT_DIR = Path(__file__).resolve().parents[2] / "datasets_reorg" / "iemocap"

# "Ses01F_impro01_F000", "Ses01F_script01_1_M012": dialog, then speaker letter and number.
_UTTERANCE_ID = re.compile(r"^(?P<dialog>Ses\d\d[FM]_.+)_(?P<speaker>[FM])\d+$")
_EMO_LINE = re.compile(
    r"^\[\s*(?P<start>\d+(?:\.\d+)?)\s*-\s*(?P<end>\d+(?:\.\d+)?)\s*\]\t(?P<id>\S+)\t(?P<label>\S+)\t"
)
_TRANSCRIPTION_LINE = re.compile(r"^(?P<id>\S+)\s+\[[^\]]*\]:\s?(?P<text>.*)$")


@dataclass(frozen=True)
class EmoEntry:
    """One EmoEvaluation block's first line."""

    id: str
    start: float
    end: float
    label: str


@dataclass(frozen=True)
class TranscriptionEntry:
    """One transcription line; ``text`` is None when its bytes are not UTF-8."""

    id: str
    text: str | None


def speaker_side(utterance_id: str) -> str:
    """``L`` when the speaker's letter matches the dialog's (``Ses01F_..._F000``), else ``R``.

    Raises:
        ValueError: the id has no speaker part.
    """
    match = _UTTERANCE_ID.match(utterance_id)
    if match is None:
        raise ValueError(f"{utterance_id!r} is not an IEMOCAP utterance id with a speaker part")
    return "L" if match["dialog"][5] == match["speaker"] else "R"


def parse_emo_evaluation(path: str | Path) -> dict[str, EmoEntry]:
    """Utterance entries of one EmoEvaluation file (annotator lines and the header are ignored)."""
    entries: dict[str, EmoEntry] = {}
    for raw_line in Path(path).read_bytes().splitlines():
        match = _EMO_LINE.match(raw_line.decode("utf-8", errors="replace"))
        if match is not None:
            entries[match["id"]] = EmoEntry(
                match["id"], float(match["start"]), float(match["end"]), match["label"]
            )
    return entries


def parse_transcription(path: str | Path) -> dict[str, TranscriptionEntry]:
    """Utterance lines of one transcription file, skipping ids with no speaker part.

    Each line is decoded on its own so one line with bad bytes spoils only its utterance.
    """
    entries: dict[str, TranscriptionEntry] = {}
    for raw_line in Path(path).read_bytes().splitlines():
        try:
            line: str = raw_line.decode("utf-8")
            valid = True
        except UnicodeDecodeError:
            line, valid = raw_line.decode("utf-8", errors="replace"), False
        match = _TRANSCRIPTION_LINE.match(line.strip())
        if match is None or _UTTERANCE_ID.match(match["id"]) is None:
            continue
        entries[match["id"]] = TranscriptionEntry(
            match["id"], match["text"].strip() if valid else None
        )
    return entries


@dataclass
class DialogFiles:
    """Paths of one dialog's raw files."""

    name: str
    video: Path
    audio: Path
    transcription: Path
    emo_evaluation: Path


def find_dialogs(raw: str | Path) -> list[DialogFiles]:
    """Every dialog of a release, sorted by name (from its transcription or EmoEvaluation file).

    Raises:
        FileNotFoundError: no ``Session*/dialog`` folder under ``raw``.
    """
    raw = Path(raw)
    sessions = sorted(path for path in raw.glob("Session*/dialog") if path.is_dir())
    if not sessions:
        raise FileNotFoundError(
            f"no Session*/dialog folder under {raw}: pass the IEMOCAP_full_release folder"
        )
    dialogs = []
    for folder in sessions:
        names = {
            path.stem
            for sub in ("transcriptions", "EmoEvaluation")
            for path in (folder / sub).glob("*.txt")
            if not path.name.startswith(".")  # macOS "._" resource files ship in some copies
        }
        for name in sorted(names):
            dialogs.append(
                DialogFiles(
                    name=name,
                    video=folder / "avi" / "DivX" / f"{name}.avi",
                    audio=folder / "wav" / f"{name}.wav",
                    transcription=folder / "transcriptions" / f"{name}.txt",
                    emo_evaluation=folder / "EmoEvaluation" / f"{name}.txt",
                )
            )
    return dialogs


def dialog_utterances(
    dialog: DialogFiles, classes: tuple[str, ...]
) -> tuple[list[UtteranceSpec], Counter[str]]:
    """Kept utterances of one dialog (some already marked failed) and the excluded label counts."""
    emo = parse_emo_evaluation(dialog.emo_evaluation) if dialog.emo_evaluation.is_file() else {}
    text = parse_transcription(dialog.transcription) if dialog.transcription.is_file() else {}
    excluded: Counter[str] = Counter()
    specs = []
    for utterance_id in sorted(emo.keys() | text.keys()):
        if _UTTERANCE_ID.match(utterance_id) is None:
            continue
        entry = emo.get(utterance_id)
        if entry is not None and entry.label not in classes:
            excluded[entry.label] += 1
            continue
        side = speaker_side(utterance_id)
        spec = UtteranceSpec(
            id=utterance_id,
            start=entry.start if entry else 0.0,
            end=entry.end if entry else 0.0,
            labels=[entry.label] if entry else [],
            text="",
            side=side,
            x_range=(0.0, 0.5) if side == "L" else (0.5, 1.0),
            channel=0 if side == "L" else 1,
        )
        line = text.get(utterance_id)
        if entry is None:
            spec.reason = REASON_NOT_IN_LABELS
            spec.error = (
                f"{utterance_id} is in {dialog.transcription} but not in {dialog.emo_evaluation}"
            )
        elif line is None:
            spec.reason = REASON_NOT_IN_TRANSCRIPTION
            spec.error = (
                f"{utterance_id} is in {dialog.emo_evaluation} but not in {dialog.transcription}"
            )
        elif line.text is None:
            spec.reason = REASON_NOT_UTF8
            spec.error = f"the line of {utterance_id} in {dialog.transcription} is not valid UTF-8"
        elif not line.text:
            spec.reason = REASON_EMPTY_TEXT
            spec.error = f"the line of {utterance_id} in {dialog.transcription} has no text"
        else:
            spec.text = line.text
        specs.append(spec)
    return specs, excluded


def build_iemocap(
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
) -> BuildSummary:
    """Reorganise an IEMOCAP release into the processed format.

    Args:
        raw: the ``IEMOCAP_full_release`` folder.
        out: the processed folder (an existing one is resumed).
        workers: processes (each decodes whole dialogs).
        fps: face frames sampled per second.
        split_dir: folder of ``train.txt``/``valid.txt``/``test.txt``; unused with a resplit.
        resplit_seed: draw a new stratified 70/10/20 split with this seed instead.
        limit: build only the first ``limit`` kept utterances (sorted by dialog and id), for trials.
        log_mel: log-compress the mel-spectrogram.
        device: MTCNN device; None picks CUDA when available.
        progress: show a progress bar.

    Returns:
        The build summary; its ``exit_code(strict)`` is the command's exit status.
    """
    units = []
    excluded: Counter[str] = Counter()
    for dialog in find_dialogs(raw):
        specs, dialog_excluded = dialog_utterances(dialog, CLASSES)
        excluded.update(dialog_excluded)
        units.append(SourceUnit(dialog.name, dialog.video, dialog.audio, specs))
    all_specs = [spec for unit in units for spec in unit.utterances]
    raw_ids = {spec.id for spec in all_specs}
    missing = 0
    if resplit_seed is not None:
        assignment = stratified_split(
            {spec.id: spec.labels[0] for spec in all_specs if spec.labels}, resplit_seed
        )
    elif split_dir is not None:
        assignment = read_split_lists(split_dir)
        missing = len(assignment.keys() - raw_ids)
    else:
        assignment = {}
    for spec in all_specs:
        spec.split = assignment.get(spec.id, UNASSIGNED)
    units = limit_units(units, limit)
    mel = MelConfig(log=log_mel)
    info = FormatInfo(dataset="iemocap", classes=list(CLASSES), fps=fps, mel=mel.to_dict())
    options = BuildOptions(dataset="iemocap", fps=fps, mel=mel, device=device)
    return build(
        units,
        out,
        info,
        options,
        workers=workers,
        progress=progress,
        excluded_labels=excluded,
        missing_from_raw=missing,
    )
