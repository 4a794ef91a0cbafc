"""Miniature raw IEMOCAP trees in the official layout, for tests and the embedded demo.

:func:`make_iemocap_tree` writes ``SessionK/dialog/{avi/DivX,wav,transcriptions,EmoEvaluation}``
exactly as the official release lays them out (MESM.md section 2), with both speaker sides, every
label kind, lines without a speaker part, and optionally injected bad inputs.

The labels are learnable from each modality on its own, so a model can train on the tree in minutes:

- vision: a real face photograph (scikit-image's astronaut) composited into the speaker's half of
  the frame with a class-specific colour tint, over noise; the listener's half holds noise only,
  so a face is found only when the speaker's half is taken;
- audio: in the speaker's channel a class-specific tone (plus jitter and noise); the listener's
  channel holds faint noise and a 7 kHz hum, so the two channels differ everywhere;
- text: class-typical words among filler words, sometimes a word of another class.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import soundfile

from mesm.data.build import (
    REASON_CORRUPT_AUDIO,
    REASON_CORRUPT_VIDEO,
    REASON_EMPTY_TEXT,
    REASON_MISSING_VIDEO,
    REASON_NOT_IN_LABELS,
    REASON_NOT_IN_TRANSCRIPTION,
    REASON_NOT_UTF8,
    REASON_OUTSIDE_MEDIA,
)
from mesm.data.iemocap import ALL_LABELS, CLASSES

SAMPLE_RATE = 16000
LISTENER_HUM_HZ = 7000.0

# Tone of each label in the speaker's audio channel, in Hz.
CLASS_TONES: dict[str, float] = {
    "ang": 400.0, "exc": 650.0, "fru": 950.0, "hap": 1300.0, "neu": 1750.0, "sad": 2300.0,
    "fea": 3000.0, "sur": 3600.0, "dis": 4200.0, "oth": 4800.0, "xxx": 5400.0,
}  # fmt: skip
# RGB gain of the face of each label.
CLASS_TINTS: dict[str, tuple[float, float, float]] = {
    "ang": (1.35, 0.75, 0.75), "exc": (1.2, 0.85, 1.25), "fru": (0.85, 1.25, 0.8),
    "hap": (1.3, 1.2, 0.65), "neu": (1.0, 1.0, 1.0), "sad": (0.7, 0.85, 1.35),
}  # fmt: skip
CLASS_WORDS: dict[str, tuple[str, ...]] = {
    "ang": ("furious", "hate", "shut", "outrageous", "yelling"),
    "exc": ("amazing", "wow", "incredible", "fantastic", "thrilled"),
    "fru": ("annoying", "again", "ugh", "useless", "stuck"),
    "hap": ("glad", "lovely", "smile", "pleased", "sunny"),
    "neu": ("okay", "meeting", "tuesday", "address", "table"),
    "sad": ("miss", "lonely", "cry", "sorry", "funeral"),
}
FILLER_WORDS = ("i", "think", "that", "you", "really", "well", "so", "the", "it", "is", "and",
                "just", "we", "was", "about", "know")  # fmt: skip


@dataclass
class SyntheticUtterance:
    """One generated utterance.

    Attributes:
        id: utterance id.
        dialog: dialog name.
        label: its EmoEvaluation label (None for a transcription-only utterance).
        side: ``L`` or ``R``.
        start: start in seconds (as written to EmoEvaluation).
        end: end in seconds.
        text: the sentence written (None when the line holds non-UTF-8 bytes).
        expected_reason: the failure reason the builder must record, None when it must succeed.
    """

    id: str
    dialog: str
    label: str | None
    side: str
    start: float
    end: float
    text: str | None
    expected_reason: str | None = None

    @property
    def kept(self) -> bool:
        """Whether the builder writes it (a kept class, or a failure with no label)."""
        return self.label is None or self.label in CLASSES


@dataclass
class SyntheticTree:
    """What :func:`make_iemocap_tree` generated."""

    root: Path
    dialogs: list[str]
    utterances: list[SyntheticUtterance]
    fps: float
    dialog_durations: dict[str, float] = field(default_factory=dict)
    noise_lines: int = 0

    def by_id(self) -> dict[str, SyntheticUtterance]:
        return {utterance.id: utterance for utterance in self.utterances}

    def expected_ok(self) -> list[SyntheticUtterance]:
        """Utterances the builder must write with status ok, sorted by id."""
        return sorted(
            (u for u in self.utterances if u.kept and u.expected_reason is None),
            key=lambda u: u.id,
        )

    def expected_failures(self) -> dict[str, str]:
        """id -> reason of every utterance the builder must write as failed."""
        return {
            u.id: u.expected_reason
            for u in self.utterances
            if u.kept and u.expected_reason is not None
        }


def astronaut_face() -> np.ndarray:
    """(170, 150, 3) uint8 RGB: the face region of scikit-image's astronaut photograph."""
    try:
        from skimage import data
    except ImportError as error:
        raise ImportError(
            "the synthetic IEMOCAP tree needs scikit-image (a dev dependency): run it with "
            "`uv run` from the repository, or install the `dev` extra"
        ) from error
    return np.ascontiguousarray(data.astronaut()[20:190, 150:300])


