"""experiments/flops.py on a tiny shape: FLOPs are the model's own count; CSV, JSON, PNG."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest
import torch
import yaml

from mesm.bench.common import load_checkpoint_model, save_tiny_text_model, synthetic_batch
from mesm.bench.flops_sweep import set_top_p
from mesm.models import build_model
from mesm.train.checkpoint import save_checkpoint

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "flops.py"
CLASSES = ["ang", "exc", "fru", "hap", "neu", "sad"]
TINY = ["--face-frames", "1", "--audio-chunks", "1", "--batch-size", "2", "--utterances", "2"]


def _main():
    spec = importlib.util.spec_from_file_location("flops_cli", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A MESM best.pt with initial weights and a tiny BERT (saving is enough, no training)."""
    root = tmp_path_factory.mktemp("flops")
    text_model = save_tiny_text_model(str(root / "bert"))
    torch.manual_seed(1)
    model = build_model("mesm", num_classes=6, text_model=text_model, sparse_backend="torch")
    config = {
        "model": "mesm",
        "modalities": "tav",
        "top_p": 0.5,
        "attention": "mask",
        "text_model": text_model,
    }
    return save_checkpoint(
        root / "run" / "best.pt",
        state_dict=model.state_dict(),
        config=config,
        class_names=CLASSES,
        thresholds=[0.5] * 6,
    )


def _rows(out: Path) -> tuple[list[dict[str, str]], dict]:
    with open(out / "flops.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return rows, json.loads((out / "flops.json").read_text())


def test_flops_are_the_models_own_count_and_times_are_written(checkpoint, tmp_path) -> None:
    out = tmp_path / "out"
    argv = [*TINY, "--checkpoint", str(checkpoint.parent), "--top-p", "0.2", "0.5", "1.0"]
    assert _main()([*argv, "--repeats", "2", "--warmup", "0", "--out", str(out)]) == 0
    rows, payload = _rows(out)
    assert [(row["model"], row["top_p"]) for row in rows] == [
        ("fe2e", ""), ("mesm", "0.2"), ("mesm", "0.5"), ("mesm", "1.0")
    ]  # fmt: skip
    assert float(rows[0]["flops_ratio"]) == 1.0
    flops = [float(row["flops"]) for row in rows]
    assert flops[1] < flops[2] < flops[3]
    assert flops[3] == pytest.approx(flops[0])  # p = 1 keeps everything: FE2E's count
    for row in rows:
        assert (
            row["device"] == "cpu" and float(row["train_ms"]) > 0 and float(row["forward_ms"]) > 0
        )
        assert float(row["train_min_ms"]) <= float(row["train_ms"]) <= float(row["train_max_ms"])
        vision_audio = float(row["flops_vision"]) + float(row["flops_audio"])
        assert vision_audio == pytest.approx(float(row["flops"]))
    assert len(payload["rows"][1]["train"]["runs_ms"]) == 2
    assert payload["settings"]["attention"] == "trained"
    # The model's own analytic count on the same inputs (the script's seed-0 random batch).
    loaded = load_checkpoint_model(checkpoint, sparse_backend="torch")
    vocab = loaded.model.encoders["text"].model.config.vocab_size
    inputs = synthetic_batch(2, face_frames=1, audio_chunks=1, seed=0, vocab_size=vocab)
    for row in rows[1:]:
        set_top_p(loaded.model, float(row["top_p"]))
        with torch.inference_mode():
            expected = loaded.model(inputs).flops.mean().item()
        assert float(row["flops"]) == pytest.approx(expected, rel=1e-12)
    assert payload["rows"][2]["flops"] == float(rows[2]["flops"])
    assert (out / "flops.png").stat().st_size > 5000


def test_flops_only_sweep_with_run_folders(tmp_path, capsys) -> None:
    runs = []
    for model, top_p, value in (("fe2e", None, 0.5), ("mesm", 0.3, 0.4), ("mesm", 0.7, 0.55)):
        run = tmp_path / f"{model}-{top_p}"
        run.mkdir()
        (run / "config.yaml").write_text(yaml.safe_dump({"model": model, "top_p": top_p}))
        metrics = {"validation": {"average": {"f1": value}}, "test": {"average": {"f1": 0.0}}}
        (run / "metrics.json").write_text(json.dumps(metrics))
        runs.append(str(run))
    out = tmp_path / "out"
    top_ps = ["0.1", "0.3", "0.6", "0.9"]
    argv = [*TINY, "--no-timing", "--top-p", *top_ps, "--runs", *runs, "--out", str(out)]
    assert _main()(argv) == 0
    rows, payload = _rows(out)
    assert [row["top_p"] for row in rows] == ["", *top_ps]
    flops = [float(row["flops"]) for row in rows[1:]]
    assert all(a <= b for a, b in zip(flops, flops[1:], strict=False))
    assert rows[0]["train_ms"] == "" and rows[0]["device"] == ""
    assert [(run["top_p"], run["value"]) for run in payload["runs"]] == [
        (None, 0.5), (0.3, 0.4), (0.7, 0.55)
    ]  # fmt: skip
    assert "| MESM p=0.6 | - | - |" in capsys.readouterr().out


def test_missing_checkpoint_and_metric_are_reported(tmp_path, capsys) -> None:
    assert _main()([*TINY, "--checkpoint", str(tmp_path / "nope.pt"), "--no-timing"]) == 2
    assert "does not exist" in capsys.readouterr().err
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"model": "mesm", "top_p": 0.5}))
    (run / "metrics.json").write_text(json.dumps({"validation": {"average": {"f1": 0.1}}}))
    argv = [*TINY, "--no-timing", "--runs", str(run), "--metric", "auc"]
    assert _main()([*argv, "--out", str(tmp_path / "out")]) == 2
    assert "no average 'auc'" in capsys.readouterr().err
