import json

import numpy as np
import pytest

from mesm.data.format import (
    FORMAT_VERSION,
    MANIFEST_FILE,
    FormatError,
    FormatInfo,
    ProcessedWriter,
    UtteranceRecord,
    load_arrays,
    read_info,
    read_manifest,
    utterance_path,
)


def _info(fps: float = 2.0) -> FormatInfo:
    return FormatInfo(dataset="toy", classes=["a", "b"], fps=fps, mel={"n_mels": 128})


def _record(utterance_id: str) -> UtteranceRecord:
    return UtteranceRecord(
        id=utterance_id, dataset="toy", split="train", labels=["a"], text="hi", start=0.0, end=1.0
    )


def _arrays(frames: int = 2, chunks: int = 3) -> tuple[np.ndarray, np.ndarray]:
    faces = np.arange(frames * 3 * 48 * 48, dtype=np.int64).reshape(frames, 3, 48, 48) % 256
    audio = np.linspace(-13.8, 5.0, chunks * 128 * 32, dtype=np.float32).reshape(chunks, 1, 128, 32)
    return faces.astype(np.uint8), audio


def test_round_trip_and_manifest_sorted(tmp_path):
    writer = ProcessedWriter(tmp_path, _info())
    faces, audio = _arrays()
    for utterance_id in ("u2", "u1"):
        writer.write_utterance(_record(utterance_id), faces, audio)
    writer.write_failure(_record("u0"), "missing video", "no file x.avi")
    records = writer.write_manifest()
    assert [r.id for r in records] == ["u0", "u1", "u2"]
    assert [r.id for r in read_manifest(tmp_path)] == ["u0", "u1", "u2"]
    stored = read_manifest(tmp_path)[1]
    assert (stored.n_frames, stored.n_audio_chunks, stored.status) == (2, 3, "ok")
    loaded_faces, loaded_audio = load_arrays(tmp_path, "u1")
    assert np.array_equal(loaded_faces, faces)
    assert loaded_audio.dtype == np.float32
    assert np.allclose(loaded_audio, audio, atol=0.01)  # float16 on disk
    assert read_info(tmp_path).format_version == FORMAT_VERSION
    assert json.loads((tmp_path / MANIFEST_FILE).read_text().splitlines()[0])["reason"] == (
        "missing video"
    )


def test_finished_needs_an_ok_record_and_its_npz(tmp_path):
    writer = ProcessedWriter(tmp_path, _info())
    writer.write_utterance(_record("u1"), *_arrays())
    assert writer.finished("u1") is not None
    utterance_path(tmp_path, "u1").unlink()
    assert writer.finished("u1") is None
    writer.write_failure(_record("u2"), "corrupt audio", "bad")
    assert writer.finished("u2") is None
    (tmp_path / "records" / "u3.json").write_text("{truncated")
    assert writer.finished("u3") is None


def test_failure_after_success_removes_the_arrays(tmp_path):
    writer = ProcessedWriter(tmp_path, _info())
    writer.write_utterance(_record("u1"), *_arrays())
    writer.write_failure(_record("u1"), "corrupt video", "bad")
    assert not utterance_path(tmp_path, "u1").exists()
    assert writer.read_record("u1").status == "failed"


def test_other_parameters_are_refused_with_the_difference(tmp_path):
    ProcessedWriter(tmp_path, _info(fps=2.0))
    ProcessedWriter(tmp_path, _info(fps=2.0))  # same parameters: resumable
    with pytest.raises(FormatError, match=r"fps: 2.0 != 1.0"):
        ProcessedWriter(tmp_path, _info(fps=1.0))


def test_unsafe_ids_and_wrong_dtypes_are_rejected(tmp_path):
    writer = ProcessedWriter(tmp_path, _info())
    with pytest.raises(ValueError, match="file name"):
        writer.write_utterance(_record("../escape"), *_arrays())
    faces, audio = _arrays()
    with pytest.raises(ValueError, match="uint8"):
        writer.write_utterance(_record("u1"), faces.astype(np.float32), audio)


def test_reader_errors_name_the_file(tmp_path):
    ProcessedWriter(tmp_path, _info())
    with pytest.raises(FormatError, match="manifest.jsonl not found"):
        read_manifest(tmp_path)
    good = json.dumps(_record("u1").to_dict())
    (tmp_path / MANIFEST_FILE).write_text(good + "\nnot json\n")
    with pytest.raises(FormatError, match="manifest.jsonl line 2 is not a valid record"):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST_FILE).write_text('{"id": "u1"}\n')
    with pytest.raises(FormatError, match="line 1 .*missing"):
        read_manifest(tmp_path)
    np.savez(utterance_path(tmp_path, "u9"), faces=np.zeros((1, 3, 48, 48), np.uint8))
    with pytest.raises(FormatError, match=r"u9.npz lacks array\(s\) \['audio'\]"):
        load_arrays(tmp_path, "u9")
