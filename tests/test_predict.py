"""mesm.predict: SRT parsing, agreement with the preprocessing pipeline, modality restriction."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
import torch

from mesm.predict import (
    PredictError,
    Predictor,
    Segment,
    SegmentPrediction,
    VideoPrediction,
    format_csv,
    format_json,
    format_table,
    parse_srt,
    read_transcript,
)

CLASSES = ["ang", "exc", "fru", "hap", "neu", "sad"]
THRESHOLDS = [0.45, 0.5, 0.55, 0.4, 0.6, 0.35]  # as tests/conftest.py stores them


# ----------------------------------------------------------------------------------- SRT
def test_srt_cues_with_numbers_tags_multiline_text_crlf_and_bom():
    content = (
        "\ufeff1\r\n00:00:01,000 --> 00:00:02,500\r\n<i>Hello</i> there,\r\nfriend.\r\n\r\n"
        "7\n01:02:03.25 --> 01:02:04,000\n{\\an8}Second   cue\n\n\n"
        "00:00:09,000 --> 00:00:10,000\nno number\n"
    )
    segments = parse_srt(content)
    assert segments == [
        Segment(1, 1.0, 2.5, "Hello there, friend."),
        Segment(7, 3723.25, 3724.0, "Second cue"),
        Segment(3, 9.0, 10.0, "no number"),
    ]


def test_srt_cue_without_text_keeps_an_empty_text():
    assert parse_srt("1\n00:00:00,000 --> 00:00:01,000\n") == [Segment(1, 0.0, 1.0, "")]


@pytest.mark.parametrize(
    "content,message",
    [
        ("", "holds no subtitle cue"),
        ("1\n00:00:01 --> 00:00:02\nhi\n", "line 2: expected a timing line"),
        ("1\n00:00:03,000 --> 00:00:02,000\nhi\n", "line 2: the cue ends at 2.000 s"),
    ],
)
def test_bad_srt_names_the_line(content, message):
    with pytest.raises(PredictError, match=message):
        parse_srt(content, "talk.srt")


def test_empty_transcript_file_is_refused(tmp_path):
    (tmp_path / "empty.txt").write_text(" \n\t\n")
    with pytest.raises(PredictError, match="is empty"):
        read_transcript(tmp_path / "empty.txt")
    (tmp_path / "words.txt").write_text("I am\n  so glad.\n")
    assert read_transcript(tmp_path / "words.txt") == "I am so glad."


# ----------------------------------------------------------------------------------- agreement
def _reference(scene, checkpoint_path, ids, modalities=None):
    """The model's probabilities and modality logits on utterances built by build_iemocap."""
    from torch.utils.data import DataLoader, Subset
    from transformers import AutoTokenizer

    from mesm.data.collate import Collator
    from mesm.data.dataset import ProcessedDataset
    from mesm.models import build_model
    from mesm.train.checkpoint import load_checkpoint
    from mesm.train.experiment import RunConfig, model_kwargs, parse_modalities

    checkpoint = load_checkpoint(checkpoint_path)
    config = RunConfig(**checkpoint.config)
    model = build_model(str(config.model), **model_kwargs(config, 6, str(scene.text_model)))
    model.load_state_dict(checkpoint.state_dict)
    model.eval()
    dataset = ProcessedDataset(scene.processed, "unassigned", frame_interval_ms=config.img_interval)
    rows = [[record.id for record in dataset.records].index(i) for i in ids]
    collate = Collator(
        parse_modalities(config.modalities),
        AutoTokenizer.from_pretrained(str(scene.text_model)),
        config.text_max_len,
    )
    probabilities, modality_logits = [], []
    with torch.no_grad():
        for batch in DataLoader(Subset(dataset, rows), batch_size=1, collate_fn=collate):
            output = model(batch.inputs)
            probabilities.append(torch.sigmoid(output.logits).double().numpy()[0])
            modality_logits.append({k: v[0] for k, v in output.modality_logits.items()})
    weights = model.fusion.modality_weights.detach()
    return (
        np.stack(probabilities),
        modality_logits,
        dict(zip(model.fusion.modalities, weights, strict=True)),
    )


