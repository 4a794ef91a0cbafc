"""The ``mesm`` command as users run it: ``mesm predict`` output and one-line user errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mesm.cli import USER_ERROR, main
from mesm.media.container import write_video


def _srt(utterances) -> str:
    def clock(seconds: float) -> str:
        minutes, millis = divmod(round(seconds * 1000), 60000)
        return f"00:{minutes:02d}:{millis // 1000:02d},{millis % 1000:03d}"

    return "\n".join(
        f"{n}\n{clock(u.start)} --> {clock(u.end)}\n{u.text}\n" for n, u in enumerate(utterances, 1)
    )


def test_predict_segments_as_json(predict_scene, tmp_path, capsys):
    utterances = [u for u in predict_scene.tree.expected_ok() if u.side == "L"]
    srt = tmp_path / "talk.srt"
    srt.write_text(_srt(utterances), encoding="utf-8")
    argv = ["predict", str(predict_scene.video), "--checkpoint", str(predict_scene.fe2e),
            "--segments", str(srt), "--side", "left", "--format", "json"]  # fmt: skip
    assert main(argv) == 0
    payload = json.loads(capsys.readouterr().out)
    assert [s["index"] for s in payload["segments"]] == list(range(1, len(utterances) + 1))
    thresholds = np.array([payload["thresholds"][c] for c in payload["classes"]])
    for segment, utterance in zip(payload["segments"], utterances, strict=True):
        assert segment["text"] == utterance.text
        assert segment["start"] == pytest.approx(utterance.start, abs=5e-4)
        probabilities = np.array([segment["probabilities"][c] for c in payload["classes"]])
        decided = [segment["decisions"][c] for c in payload["classes"]]
        assert decided == (probabilities >= thresholds).tolist()
        assert segment["faces_detected"] > 0


def test_help_lists_the_predict_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "predict" in capsys.readouterr().out


@pytest.fixture(scope="module")
def bad_inputs(predict_scene, tmp_path_factory):
    """Files each of which is wrong in one way."""
    root = tmp_path_factory.mktemp("bad")
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 255, size=(10, 96, 128, 3), dtype=np.uint8)
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)
    write_video(root / "silent.avi", predict_scene.frames[:10], 10.0)
    write_video(root / "faceless.mkv", noise, 10.0, tone, 16000, video_codec="ffv1")
    (root / "garbage.mp4").write_bytes(b"\x00\x01 not a video" * 64)
    (root / "empty.txt").write_text("\n  \n")
    (root / "mute.srt").write_text("1\n00:00:00,500 --> 00:00:01,500\n\n")
    (root / "late.srt").write_text("1\n00:01:00,000 --> 00:01:02,000\nToo late.\n")
    (root / "broken.srt").write_text("1\n00:00:00 --> 00:00:01\nhi\n")
    payload = torch.load(predict_scene.fe2e, weights_only=True)
    payload["format_version"] = 99
    torch.save(payload, root / "future.pt")
    return root


@pytest.mark.parametrize(
    "video,arguments,message",
    [
        ("missing.mp4", ["--text", "hi"], "missing video"),
        ("garbage.mp4", ["--text", "hi"], "cannot open video"),
        ("silent.avi", ["--text", "hi"], "has no audio track; pass --audio FILE"),
        ("faceless.mkv", ["--text", "hi"], "no face found in any of the 2 frames"),
        ("scene", ["--transcript", "empty.txt"], "is empty"),
        ("scene", ["--text", "  "], "the transcript is empty"),
        ("scene", ["--segments", "mute.srt"], "subtitle cue 1 (0.500-1.500 s) has no text"),
        ("scene", ["--segments", "late.srt", "--side", "left"], "times outside the media"),
        ("scene", ["--segments", "broken.srt"], "line 2: expected a timing line"),
        ("scene", [], "uses text: give --text, --transcript or --segments"),
        ("scene", ["--text", "hi", "--checkpoint", "future.pt"], "has format version 99"),
        ("scene", ["--text", "hi", "--checkpoint", "none.pt"], "does not exist"),
        ("scene", ["--modalities", "av", "--checkpoint", "mesm"], "MESM needs the text"),
        ("scene", ["--modalities", "x"], "modalities must be letters among t, a, v"),
        ("scene", ["--text", "hi", "--audio", "empty.txt"], "cannot read audio"),
    ],
)
def test_user_errors_print_one_line_and_exit_2(
    predict_scene, bad_inputs, video, arguments, message, capsys
):
    def where(name: str) -> str:
        if name == "scene":
            return str(predict_scene.video)
        if name in ("mesm", "fe2e"):
            return str(getattr(predict_scene, name))
        if name.endswith((".mp4", ".avi", ".mkv", ".txt", ".srt", ".pt")):
            return str(bad_inputs / name)
        return name

    arguments = [where(argument) for argument in arguments]
    if "--checkpoint" not in arguments:
        arguments += ["--checkpoint", str(predict_scene.fe2e)]
    assert main(["predict", where(video), *arguments]) == USER_ERROR
    captured = capsys.readouterr()
    assert captured.out == ""
    error = captured.err.strip()
    assert error.startswith("error: ") and message in error
    assert len(error.splitlines()) == 1 and "Traceback" not in error


@pytest.mark.skipif(torch.cuda.is_available(), reason="this host has a CUDA device")
def test_cuda_without_a_cuda_device_is_a_user_error(predict_scene, capsys):
    argv = ["predict", str(predict_scene.video), "--checkpoint", str(predict_scene.fe2e),
            "--text", "hi", "--device", "cuda"]  # fmt: skip
    assert main(argv) == USER_ERROR
    assert capsys.readouterr().err.strip() == (
        "error: --device cuda asked but no CUDA device is available"
    )
