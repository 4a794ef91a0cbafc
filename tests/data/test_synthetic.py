import cv2
import numpy as np
import pytest
import soundfile

from mesm.data.iemocap import ALL_LABELS, CLASSES
from mesm.data.synthetic import CLASS_WORDS, make_iemocap_tree


def test_tree_has_the_official_layout_and_every_label_kind(iemocap_tree):
    root = iemocap_tree.root
    assert sorted(p.name for p in root.iterdir()) == ["Session1", "Session2"]
    labels = {u.label for u in iemocap_tree.utterances if u.label}
    assert labels == set(ALL_LABELS)
    assert {u.side for u in iemocap_tree.utterances} == {"L", "R"}
    assert iemocap_tree.noise_lines >= len(iemocap_tree.dialogs)
    dialog = iemocap_tree.dialogs[0]
    folder = root / "Session1" / "dialog"
    assert (folder / "avi" / "DivX" / f"{dialog}.avi").is_file()
    assert (folder / "wav" / f"{dialog}.wav").is_file()
    assert (folder / "transcriptions" / f"{dialog}.txt").is_file()
    assert (folder / "EmoEvaluation" / f"{dialog}.txt").read_text().startswith("% [START_TIME")


def test_media_sizes_and_stereo_channels_differ(iemocap_tree):
    session, dialog = "Session1", iemocap_tree.dialogs[1]
    folder = iemocap_tree.root / session / "dialog"
    capture = cv2.VideoCapture(str(folder / "avi" / "DivX" / f"{dialog}.avi"))
    assert capture.get(cv2.CAP_PROP_FPS) == iemocap_tree.fps
    assert (capture.get(cv2.CAP_PROP_FRAME_HEIGHT), capture.get(cv2.CAP_PROP_FRAME_WIDTH)) == (
        240,
        360,
    )
    capture.release()
    audio, rate = soundfile.read(str(folder / "wav" / f"{dialog}.wav"))
    assert rate == 16000 and audio.shape[1] == 2
    assert np.abs(audio[:, 0] - audio[:, 1]).mean() > 0.01


def test_text_carries_class_words(iemocap_tree):
    for utterance in iemocap_tree.expected_ok():
        words = utterance.text.lower().rstrip(".").split()
        assert set(words) & set(CLASS_WORDS[utterance.label]), utterance.text


def test_same_seed_same_tree(tmp_path):
    first = make_iemocap_tree(tmp_path / "a", sessions=1, dialogs_per_session=1, seed=9)
    second = make_iemocap_tree(tmp_path / "b", sessions=1, dialogs_per_session=1, seed=9)
    strip = [(u.id, u.label, u.start, u.end, u.text) for u in first.utterances]
    assert strip == [(u.id, u.label, u.start, u.end, u.text) for u in second.utterances]
    assert all(u.label in ALL_LABELS for u in first.utterances)
    assert any(u.label in CLASSES for u in first.utterances)


def test_bad_inputs_need_enough_dialogs(tmp_path):
    with pytest.raises(ValueError, match="4 dialogs"):
        make_iemocap_tree(tmp_path, sessions=1, dialogs_per_session=2, inject_bad=True)
