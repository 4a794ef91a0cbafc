"""experiments/run.py as users run it: the demo pipeline end to end, eval-only, bad input."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
import yaml

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "run.py"
TINY_DEMO = {
    "demo_sessions": 1,
    "demo_dialogs_per_session": 2,
    "demo_utterances_per_dialog": 16,
    "epochs": 1,
}


def _main():
    spec = importlib.util.spec_from_file_location("run_cli", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.fixture(scope="module")
def trained_demo(tmp_path_factory):
    """One epoch of MESM on a tiny generated demo: generate, reorganise, train, evaluate."""
    root = tmp_path_factory.mktemp("demo")
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY_DEMO))
    argv = [
        "--top-p", "0.5", "--dataset", "demo", "--config", str(config),
        "--data", str(root / "data"), "--out", str(root / "run"), "--no-progress",
    ]  # fmt: skip
    assert _main()(argv) == 0
    return root


def test_demo_run_folder_holds_every_promised_file(trained_demo) -> None:
    run = trained_demo / "run"
    for name in (
        "config.yaml", "metrics.json", "predictions.csv", "curves.csv", "curves.png",
        "confusion.png", "best.pt", "last.pt", "timing.json",
    ):  # fmt: skip
        assert (run / name).is_file(), name
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["model"] == "mesm" and config["top_p"] == 0.5 and config["epochs"] == 1
    assert config["text_model"] == str(run / "text_model")  # built from scratch, by the preset
    stored = torch.load(run / "best.pt", weights_only=True)["config"]
    built = json.loads((trained_demo / "data" / "iemocap" / "format.json").read_text())
    assert stored["data_format"]["mel"] == built["mel"]  # how predict must rebuild inputs
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["threshold_source"] == "tuned on validation"
    assert set(metrics["test"]["per_class"]) == {"ang", "exc", "fru", "hap", "neu", "sad"}


def test_eval_only_reproduces_the_test_metrics(trained_demo, capsys) -> None:
    run = trained_demo / "run"
    assert _main()(["--eval-only", "--checkpoint", str(run / "best.pt"), "--no-progress"]) == 0
    trained = json.loads((run / "metrics.json").read_text())
    evaluated = json.loads((run / "eval-best" / "metrics.json").read_text())
    assert evaluated["threshold_source"] == "stored in the checkpoint"
    assert evaluated["test"] == trained["test"]
    assert evaluated["validation"] == trained["validation"]


def test_eval_only_refuses_a_checkpoint_of_another_model(trained_demo, capsys) -> None:
    run = trained_demo / "run"
    argv = ["--eval-only", "--checkpoint", str(run / "best.pt"), "--top-p", "0.7"]
    assert _main()(argv) == 2
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr
    error = stderr.strip().splitlines()[-1]  # after the loaders' progress output
    assert error.startswith("error: ") and "top_p" in error


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--eval-only"], "--eval-only needs --checkpoint"),
        (["--eval-only", "--checkpoint", "/nonexistent/best.pt"], "/nonexistent/best.pt"),
        (["--dataset", "iemocap"], "needs --data DIR"),
        (["--data", "/nonexistent/data"], "/nonexistent/data"),
    ],
)
def test_bad_input_gives_one_line_and_exit_2(argv, message, capsys) -> None:
    assert _main()(argv) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and message in error
    assert len(error.splitlines()) == 1