@pytest.mark.parametrize("side,letter,model", [("left", "L", "mesm"), ("right", "R", "fe2e")])
def test_predict_equals_the_model_on_the_same_utterances_built_by_build_iemocap(
    predict_scene, side, letter, model
):
    assert (predict_scene.classes, predict_scene.thresholds) == (CLASSES, THRESHOLDS)
    utterances = [u for u in predict_scene.tree.expected_ok() if u.side == letter]
    assert utterances, "the tree must have utterances on both sides"
    segments = [Segment(n + 1, u.start, u.end, u.text) for n, u in enumerate(utterances)]
    checkpoint = getattr(predict_scene, model)
    result = Predictor(checkpoint).predict(predict_scene.video, segments, side=side)
    expected, _, _ = _reference(predict_scene, checkpoint, [u.id for u in utterances])
    got = np.stack([item.probabilities for item in result.segments])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    for item in result.segments:
        np.testing.assert_array_equal(item.decisions, item.probabilities >= np.array(THRESHOLDS))
        assert item.n_faces_detected > 0 and item.n_frames >= 2
    assert result.class_names == CLASSES and result.modalities == ("text", "audio", "vision")


def test_fe2e_without_text_fuses_the_audio_and_vision_heads_with_their_weights(predict_scene):
    utterance = next(u for u in predict_scene.tree.expected_ok() if u.side == "L")
    segment = Segment(1, utterance.start, utterance.end, "")
    predictor = Predictor(predict_scene.fe2e, modalities="av")
    result = predictor.predict(predict_scene.video, [segment], side="left")
    _, modality_logits, weights = _reference(predict_scene, predict_scene.fe2e, [utterance.id])
    logits = weights["audio"] * modality_logits[0]["audio"]
    logits = logits + weights["vision"] * modality_logits[0]["vision"]
    np.testing.assert_allclose(
        result.segments[0].probabilities, torch.sigmoid(logits).double().numpy(), atol=1e-6
    )
    assert result.modalities == ("audio", "vision")


def test_mesm_cannot_drop_text(predict_scene):
    with pytest.raises(PredictError, match="cannot run on modalities.*MESM needs the text"):
        Predictor(predict_scene.mesm, modalities="av")


def test_whole_video_of_one_person_in_an_mp4_with_aac_audio(predict_scene, tmp_path):
    """Whole frames by default: the right half of the side-by-side dialog, cut out, is one
    person; written again as H.264 + AAC in an mp4."""
    from mesm.media.container import read_audio_track, write_video

    utterance = next(u for u in predict_scene.tree.expected_ok() if u.side == "R")
    first, last = (round(t * predict_scene.tree.fps) for t in (utterance.start, utterance.end))
    frames = predict_scene.frames[first:last]
    samples, rate = read_audio_track(predict_scene.video)
    half = frames.shape[2] // 2
    video = write_video(
        tmp_path / "talk.mp4",
        np.ascontiguousarray(frames[:, :, half:]),
        predict_scene.tree.fps,
        samples[round(utterance.start * rate) : round(utterance.end * rate), 1],
        rate,
        video_codec="libx264",
        audio_codec="aac",
    )
    result = Predictor(predict_scene.mesm).predict(video, text="That was amazing, wow.")
    (item,) = result.segments
    assert item.segment.start == 0.0 and item.segment.end == pytest.approx(
        len(frames) / 10, abs=0.1
    )
    assert item.n_faces_detected > 0
    assert np.all((item.probabilities > 0) & (item.probabilities < 1))


