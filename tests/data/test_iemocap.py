import json
import math
import shutil
import time
from collections import Counter

import numpy as np
import pytest
import torch

from mesm.data.build import UNASSIGNED
from mesm.data.format import MANIFEST_FILE, FormatError, load_arrays, read_manifest
from mesm.data.iemocap import (
    CLASSES,
    build_iemocap,
    dialog_utterances,
    find_dialogs,
    parse_emo_evaluation,
    parse_transcription,
    speaker_side,
)
from mesm.data.synthetic import CLASS_TONES, LISTENER_HUM_HZ
from mesm.media.audio import hz_to_mel, mel_to_hz
from mesm.media.video import sample_times

EMO = (
    "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"
    "[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]\n"
    "C-E2:\tNeutral;\t()\nA-E3:\tval 3; act 2; dom  2;\t()\n\n"
    "[10.0100 - 11.3925]\tSes01F_impro01_M000\txxx\t[2.0000, 3.0000, 3.5000]\n"
    "C-E1:\tFrustration;\t()\n\n"
)


def test_speaker_side_follows_the_dialog_letter():
    assert speaker_side("Ses01F_impro01_F000") == "L"
    assert speaker_side("Ses01F_impro01_M003") == "R"
    assert speaker_side("Ses03M_script01_1_M012") == "L"
    assert speaker_side("Ses03M_script01_1_F012") == "R"
    with pytest.raises(ValueError, match="speaker part"):
        speaker_side("Ses01F_impro01")


def test_parse_emo_evaluation_reads_first_lines_and_ignores_annotators(tmp_path):
    path = tmp_path / "emo.txt"
    path.write_text(EMO)
    entries = parse_emo_evaluation(path)
    assert sorted(entries) == ["Ses01F_impro01_F000", "Ses01F_impro01_M000"]
    first = entries["Ses01F_impro01_F000"]
    assert (first.start, first.end, first.label) == (6.2901, 8.2357, "neu")
    assert entries["Ses01F_impro01_M000"].label == "xxx"


def test_parse_transcription_skips_noise_lines_and_flags_bad_bytes(tmp_path):
    path = tmp_path / "text.txt"
    path.write_bytes(
        b"Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me.\n"
        b"Ses01F_impro01 [008.0000-008.5000]: [BREATHING]\n"
        b"Ses01F_impro01_MXX [008.6000-008.7000]: [LAUGHTER]\n"
        b"Ses01F_impro01_M000 [010.0100-011.3925]: Do you \xff have\n"
        b"Ses01F_impro01_F001 [012.0000-013.0000]:\n"
    )
    entries = parse_transcription(path)
    assert sorted(entries) == ["Ses01F_impro01_F000", "Ses01F_impro01_F001", "Ses01F_impro01_M000"]
    assert entries["Ses01F_impro01_F000"].text == "Excuse me."
    assert entries["Ses01F_impro01_M000"].text is None
    assert entries["Ses01F_impro01_F001"].text == ""


def test_dialog_parsing_matches_the_generated_tree(iemocap_tree):
    dialogs = find_dialogs(iemocap_tree.root)
    assert [d.name for d in dialogs] == sorted(iemocap_tree.dialogs)
    expected = iemocap_tree.by_id()
    for dialog in dialogs:
        specs, _ = dialog_utterances(dialog, CLASSES)
        for spec in specs:
            truth = expected[spec.id]
            assert spec.side == truth.side
            assert spec.channel == (0 if truth.side == "L" else 1)
            assert spec.x_range == ((0.0, 0.5) if truth.side == "L" else (0.5, 1.0))
            if truth.label is not None:
                assert (spec.start, spec.end, spec.labels) == (
                    truth.start,
                    truth.end,
                    [truth.label],
                )


def test_kept_ids_labels_and_sides(built_iemocap):
    tree = built_iemocap.tree
    records = {r.id: r for r in read_manifest(built_iemocap.out)}
    ok = {i: r for i, r in records.items() if r.status == "ok"}
    assert sorted(ok) == [u.id for u in tree.expected_ok()]
    for utterance in tree.expected_ok():
        record = ok[utterance.id]
        assert record.labels == [utterance.label]
        assert record.side == utterance.side
        assert record.text == utterance.text
        assert (record.start, record.end) == (utterance.start, utterance.end)
    # Labels outside the six classes are counted, never written.
    excluded = Counter(u.label for u in tree.utterances if u.label and u.label not in CLASSES)
    assert built_iemocap.summary.excluded_labels == dict(excluded)
    assert not any(set(r.labels) - set(CLASSES) for r in records.values())
    assert {u.side for u in tree.expected_ok()} == {"L", "R"}


def test_every_injected_bad_input_fails_with_its_reason(built_iemocap):
    records = {r.id: r for r in read_manifest(built_iemocap.out)}
    failed = {i: r.reason for i, r in records.items() if r.status == "failed"}
    assert failed == built_iemocap.tree.expected_failures()
    assert len(set(failed.values())) == 8
    for record in records.values():
        if record.status == "failed":
            assert record.error and record.id in record.error or str(record.error).count("/") > 0
            assert not (built_iemocap.out / "utterances" / f"{record.id}.npz").exists()
    summary = built_iemocap.summary
    assert summary.failures == dict(Counter(failed.values()))
    assert summary.exit_code() == 0 and summary.exit_code(strict=True) == 1