def _sentence(label: str, rng: np.random.Generator) -> str:
    words = list(rng.choice(FILLER_WORDS, size=int(rng.integers(3, 7))))
    own = CLASS_WORDS.get(label)
    if own is None:  # labels outside the classes get words of random classes
        own = CLASS_WORDS[CLASSES[int(rng.integers(len(CLASSES)))]]
    cues = list(rng.choice(own, size=int(rng.integers(1, 3)), replace=False))
    if rng.random() < 0.15:  # a misleading word keeps text from being trivially separable
        other = CLASS_WORDS[CLASSES[int(rng.integers(len(CLASSES)))]]
        cues.append(str(rng.choice(other)))
    for cue in cues:
        words.insert(int(rng.integers(len(words) + 1)), cue)
    sentence = " ".join(str(word) for word in words)
    return sentence[0].upper() + sentence[1:] + "."


def _labels(total: int, rng: np.random.Generator) -> list[str]:
    # Every label kind first (shuffled), then mostly kept classes.
    labels = list(rng.permutation(ALL_LABELS))[:total]
    others = [label for label in ALL_LABELS if label not in CLASSES]
    for _ in range(total - len(labels)):
        pool = CLASSES if rng.random() < 0.88 else others
        labels.append(str(pool[int(rng.integers(len(pool)))]))
    return [str(label) for label in labels]


def _write_video(
    path: Path,
    utterances: list[SyntheticUtterance],
    duration: float,
    fps: float,
    frame_size: tuple[int, int],
    face: np.ndarray,
    rng: np.random.Generator,
) -> None:
    height, width = frame_size
    half = width // 2
    face_h, face_w = round(height * 0.42), round(height * 0.42 * face.shape[1] / face.shape[0])
    face = cv2.resize(face, (face_w, face_h), interpolation=cv2.INTER_AREA).astype(np.float32)
    background = rng.integers(20, 90, size=(height, width, 3), dtype=np.uint8)
    noise_pool = rng.integers(0, 40, size=(6, height, width, 3), dtype=np.uint8)
    # Per utterance: tinted face and a jittered position inside the speaker's half.
    looks = []
    for utterance in utterances:
        tint = np.array(CLASS_TINTS.get(utterance.label or "", (1.0, 1.0, 1.0)), np.float32)
        gain = tint * rng.uniform(0.85, 1.15)
        image = np.clip(face * gain, 0, 255).astype(np.uint8)
        top = int(rng.integers(10, height - face_h - 10))
        left = int(rng.integers(15, half - face_w - 15)) + (0 if utterance.side == "L" else half)
        looks.append((utterance.start, utterance.end, image, top, left))
    # Decoders map a time to the nearest frame, up to half a frame away: show the face that long
    # around the utterance so every sampled frame of it has the face.
    slack = 0.5 / fps
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"XVID"), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write an XVID video to {path}")
    try:
        for index in range(math.ceil(duration * fps)):
            time = index / fps
            frame = background + noise_pool[index % len(noise_pool)]
            for start, end, image, top, left in looks:
                if start - slack <= time < end + slack:
                    frame[top : top + face_h, left : left + face_w] = image
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()


