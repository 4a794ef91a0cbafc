"""The processed on-disk format (version 1): one folder per built dataset.

Layout::

    DIR/format.json             what was built and how: {"format_version": 1, "dataset": "iemocap",
                                "classes": [...], "fps": 2.0, "face": {"size": 48, "margin": 2},
                                "mel": {...MelConfig...}, "audio_dtype": "float16", "splits": ...}
    DIR/utterances/<id>.npz     arrays of one utterance: ``faces`` uint8 (S, 3, 48, 48) RGB crops,
                                ``audio`` (K, 1, 128, 32) mel chunks (float16 on disk by default)
    DIR/records/<id>.json       the manifest record of that utterance
    DIR/manifest.jsonl          every record, one JSON object per line, sorted by id

Writing order makes every step atomic and resumable: the npz is written to a temporary name and
renamed (``os.replace``), then the record likewise. A record with status ``ok`` therefore always
has its npz; a crash leaves at most a stray temporary file, which the next run overwrites.
``manifest.jsonl`` is regenerated from ``records/`` at the end of every run (also atomically), so an
interrupted run loses nothing already written and its next run rebuilds the manifest.

Record fields: ``id``, ``dataset``, ``source`` (the dialog or video), ``split`` (``train``,
``valid``, ``test`` or ``unassigned`` when the split lists do not name it), ``labels`` (class
names), ``text``, ``start`` and ``end`` (seconds in the source), ``side`` (``L``/``R`` for IEMOCAP,
null otherwise), ``n_frames``, ``n_faces_detected``, ``n_audio_chunks``, ``status`` (``ok`` or
``failed``), ``reason`` (short failure category, null when ok) and ``error`` (the full message).
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

FORMAT_VERSION = 1
FORMAT_FILE = "format.json"
MANIFEST_FILE = "manifest.jsonl"
UTTERANCE_DIR = "utterances"
RECORD_DIR = "records"

STATUS_OK = "ok"
STATUS_FAILED = "failed"


class FormatError(RuntimeError):
    """A processed folder that is missing, corrupt, or of another format version."""


@dataclass
class FormatInfo:
    """Contents of ``format.json``: the parameters every utterance of the folder was built with."""

    dataset: str
    classes: list[str]
    fps: float
    mel: dict[str, Any]
    face: dict[str, Any] = field(default_factory=lambda: {"size": 48, "margin": 2})
    audio_dtype: str = "float16"
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> FormatInfo:
        known = {item.name for item in fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in known})

    def differences(self, other: FormatInfo) -> list[str]:
        """Human-readable list of parameters that differ from ``other``."""
        mine, theirs = self.to_dict(), other.to_dict()
        return [
            f"{key}: {mine[key]!r} != {theirs[key]!r}" for key in mine if mine[key] != theirs[key]
        ]


@dataclass
class UtteranceRecord:
    """One line of the manifest."""

    id: str
    dataset: str
    split: str
    labels: list[str]
    text: str
    start: float
    end: float
    side: str | None = None
    source: str = ""
    n_frames: int = 0
    n_faces_detected: int = 0
    n_audio_chunks: int = 0
    status: str = STATUS_OK
    reason: str | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> UtteranceRecord:
        known = {item.name for item in fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in known})


def _check_id(utterance_id: str) -> None:
    if not utterance_id or "/" in utterance_id or "\\" in utterance_id or utterance_id[0] == ".":
        raise ValueError(f"utterance id {utterance_id!r} cannot be used as a file name")


def _atomic_write(path: Path, data: bytes) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_info(root: str | Path) -> FormatInfo:
    """Read and check ``format.json``.

    Raises:
        FormatError: missing or unreadable file, or a format version this code does not read.
    """
    path = Path(root) / FORMAT_FILE
    if not path.is_file():
        raise FormatError(f"{path} not found: {root} is not a processed dataset folder")
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise FormatError(f"cannot read {path}: {error}") from error
    version = values.get("format_version")
    if version != FORMAT_VERSION:
        raise FormatError(
            f"{path} has format_version {version!r} but this code reads version {FORMAT_VERSION}; "
            "rebuild the folder with this version's preprocessing script"
        )
    return FormatInfo.from_dict(values)


def read_manifest(root: str | Path) -> list[UtteranceRecord]:
    """All records of ``manifest.jsonl``.

    Raises:
        FormatError: missing manifest or a line that is not a JSON record (named by line number).
    """
    path = Path(root) / MANIFEST_FILE
    if not path.is_file():
        raise FormatError(f"{path} not found: was the build interrupted? re-run it to finish")
    records = []
    with path.open(encoding="utf-8") as stream:
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                records.append(UtteranceRecord.from_dict(json.loads(line)))
            except (ValueError, TypeError) as error:
                raise FormatError(f"{path} line {number} is not a valid record: {error}") from error
    return records


def utterance_path(root: str | Path, utterance_id: str) -> Path:
    """Where the arrays of one utterance live."""
    return Path(root) / UTTERANCE_DIR / f"{utterance_id}.npz"


def load_arrays(root: str | Path, utterance_id: str) -> tuple[np.ndarray, np.ndarray]:
    """Faces and audio chunks of one utterance.

    Returns:
        faces (S, 3, 48, 48) uint8 and audio (K, 1, 128, 32) float32.

    Raises:
        FormatError: the npz is missing, corrupt, or lacks an array; the message names the file.
    """
    path = utterance_path(root, utterance_id)
    if not path.is_file():
        raise FormatError(f"missing utterance file {path}")
    try:
        with np.load(path, allow_pickle=False) as arrays:
            missing = [name for name in ("faces", "audio") if name not in arrays.files]
            if missing:
                raise FormatError(f"utterance file {path} lacks array(s) {missing}")
            faces = arrays["faces"]
            audio = arrays["audio"].astype(np.float32)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise FormatError(f"corrupt utterance file {path}: {error}") from error
    if faces.dtype != np.uint8 or faces.ndim != 4 or audio.ndim != 4:
        raise FormatError(
            f"utterance file {path} has faces {faces.dtype}{faces.shape}, audio {audio.shape}; "
            "expected uint8 (S, 3, H, W) and (K, 1, F, T)"
        )
    return faces, audio


class ProcessedWriter:
    """Writes a processed folder, utterance by utterance, resumably.

    Args:
        root: the output folder (created if missing).
        info: the build parameters. An existing folder built with other parameters is refused,
            because mixing them would silently give utterances of two kinds.
    """

    def __init__(self, root: str | Path, info: FormatInfo) -> None:
        self.root = Path(root)
        self.info = info
        (self.root / UTTERANCE_DIR).mkdir(parents=True, exist_ok=True)
        (self.root / RECORD_DIR).mkdir(parents=True, exist_ok=True)
        info_path = self.root / FORMAT_FILE
        if info_path.is_file():
            existing = read_info(self.root)
            differences = existing.differences(info)
            if differences:
                raise FormatError(
                    f"{self.root} was built with other parameters ({'; '.join(differences)}); "
                    "use another output folder or delete this one"
                )
        else:
            _atomic_write(info_path, json.dumps(info.to_dict(), indent=2).encode("utf-8"))

    def record_path(self, utterance_id: str) -> Path:
        _check_id(utterance_id)
        return self.root / RECORD_DIR / f"{utterance_id}.json"

    def read_record(self, utterance_id: str) -> UtteranceRecord | None:
        """The stored record, or None when absent or unreadable (then it is rebuilt)."""
        path = self.record_path(utterance_id)
        try:
            return UtteranceRecord.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            return None

    def finished(self, utterance_id: str) -> UtteranceRecord | None:
        """The record of an utterance already built successfully, else None."""
        record = self.read_record(utterance_id)
        if record is None or record.status != STATUS_OK:
            return None
        return record if utterance_path(self.root, utterance_id).is_file() else None

    def write_record(self, record: UtteranceRecord) -> None:
        """Write (or replace) one record atomically."""
        payload = json.dumps(record.to_dict(), ensure_ascii=False).encode("utf-8")
        _atomic_write(self.record_path(record.id), payload)

    def write_utterance(
        self, record: UtteranceRecord, faces: np.ndarray, audio: np.ndarray
    ) -> None:
        """Write the arrays, then the record: a record marked ok always has its arrays.

        Args:
            record: its counts are filled in from the arrays.
            faces: (S, 3, H, W) uint8.
            audio: (K, 1, F, T) float.
        """
        _check_id(record.id)
        if faces.dtype != np.uint8:
            raise ValueError(f"faces must be uint8, got {faces.dtype}")
        path = utterance_path(self.root, record.id)
        handle, temporary = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
        )
        try:
            with os.fdopen(handle, "wb") as stream:
                np.savez(stream, faces=faces, audio=audio.astype(self.info.audio_dtype))
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        record.n_frames = int(faces.shape[0])
        record.n_audio_chunks = int(audio.shape[0])
        record.status, record.reason, record.error = STATUS_OK, None, None
        self.write_record(record)

    def write_failure(self, record: UtteranceRecord, reason: str, error: str) -> None:
        """Record a failed utterance; any arrays of an earlier successful build are removed."""
        utterance_path(self.root, record.id).unlink(missing_ok=True)
        record.status, record.reason, record.error = STATUS_FAILED, reason, error
        self.write_record(record)

    def write_manifest(self) -> list[UtteranceRecord]:
        """Regenerate ``manifest.jsonl`` from every record, sorted by id, and return the records."""
        records = []
        for path in sorted((self.root / RECORD_DIR).glob("*.json")):
            record = self.read_record(path.stem)
            if record is not None:
                records.append(record)
        lines = "".join(json.dumps(r.to_dict(), ensure_ascii=False) + "\n" for r in records)
        _atomic_write(self.root / MANIFEST_FILE, lines.encode("utf-8"))
        return records
