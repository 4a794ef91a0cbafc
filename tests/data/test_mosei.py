import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

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
    UNASSIGNED,
    BuildSummary,
)
from mesm.data.dataset import ProcessedDataset
from mesm.data.format import load_arrays, read_info, read_manifest
from mesm.data.mosei import (
    CLASSES,
    CSV_ANSWER_COLUMNS,
    PROBLEM_DUPLICATE_CLIP,
    PROBLEM_LABEL_FILE,
    PROBLEM_LABEL_ROW,
    PROBLEM_OTHER_VIDEO,
    PROBLEM_REJECTED,
    PROBLEM_TRANSCRIPT_LINE,
    PROBLEM_UNMATCHED_INTERVAL,
    binarise,
    build_mosei,
    parse_transcript,
    read_csd_labels,
    read_csv_labels,
    read_release,
    split_segment_id,
    video_split,
)
from mesm.data.synthetic_mosei import SyntheticMoseiTree, make_mosei_tree
from mesm.media.video import sample_times

FPS = 2.0


@dataclass
class BuiltMosei:
    tree: SyntheticMoseiTree
    out: Path
    summary: BuildSummary


@pytest.fixture(scope="module")
def mosei_tree(tmp_path_factory) -> SyntheticMoseiTree:
    return make_mosei_tree(
        tmp_path_factory.mktemp("raw") / "CMU_MOSEI",
        videos=4,
        segments_per_video=3,
        seed=5,
        duration=(0.8, 1.8),
        inject_bad=True,
    )


@pytest.fixture(scope="module")
def built(mosei_tree, tmp_path_factory) -> BuiltMosei:
    out = tmp_path_factory.mktemp("processed") / "mosei"
    summary = build_mosei(mosei_tree.root, out, resplit_seed=0, progress=False)
    return BuiltMosei(mosei_tree, out, summary)


def test_segment_ids_split_on_the_last_underscore():
    assert split_segment_id("-lzEya4AM_4_12") == ("-lzEya4AM_4", 12)
    assert split_segment_id("06st0Ez_E_I_0") == ("06st0Ez_E_I", 0)
    assert split_segment_id("100178_3") == ("100178", 3)
    for bad in ("abc", "abc_x", "_3"):
        with pytest.raises(ValueError, match="not a MOSEI segment id"):
            split_segment_id(bad)


def test_binarise_marks_scores_above_zero():
    assert binarise((0.0, 0.33, 0.0, 3.0, 0.0, 0.0)) == ["disgust", "happy"]
    assert binarise((0.0,) * 6) == []


def test_parse_transcript_lines(tmp_path):
    path = tmp_path / "a_b___c.txt"
    path.write_bytes(
        b"a_b___c___3___1.5___2.25___Well___ that is it.\r\n"
        b"a_b___c___10___2.5___4.0___  Ten  \n"
        b"a_b___c___3___9.0___9.5___duplicate of clip 3\n"
        b"other___1___0.0___1.0___another video\n"
        b"a_b___c___x___0.0___1.0___clip is not a number\n"
        b"a_b___c___4___0.0___1.0___caf\xe9\n"
        b"\n"
        b"garbage\n"
    )
    segments, problems = parse_transcript(path)
    assert sorted(segments) == [3, 4, 10]
    first = segments[3]
    assert (first.video_id, first.start, first.end) == ("a_b___c", 1.5, 2.25)
    assert first.text == "Well___ that is it."
    assert segments[10].text == "Ten"
    assert segments[4].text is None
    assert problems == {
        PROBLEM_DUPLICATE_CLIP: 1,
        PROBLEM_OTHER_VIDEO: 1,
        PROBLEM_TRANSCRIPT_LINE: 2,
    }


def test_csv_labels_average_accepted_answers(tmp_path):
    header = "Input.VIDEO_ID,Input.CLIP,AssignmentStatus," + ",".join(CSV_ANSWER_COLUMNS)
    (tmp_path / "b1.csv").write_text(
        f"{header}\n"
        "v_1,2,Approved,0,0,0,3,0,0\n"
        "v_1,2,Approved,0,0,0,0,0,1\n"
        "v_1,2,Rejected,3,3,3,3,3,3\n"
        "v_1,x,Approved,0,0,0,0,0,0\n"
        "100178,0,Submitted,0,0,0,0,0,0\n"
    )
    (tmp_path / "b2.csv").write_text(f"{header}\nv_1,2,Approved,0,0,0,0,0,,\n")
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    scores, problems = read_csv_labels(sorted(tmp_path.glob("*.csv")))
    assert scores == {("v_1", 2): (0.0, 0.0, 0.0, 1.5, 0.0, 0.5), ("100178", 0): (0.0,) * 6}
    assert problems == {PROBLEM_REJECTED: 1, PROBLEM_LABEL_ROW: 2, PROBLEM_LABEL_FILE: 1}