def _write_audio(
    path: Path, utterances: list[SyntheticUtterance], duration: float, rng: np.random.Generator
) -> None:
    samples = round(duration * SAMPLE_RATE)
    time = np.arange(samples) / SAMPLE_RATE
    audio = (rng.standard_normal((samples, 2)) * 0.01).astype(np.float32)
    for channel, phase in ((0, 0.0), (1, 1.3)):
        audio[:, channel] += 0.03 * np.sin(2 * np.pi * LISTENER_HUM_HZ * time + phase)
    for utterance in utterances:
        channel = 0 if utterance.side == "L" else 1
        first, last = round(utterance.start * SAMPLE_RATE), round(utterance.end * SAMPLE_RATE)
        if last > samples:
            continue
        segment = time[first:last] - utterance.start
        tone = CLASS_TONES[utterance.label or "xxx"] * rng.uniform(0.97, 1.03)
        envelope = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(2.0, 4.0) * segment)
        audio[first:last, channel] += (
            rng.uniform(0.25, 0.4) * envelope * np.sin(2 * np.pi * tone * segment)
        ).astype(np.float32)
    soundfile.write(str(path), np.clip(audio, -1, 1), SAMPLE_RATE, subtype="PCM_16")


def _emo_line(utterance: SyntheticUtterance) -> str:
    return (
        f"[{utterance.start:.4f} - {utterance.end:.4f}]\t{utterance.id}\t{utterance.label}\t"
        "[2.5000, 3.0000, 2.5000]\n"
        "C-E2:\tNeutral;\t()\nC-E3:\tNeutral; Frustration;\t()\n"
        "A-E3:\tval 3; act 2; dom  2;\t()\nA-E4:\tval 2; act 3; dom  3;\t(tired)\n\n"
    )


def _transcription_line(utterance: SyntheticUtterance, text: bytes) -> bytes:
    times = f"[{utterance.start:08.4f}-{utterance.end:08.4f}]"
    return f"{utterance.id} {times}: ".encode() + text + b"\n"