# ----------------------------------------------------------------------------------- output
@pytest.fixture
def two_segment_result(tmp_path):
    probabilities = np.array([[0.9, 0.1, 0.55, 0.2, 0.6, 0.3], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]])
    return VideoPrediction(
        video=tmp_path / "talk.mp4",
        checkpoint=tmp_path / "best.pt",
        class_names=CLASSES,
        thresholds=np.array(THRESHOLDS),
        modalities=("text", "audio", "vision"),
        side="left",
        segments=[
            SegmentPrediction(
                Segment(4 + row, 1.5 * row, 1.5 * row + 1.25, f"cue, {row}"),
                probabilities[row],
                probabilities[row] >= np.array(THRESHOLDS),
                n_frames=3,
                n_faces_detected=2,
            )
            for row in range(2)
        ],
    )


def test_json_holds_probabilities_and_decisions_per_segment(two_segment_result):
    payload = json.loads(format_json(two_segment_result))
    assert payload["classes"] == CLASSES and payload["side"] == "left"
    assert payload["thresholds"] == dict(zip(CLASSES, THRESHOLDS, strict=True))
    first, second = payload["segments"]
    assert (first["index"], first["start"], first["end"], first["text"]) == (4, 0.0, 1.25, "cue, 0")
    assert first["probabilities"]["fru"] == 0.55
    assert first["emotions"] == ["ang", "fru", "neu"]  # 0.55 >= 0.55 and 0.6 >= 0.6: decided
    assert second["emotions"] == ["hap", "sad"]
    assert first["decisions"] == {c: c in ("ang", "fru", "neu") for c in CLASSES}
    assert (first["frames"], first["faces_detected"]) == (3, 2)


def test_csv_has_a_probability_and_a_label_column_per_class(two_segment_result):
    rows = list(csv.reader(io.StringIO(format_csv(two_segment_result))))
    assert rows[0] == ["segment", "start", "end", "text"] + [f"prob_{c}" for c in CLASSES] + [
        f"label_{c}" for c in CLASSES
    ]
    assert rows[1] == ["4", "0.0", "1.25", "cue, 0", "0.9", "0.1", "0.55", "0.2", "0.6", "0.3",
                       "1", "0", "1", "0", "1", "0"]  # fmt: skip
    assert len(rows) == 3


def test_table_has_a_row_per_segment_and_marks_decisions(two_segment_result):
    lines = format_table(two_segment_result).splitlines()
    assert lines[0].split() == ["segment", "start", "end", *CLASSES, "emotions"]
    assert lines[1].split() == ["4", "0.00", "1.25", "0.900*", "0.100", "0.550*", "0.200",
                                "0.600*", "0.300", "ang,", "fru,", "neu"]  # fmt: skip
    assert lines[2].split()[-1] == "hap, sad".split()[-1]
    assert lines[3].split() == ["threshold", *(f"{t:.3f}" for t in THRESHOLDS)]
    # Columns line up: every probability ends where its class name ends.
    for name in CLASSES:
        end = lines[0].index(name) + len(name)
        assert lines[1][end - 1] == "0" and lines[3][end - 1].isdigit()


def _with_data_format(checkpoint, path, mel):
    state = torch.load(checkpoint, weights_only=True)
    state["config"]["data_format"] = {"mel": mel}
    torch.save(state, path)
    return path


def test_predict_builds_mel_chunks_as_the_training_data_were_built(predict_scene, tmp_path):
    from mesm.media.audio import MelConfig

    assert Predictor(predict_scene.fe2e).mel == MelConfig()  # no data_format stored: defaults
    power = MelConfig(log=False).to_dict()
    checkpoint = _with_data_format(predict_scene.fe2e, tmp_path / "power.pt", power)
    assert Predictor(checkpoint).mel == MelConfig(log=False)
    slaney = {**power, "mel_scale": "slaney"}
    checkpoint = _with_data_format(predict_scene.fe2e, tmp_path / "slaney.pt", slaney)
    with pytest.raises(PredictError, match="unusable mel parameters.*slaney"):
        Predictor(checkpoint)