def test_a_file_that_is_not_a_computational_sequence_is_refused(tmp_path):
    import h5py

    path = tmp_path / "labels.csd"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("features", data=np.zeros((2, 7)))
    with pytest.raises(ValueError, match="not a CMU Multimodal SDK computational sequence"):
        read_csd_labels(path, {})


def test_both_label_sources_give_identical_labels(mosei_tree):
    from_csv = read_release(mosei_tree.root, label_source="csv")
    from_csd = read_release(mosei_tree.root, label_source="csd", csd_path=mosei_tree.csd)
    assert (from_csv.label_source, from_csd.label_source) == ("csv", "csd")
    csv_specs = {spec.id: spec for spec in from_csv.specs()}
    csd_specs = {spec.id: spec for spec in from_csd.specs()}
    # Only the labels of a clip without a transcript line differ: the .csd cannot name the clip.
    orphans = {s.id for s in mosei_tree.segments if not s.in_transcript}
    assert len(orphans) == 1 and csv_specs.keys() - csd_specs.keys() == orphans
    assert csd_specs.keys() <= csv_specs.keys()
    truth = mosei_tree.by_id()
    for segment_id, spec in csd_specs.items():
        assert spec.labels == csv_specs[segment_id].labels == truth[segment_id].labels
        assert spec.reason == csv_specs[segment_id].reason
    for key, scores in from_csd.scores.items():
        assert np.allclose(scores, from_csv.scores[key], atol=1e-6)
    assert from_csv.raw_problems == {
        PROBLEM_REJECTED: mosei_tree.rejected_answers,
        PROBLEM_TRANSCRIPT_LINE: mosei_tree.unparseable_lines,
    }
    assert from_csd.raw_problems == {
        PROBLEM_UNMATCHED_INTERVAL: 1,
        PROBLEM_TRANSCRIPT_LINE: mosei_tree.unparseable_lines,
    }
    # The rejected answer adds an emotion some segment does not have: ignoring it matters.
    assert mosei_tree.rejected_answers == 1


def test_auto_label_source_and_missing_labels(mosei_tree, tmp_path):
    assert read_release(mosei_tree.root).label_source == "csv"
    copy = tmp_path / "CMU_MOSEI"
    shutil.copytree(mosei_tree.root / "Raw" / "Transcript", copy / "Raw" / "Transcript")
    shutil.copy(mosei_tree.csd, copy)
    assert read_release(copy).label_source == "csd"
    (copy / mosei_tree.csd.name).unlink()
    with pytest.raises(FileNotFoundError, match="no labels"):
        read_release(copy)
    with pytest.raises(FileNotFoundError, match="pass the CMU_MOSEI folder"):
        read_release(tmp_path / "nowhere")


def test_video_split_keeps_each_video_in_one_split_and_fills_every_split():
    videos = [f"v{i}" for i in range(5)]
    split = video_split(reversed(videos), seed=3)
    assert split == video_split(videos, seed=3)
    assert Counter(split.values()) == {"train": 3, "valid": 1, "test": 1}
    many = video_split([f"v{i}" for i in range(100)], seed=0)
    assert Counter(many.values()) == {"train": 70, "valid": 10, "test": 20}


def test_cleaning_drops_each_bad_segment_with_its_reason(built):
    records = {r.id: r for r in read_manifest(built.out)}
    failed = {i: r.reason for i, r in records.items() if r.status == "failed"}
    assert failed == built.tree.expected_failures("csv")
    expected_reasons = {
        REASON_NOT_IN_LABELS, REASON_NOT_IN_TRANSCRIPTION, REASON_INVALID_TIMES,
        REASON_OUTSIDE_MEDIA, REASON_EMPTY_TEXT, REASON_NOT_UTF8, REASON_SILENT_AUDIO,
        REASON_NO_FACE, REASON_CORRUPT_VIDEO,
    }  # fmt: skip
    assert set(failed.values()) == expected_reasons
    summary = built.summary
    assert summary.failures == dict(Counter(failed.values()))
    assert summary.raw_problems == {PROBLEM_REJECTED: 1, PROBLEM_TRANSCRIPT_LINE: 1}
    assert summary.failed_in_splits == summary.failures  # --resplit assigns every video
    for record in records.values():
        if record.status == "failed":
            assert record.error and (record.id in record.error or "/" in record.error)
            assert not (built.out / "utterances" / f"{record.id}.npz").exists()
    text = summary.format()
    assert f"{REASON_NO_FACE}: 1" in text and f"{REASON_SILENT_AUDIO}: 1" in text
    assert summary.exit_code() == 0 and summary.exit_code(strict=True) == 1


