from collections import Counter

import pytest

from mesm.data.build import (
    UNASSIGNED,
    BuildSummary,
    read_split_lists,
    stratified_split,
    summarise,
)
from mesm.data.format import UtteranceRecord


def test_stratified_split_is_deterministic_and_stratified():
    labels = {f"a{i:03d}": "ang" for i in range(100)} | {f"s{i:03d}": "sad" for i in range(50)}
    first = stratified_split(labels, seed=4)
    assert first == stratified_split(dict(reversed(list(labels.items()))), seed=4)
    assert first != stratified_split(labels, seed=5)
    per_class = Counter((labels[i], split) for i, split in first.items())
    assert [per_class["ang", s] for s in ("train", "valid", "test")] == [70, 10, 20]
    assert [per_class["sad", s] for s in ("train", "valid", "test")] == [35, 5, 10]


def test_split_lists_are_read_and_duplicates_refused(tmp_path):
    (tmp_path / "train.txt").write_text("a\nb\n\n")
    (tmp_path / "valid.txt").write_text("c\n")
    (tmp_path / "test.txt").write_text("d\n")
    assert read_split_lists(tmp_path) == {"a": "train", "b": "train", "c": "valid", "d": "test"}
    (tmp_path / "test.txt").write_text("a\n")
    with pytest.raises(ValueError, match="a is in both train.txt and test.txt"):
        read_split_lists(tmp_path)
    (tmp_path / "valid.txt").unlink()
    with pytest.raises(FileNotFoundError, match="valid.txt"):
        read_split_lists(tmp_path)


def test_paper_split_lists_have_the_published_sizes():
    from mesm.data.iemocap import DEFAULT_SPLIT_DIR

    counts = Counter(read_split_lists(DEFAULT_SPLIT_DIR).values())
    assert counts == {"train": 5162, "valid": 737, "test": 1481}


def _record(uid: str, split: str, label: str, status: str = "ok", reason=None) -> UtteranceRecord:
    return UtteranceRecord(
        id=uid, dataset="x", split=split, labels=[label], text="t", start=0, end=1,
        status=status, reason=reason,
    )  # fmt: skip


def test_summary_counts_and_exit_codes():
    records = [
        _record("1", "train", "ang"),
        _record("2", "train", "sad"),
        _record("3", "test", "ang"),
        _record("4", UNASSIGNED, "ang"),
        _record("5", "train", "ang", "failed", "missing video"),
    ]
    summary = summarise(records, ["ang", "sad"])
    assert summary.counts == {
        "train": {"ang": 1, "sad": 1},
        "test": {"ang": 1, "sad": 0},
        UNASSIGNED: {"ang": 1, "sad": 0},
    }
    assert (summary.ok, summary.failed, summary.unassigned) == (4, 1, 1)
    assert summary.failures == {"missing video": 1}
    assert summary.exit_code() == 0 and summary.exit_code(strict=True) == 1
    assert BuildSummary().exit_code() == 1  # nothing built
    text = summary.format()
    assert "train: 2 (ang 1, sad 1)" in text and "missing video: 1" in text