def test_manifest_schema(built_iemocap):
    lines = (built_iemocap.out / MANIFEST_FILE).read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    assert [row["id"] for row in rows] == sorted(row["id"] for row in rows)
    types = {
        "id": str, "dataset": str, "split": str, "labels": list, "text": str, "start": float,
        "end": float, "side": str, "n_frames": int, "n_faces_detected": int,
        "n_audio_chunks": int, "status": str,
    }  # fmt: skip
    for row in rows:
        for key, kind in types.items():
            assert isinstance(row[key], kind), (key, row)
        assert row["dataset"] == "iemocap"
        assert row["side"] in ("L", "R")
        assert row["status"] in ("ok", "failed")
        # --resplit assigns every labelled utterance; one with no label cannot be stratified.
        assert row["split"] in (("train", "valid", "test") if row["labels"] else (UNASSIGNED,))
        assert (row["error"] is None) == (row["status"] == "ok")


def test_frames_faces_and_chunk_counts(built_iemocap):
    detected = frames = 0
    for record in read_manifest(built_iemocap.out):
        if record.status != "ok":
            continue
        faces, audio = load_arrays(built_iemocap.out, record.id)
        assert record.n_frames == len(sample_times(record.start, record.end, 2.0)) == len(faces)
        # The real face is in every speaking frame of the speaker's half (the other half holds
        # only noise), so MTCNN finds it: some detection per utterance, nearly every frame.
        assert 0 < record.n_faces_detected <= record.n_frames
        detected, frames = detected + record.n_faces_detected, frames + record.n_frames
        samples = round((record.end - record.start) * 16000)
        assert record.n_audio_chunks == math.ceil((1 + samples // 200) / 32) == len(audio)
        assert faces.shape[1:] == (3, 48, 48) and audio.shape[1:] == (1, 128, 32)
    assert detected >= 0.9 * frames


def _bin_of(frequency: float) -> int:
    low, high = hz_to_mel(torch.tensor([0.0, 8000.0], dtype=torch.float64))
    centres = mel_to_hz(torch.linspace(float(low), float(high), 130, dtype=torch.float64))[1:-1]
    return int((centres - frequency).abs().argmin())


def test_audio_comes_from_the_speakers_channel(built_iemocap):
    # The speaker's channel carries the class tone; the other channel only a 7 kHz hum and noise.
    for record in read_manifest(built_iemocap.out):
        if record.status != "ok":
            continue
        _, audio = load_arrays(built_iemocap.out, record.id)
        profile = audio[:, 0].transpose(1, 0, 2).reshape(128, -1).max(axis=1)  # (F,)
        tone = _bin_of(CLASS_TONES[record.labels[0]])
        assert abs(int(np.argmax(profile)) - tone) <= 2, record.id
        assert profile[tone] > profile[_bin_of(LISTENER_HUM_HZ)] + 3.0


def test_resume_rebuilds_only_what_is_missing(built_iemocap, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(built_iemocap.out, out)
    ok = sorted(r.id for r in read_manifest(out) if r.status == "ok")
    # An interruption: one record lost, one npz written but its record not yet, a stray temp file.
    (out / "records" / f"{ok[0]}.json").unlink()
    (out / "records" / f"{ok[1]}.json").unlink()
    (out / "utterances" / f"{ok[1]}.npz").unlink()
    (out / "utterances" / ".stray.npz.tmp").write_bytes(b"partial")
    (out / MANIFEST_FILE).unlink()
    started = time.perf_counter()
    summary = build_iemocap(built_iemocap.tree.root, out, resplit_seed=0, progress=False)
    elapsed = time.perf_counter() - started
    failed = len(built_iemocap.tree.expected_failures())
    # Failed utterances are retried; finished ones are skipped.
    assert summary.built == 2 + failed
    assert summary.skipped == len(ok) - 2
    assert summary.ok == len(ok)
    assert [r.id for r in read_manifest(out)] == [r.id for r in read_manifest(built_iemocap.out)]
    assert elapsed < 10.0


def test_new_split_refreshes_records_without_reprocessing(built_iemocap, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(built_iemocap.out, out)
    split_dir = tmp_path / "splits"
    split_dir.mkdir()
    ok = sorted(r.id for r in read_manifest(out) if r.status == "ok")
    (split_dir / "train.txt").write_text("\n".join(ok[:3]) + "\nSes09F_impro01_F000\n")
    (split_dir / "valid.txt").write_text(ok[3] + "\n")
    (split_dir / "test.txt").write_text("Ses09F_impro01_M000\nSes09F_impro01_M001\n")
    summary = build_iemocap(built_iemocap.tree.root, out, split_dir=split_dir, progress=False)
    assert summary.skipped == len(ok) and summary.built == len(
        built_iemocap.tree.expected_failures()
    )
    assert summary.missing_from_raw == 3
    assert summary.unassigned == len(ok) - 4
    splits = {r.id: r.split for r in read_manifest(out) if r.status == "ok"}
    assert [splits[i] for i in ok[:4]] == ["train", "train", "train", "valid"]
    assert set(splits[i] for i in ok[4:]) == {UNASSIGNED}
    assert "split-list ids absent from the raw data: 3" in summary.format()


def test_limit_builds_the_first_utterances_only(built_iemocap, tmp_path):
    summary = build_iemocap(
        built_iemocap.tree.root, tmp_path / "limited", resplit_seed=0, limit=3, progress=False
    )
    records = read_manifest(tmp_path / "limited")
    assert len(records) == 3 and summary.ok + summary.failed == 3


def test_other_parameters_on_the_same_folder_are_refused(built_iemocap):
    with pytest.raises(FormatError, match="fps"):
        build_iemocap(built_iemocap.tree.root, built_iemocap.out, fps=1.0, progress=False)


def test_missing_release_folder_says_what_to_pass(tmp_path):
    with pytest.raises(FileNotFoundError, match="IEMOCAP_full_release"):
        build_iemocap(tmp_path, tmp_path / "out", progress=False)