def test_kept_segments_have_multi_hot_labels(built):
    tree = built.tree
    info = read_info(built.out)
    assert (info.dataset, info.classes, info.fps) == ("mosei", list(CLASSES), FPS)
    records = {r.id: r for r in read_manifest(built.out) if r.status == "ok"}
    assert sorted(records) == [s.id for s in tree.expected_ok()]
    for segment in tree.expected_ok():
        record = records[segment.id]
        assert record.labels == segment.labels
        assert (record.text, record.start, record.end) == (segment.text, segment.start, segment.end)
        assert record.side is None and record.source == segment.video_id
    served = 0
    for split in ("train", "valid", "test"):
        dataset = ProcessedDataset(built.out, split)
        for index, record in enumerate(dataset.records):
            truth = torch.tensor([float(c in record.labels) for c in CLASSES])
            assert torch.equal(dataset.label_matrix()[index], truth)
        served += len(dataset)
        if len(dataset):
            assert torch.equal(dataset[0]["labels"], dataset.label_matrix()[0])
    assert served == len(records)
    per_segment = Counter(len(s.labels) for s in tree.expected_ok())
    assert per_segment[0] >= 1 and max(per_segment) >= 2  # none and several labels both kept
    summary = built.summary
    assert sum(summary.totals.values()) == summary.ok == len(records)
    assert sum(summary.unlabelled.values()) == per_segment[0]


def test_splits_hold_whole_videos(built):
    split_of_video: dict[str, set[str]] = {}
    for record in read_manifest(built.out):
        split_of_video.setdefault(record.source, set()).add(record.split)
    assert all(len(splits) == 1 for splits in split_of_video.values())
    ok_splits = {r.split for r in read_manifest(built.out) if r.status == "ok"}
    assert ok_splits == {"train", "valid", "test"}


def test_frames_are_sampled_at_the_stored_rate_and_times(built):
    tree = built.tree
    truth = tree.by_id()
    correlations = []
    for record in read_manifest(built.out):
        if record.status != "ok":
            continue
        faces, audio = load_arrays(built.out, record.id)
        times = sample_times(record.start, record.end, FPS)
        assert record.n_frames == len(times) == len(faces)
        # The face is on screen only while its segment is spoken: every sampled frame shows it.
        assert record.n_faces_detected == record.n_frames
        assert faces.shape[1:] == (3, 48, 48) and audio.shape[1:] == (1, 128, 32)
        # Its brightness ramps through the segment: the crops follow the sampled times' ramp.
        brightness = faces.reshape(len(faces), -1).mean(axis=1)
        expected = [tree.face_gain(truth[record.id], time) for time in times]
        if len(times) >= 3:
            correlations.append(float(np.corrcoef(brightness, expected)[0, 1]))
        assert brightness[-1] > brightness[0] or len(times) == 1
    assert correlations and min(correlations) > 0.9
    # A 1000 ms interval keeps every other stored 500 ms frame.
    dataset = ProcessedDataset(built.out, "train", frame_interval_ms=1000)
    faces, _ = load_arrays(built.out, dataset.records[0].id)
    assert torch.equal(dataset[0]["faces"], torch.from_numpy(faces[::2].copy()))


def test_resume_rebuilds_only_what_is_missing(built, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(built.out, out)
    ok = sorted(r.id for r in read_manifest(out) if r.status == "ok")
    (out / "records" / f"{ok[0]}.json").unlink()
    (out / "utterances" / f"{ok[1]}.npz").unlink()
    summary = build_mosei(built.tree.root, out, resplit_seed=0, progress=False)
    failed = len(built.tree.expected_failures("csv"))
    assert summary.built == 2 + failed and summary.skipped == len(ok) - 2
    assert [(r.id, r.status) for r in read_manifest(out)] == [
        (r.id, r.status) for r in read_manifest(built.out)
    ]


def test_split_lists_report_dropped_and_unlisted_segments(built, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(built.out, out)
    ok = sorted(r.id for r in read_manifest(out) if r.status == "ok")
    failures = built.tree.expected_failures("csv")
    dropped = sorted(failures)[:2]
    split_dir = tmp_path / "splits"
    split_dir.mkdir()
    (split_dir / "train.txt").write_text("\n".join([*ok[:2], dropped[0]]) + "\n")
    (split_dir / "valid.txt").write_text(f"{ok[2]}\nabsent_video_0\n")
    (split_dir / "test.txt").write_text(f"{dropped[1]}\n")
    summary = build_mosei(built.tree.root, out, split_dir=split_dir, progress=False)
    assert summary.skipped == len(ok)
    assert summary.failed_in_splits == dict(Counter(failures[i] for i in dropped))
    assert summary.unassigned == len(ok) - 3
    assert summary.missing_from_raw == 1
    splits = {r.id: r.split for r in read_manifest(out)}
    assert [splits[i] for i in (*ok[:3], *dropped)] == ["train", "train", "valid", "train", "test"]
    assert {splits[i] for i in ok[3:]} == {UNASSIGNED}
    text = summary.format()
    assert "failed utterances that a split names (dropped from it): 2" in text
    assert f"utterances in no split list (written as 'unassigned'): {len(ok) - 3}" in text