def make_iemocap_tree(
    root: str | Path,
    *,
    sessions: int = 2,
    dialogs_per_session: int = 2,
    utterances_per_dialog: int = 8,
    seed: int = 0,
    duration: tuple[float, float] = (1.0, 2.2),
    fps: float = 10.0,
    frame_size: tuple[int, int] = (240, 360),
    inject_bad: bool = False,
) -> SyntheticTree:
    """Write a miniature IEMOCAP release under ``root``.

    Args:
        root: the folder playing ``IEMOCAP_full_release``.
        sessions: number of ``SessionK`` folders.
        dialogs_per_session: dialogs per session; dialog letters alternate F, M.
        utterances_per_dialog: utterances per dialog, speakers alternating.
        seed: random seed (the same seed writes the same tree).
        duration: range of utterance durations in seconds.
        fps: video frame rate.
        frame_size: (height, width) of the side-by-side frames.
        inject_bad: add one of each bad input (needs at least 4 dialogs): a missing video, a corrupt
            video, a corrupt audio file, and in the first dialog an utterance only in the
            transcription, one only in EmoEvaluation, one with times outside the media, one with
            empty text and one with non-UTF-8 bytes.

    Returns:
        A description of every utterance, with the failure reason expected for the bad ones.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    n_dialogs = sessions * dialogs_per_session
    if inject_bad and (n_dialogs < 4 or utterances_per_dialog < 6):
        raise ValueError("inject_bad needs at least 4 dialogs of at least 6 utterances")
    face = astronaut_face()
    labels = iter(_labels(n_dialogs * utterances_per_dialog, rng))
    tree = SyntheticTree(root=root, dialogs=[], utterances=[], fps=fps)
    plans = []
    for session in range(1, sessions + 1):
        for index in range(dialogs_per_session):
            letter = "FM"[index % 2]
            dialog = f"Ses{session:02d}{letter}_impro{index + 1:02d}"
            counters = {"F": 0, "M": 0}
            utterances = []
            time = 0.4
            for turn in range(utterances_per_dialog):
                speaker = "FM"[(turn + int(rng.integers(2)) * (turn % 3 == 2)) % 2]
                length = float(rng.uniform(*duration))
                label = next(labels)
                utterances.append(
                    SyntheticUtterance(
                        id=f"{dialog}_{speaker}{counters[speaker]:03d}",
                        dialog=dialog,
                        label=label,
                        side="L" if speaker == letter else "R",
                        start=round(time, 4),
                        end=round(time + length, 4),
                        text=_sentence(label, rng),
                    )
                )
                counters[speaker] += 1
                time += length + float(rng.uniform(0.2, 0.5))
            tree.dialogs.append(dialog)
            tree.dialog_durations[dialog] = round(time + 0.3, 4)
            plans.append((session, dialog, utterances))

    bad_lines: dict[str, bytes] = {}
    if inject_bad:
        first_dialog = plans[0][2]
        kept = [u for u in first_dialog if u.label in CLASSES]
        if len(kept) < 4:  # guarantee enough kept labels to spoil
            for utterance in first_dialog[:4]:
                utterance.label = "neu"
            kept = [u for u in first_dialog if u.label in CLASSES]
        kept[0].expected_reason = REASON_NOT_IN_TRANSCRIPTION
        kept[1].expected_reason = REASON_OUTSIDE_MEDIA
        duration_0 = tree.dialog_durations[plans[0][1]]
        kept[1].start, kept[1].end = round(duration_0 + 5.0, 4), round(duration_0 + 6.5, 4)
        kept[2].expected_reason, kept[2].text = REASON_EMPTY_TEXT, ""
        bad_lines[kept[2].id] = b""
        kept[3].expected_reason, kept[3].text = REASON_NOT_UTF8, None
        bad_lines[kept[3].id] = b"caf\xe9 \xff\xfe broken"
        extra = first_dialog[-1]
        orphan = SyntheticUtterance(
            id=f"{extra.dialog}_F{90:03d}",
            dialog=extra.dialog,
            label=None,
            side="L" if extra.dialog[5] == "F" else "R",
            start=extra.end + 0.1,
            end=extra.end + 0.2,
            text="A line the annotators never labelled.",
            expected_reason=REASON_NOT_IN_LABELS,
        )
        tree.utterances.append(orphan)
        for (_, _, utterances), reason in zip(
            plans[-3:],
            (REASON_CORRUPT_AUDIO, REASON_CORRUPT_VIDEO, REASON_MISSING_VIDEO),
            strict=True,
        ):
            for utterance in utterances:
                utterance.expected_reason = reason

    for session, dialog, utterances in plans:
        folder = root / f"Session{session}" / "dialog"
        for sub in ("avi/DivX", "wav", "transcriptions", "EmoEvaluation"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        length = tree.dialog_durations[dialog]
        in_media = [u for u in utterances if u.end <= length]
        video = folder / "avi" / "DivX" / f"{dialog}.avi"
        audio = folder / "wav" / f"{dialog}.wav"
        reasons = {u.expected_reason for u in utterances}
        if REASON_MISSING_VIDEO not in reasons:
            if REASON_CORRUPT_VIDEO in reasons:
                video.write_bytes(b"RIFF\x00\x00\x00\x00AVI LIST" + rng.bytes(2048))
            else:
                _write_video(video, in_media, length, fps, frame_size, face, rng)
        if REASON_CORRUPT_AUDIO in reasons:
            audio.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + rng.bytes(512))
        else:
            _write_audio(audio, in_media, length, rng)

        emo = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"
        emo += "".join(_emo_line(u) for u in utterances)
        (folder / "EmoEvaluation" / f"{dialog}.txt").write_text(emo, encoding="utf-8")
        lines = [f"{dialog} [000.0000-000.3000]: [BREATHING]\n".encode()]
        tree.noise_lines += 1
        for utterance in utterances:
            if utterance.expected_reason == REASON_NOT_IN_TRANSCRIPTION:
                continue
            text = bad_lines.get(utterance.id, (utterance.text or "").encode())
            lines.append(_transcription_line(utterance, text))
            if utterance is utterances[len(utterances) // 2]:
                lines.append(f"{dialog}_MX [{utterance.end:08.4f}-{utterance.end + 0.1:08.4f}]: "
                             "[LAUGHTER]\n".encode())  # fmt: skip
                tree.noise_lines += 1
        for orphan in tree.utterances:
            if orphan.dialog == dialog:
                lines.append(_transcription_line(orphan, (orphan.text or "").encode()))
        (folder / "transcriptions" / f"{dialog}.txt").write_bytes(b"".join(lines))
        tree.utterances.extend(utterances)
    tree.utterances.sort(key=lambda u: u.id)
    return tree
