import json
import shutil

import pytest
import torch

from mesm.data.dataset import ProcessedDataset
from mesm.data.format import FORMAT_FILE, FormatError, read_manifest


@pytest.fixture()
def copy(built_iemocap, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(built_iemocap.out, out)
    return out


def test_items_follow_the_contract(built_iemocap):
    records = [r for r in read_manifest(built_iemocap.out) if r.status == "ok"]
    for split in ("train", "valid", "test"):
        dataset = ProcessedDataset(built_iemocap.out, split)
        assert len(dataset) == sum(r.split == split for r in records)
        assert dataset.classes == ("ang", "exc", "fru", "hap", "neu", "sad")
        for index in range(len(dataset)):
            item = dataset[index]
            record = dataset.records[index]
            assert item["id"] == record.id and item["text"] == record.text
            assert item["faces"].dtype == torch.uint8
            assert item["faces"].shape == (record.n_frames, 3, 48, 48)
            assert item["audio"].dtype == torch.float32
            assert item["audio"].shape == (record.n_audio_chunks, 1, 128, 32)
            assert item["labels"].dtype == torch.float32
            assert item["labels"].tolist() == [float(c in record.labels) for c in dataset.classes]


def test_only_ok_records_of_the_split(built_iemocap):
    dataset = ProcessedDataset(built_iemocap.out, "train")
    assert dataset.records and all(r.status == "ok" and r.split == "train" for r in dataset.records)


def test_class_subset_and_order(built_iemocap):
    dataset = ProcessedDataset(built_iemocap.out, "train", classes=["sad", "ang"])
    matrix = dataset.label_matrix()
    assert matrix.shape == (len(dataset), 2)
    expected = [[float("sad" in r.labels), float("ang" in r.labels)] for r in dataset.records]
    assert matrix.tolist() == expected
    with pytest.raises(ValueError, match="joy"):
        ProcessedDataset(built_iemocap.out, "train", classes=["joy"])


def test_frame_interval_subsamples_stored_frames(built_iemocap):
    every = ProcessedDataset(built_iemocap.out, "train")
    strided = ProcessedDataset(built_iemocap.out, "train", frame_interval_ms=1000)
    for index in range(len(every)):
        assert torch.equal(strided[index]["faces"], every[index]["faces"][::2])
    with pytest.raises(ValueError, match="500 ms"):
        ProcessedDataset(built_iemocap.out, "train", frame_interval_ms=750)
    with pytest.raises(ValueError, match="multiple"):
        ProcessedDataset(built_iemocap.out, "train", frame_interval_ms=100)


def test_missing_and_corrupt_npz_errors_name_the_file(copy):
    dataset = ProcessedDataset(copy, "train")
    first, second = dataset.records[0].id, dataset.records[1].id
    (copy / "utterances" / f"{first}.npz").unlink()
    with pytest.raises(FormatError, match=f"{first}.npz"):
        dataset[0]
    (copy / "utterances" / f"{second}.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(FormatError, match=f"corrupt utterance file .*{second}.npz"):
        dataset[1]


def test_format_version_mismatch_says_what_differs(copy):
    info = json.loads((copy / FORMAT_FILE).read_text())
    info["format_version"] = 7
    (copy / FORMAT_FILE).write_text(json.dumps(info))
    with pytest.raises(FormatError, match="format_version 7 but this code reads version 1"):
        ProcessedDataset(copy, "train")


def test_not_a_processed_folder(tmp_path):
    with pytest.raises(FormatError, match="format.json not found"):
        ProcessedDataset(tmp_path, "train")


def test_items_collate_into_a_batch(built_iemocap):
    from mesm.data.collate import pad_sequences

    dataset = ProcessedDataset(built_iemocap.out, "train")
    items = [dataset[index] for index in range(3)]
    padded = pad_sequences([item["audio"] for item in items])
    assert padded.mask.sum(1).tolist() == [len(item["audio"]) for item in items]
