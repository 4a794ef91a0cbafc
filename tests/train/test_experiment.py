"""Config resolution and seed aggregation of mesm.train.experiment (no training here)."""

from __future__ import annotations

import json

import pytest
import yaml

from mesm.data.format import FORMAT_FILE, FormatInfo
from mesm.train.experiment import (
    DATASET_PRESETS,
    ConfigError,
    RunConfig,
    aggregate_seeds,
    load_config_file,
    parse_modalities,
    resolve_config,
)
from mesm.train.fit import RunResult


def test_precedence_defaults_preset_file_flags() -> None:
    config = resolve_config({"epochs": 3, "lr": 0.5}, {"epochs": 2})
    assert config.dataset == "demo"  # no --data
    assert config.epochs == 2  # flag beats file
    assert config.lr == 0.5  # file beats preset
    assert config.text_model == DATASET_PRESETS["demo"]["text_model"]  # preset beats default
    assert config.text_max_len == RunConfig().text_max_len  # default


def test_top_p_selects_mesm_and_fe2e_is_the_default_model() -> None:
    mesm = resolve_config(flag_values={"top_p": 0.7})
    assert (mesm.model, mesm.top_p, mesm.attention) == ("mesm", 0.7, "mask")
    fe2e = resolve_config()
    assert (fe2e.model, fe2e.top_p) == ("fe2e", None)
    assert resolve_config(flag_values={"model": "mesm"}).top_p == 0.5
    assert resolve_config(flag_values={"model": "mesm"}).out == "runs/demo-mesm-p0.5"


def test_paper_batch_sizes_outside_the_demo(tmp_path) -> None:
    data = tmp_path / "iemocap"
    data.mkdir()
    info = FormatInfo(dataset="iemocap", classes=["ang"], fps=2.0, mel={})
    (data / FORMAT_FILE).write_text(json.dumps(info.to_dict()))
    assert resolve_config(flag_values={"data": str(data)}).dataset == "iemocap"  # from the folder
    assert resolve_config(flag_values={"data": str(data), "top_p": 0.5}).batch_size == 2
    assert resolve_config(flag_values={"data": str(data)}).batch_size == 8


@pytest.mark.parametrize(
    "flags,message",
    [
        ({"model": "fe2e", "top_p": 0.5}, "has no top-p"),
        ({"top_p": 1.5}, "must be in (0, 1]"),
        ({"model": "nope"}, "unknown --model 'nope'"),
        ({"modalities": "tx"}, "letters among t, a, v"),
        ({"dataset": "mosei"}, "needs --data DIR"),
        ({"eval_only": True}, "needs --checkpoint"),
        ({"data": "/nonexistent/folder"}, "not a processed dataset folder"),
    ],
)
def test_bad_configs_name_the_problem(flags, message) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        resolve_config(flag_values=flags)


def test_unknown_config_file_key_is_refused(tmp_path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"top-p": 0.3, "epoch": 3}))
    values = load_config_file(path)
    assert values == {"top_p": 0.3, "epoch": 3}
    with pytest.raises(ConfigError, match=r"unknown option\(s\) in config file: \['epoch'\]"):
        resolve_config(values)


def test_parse_modalities_is_order_free() -> None:
    assert parse_modalities("vat") == ("text", "audio", "vision")
    assert parse_modalities("a") == ("audio",)


def _result(f1: list[float]) -> RunResult:
    per_class = {name: {"f1": value} for name, value in zip(["x", "y"], f1, strict=True)}
    test = {
        "average": {"f1": sum(f1) / 2},
        "micro_f1": 0.5,
        "macro_f1": sum(f1) / 2,
        "single_label": None,
        "per_class": per_class,
    }
    return RunResult(metrics={"test": test})


def test_seed_aggregation_mean_and_sample_std() -> None:
    summary = aggregate_seeds({0: _result([0.2, 0.4]), 1: _result([0.4, 0.8])}, "iemocap")
    assert summary["seeds"] == [0, 1]
    assert summary["test"]["average_f1"]["mean"] == pytest.approx(0.45)
    assert summary["test"]["average_f1"]["std"] == pytest.approx(0.2121320, abs=1e-6)
    assert summary["test"]["y_f1"]["values"] == [0.4, 0.8]
    single = aggregate_seeds({3: _result([0.2, 0.4])}, "iemocap")
    assert single["test"]["x_f1"]["std"] == 0.0
