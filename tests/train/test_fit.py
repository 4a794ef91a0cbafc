"""fit/evaluate on a tiny learnable in-memory dataset: run folder, eval-only, resume, NaN loss."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch
from tiny_training import CLASS_NAMES, NaNAfter, TinyDataset, TinyModel, collate, state_hash

from mesm.train.checkpoint import CheckpointMismatchError, load_checkpoint
from mesm.train.fit import evaluate, fit, resolve_strategy
from mesm.train.module import NonFiniteLossError
from mesm.train.sampling import EpochSeededSampler, make_loader

CONFIG = {"model": "tiny", "modalities": "a", "seed": 0}
TRAIN, VAL, TEST = TinyDataset(60, 1, "tr"), TinyDataset(30, 2, "va"), TinyDataset(30, 3, "te")


def _loaders() -> dict[str, Any]:
    return {
        "train_loader": make_loader(TRAIN, batch_size=8, collate_fn=collate, shuffle=True, seed=0),
        "val_loader": make_loader(VAL, batch_size=8, collate_fn=collate, shuffle=False),
        "test_loader": make_loader(TEST, batch_size=8, collate_fn=collate, shuffle=False),
    }


def _fit(out: Path, epochs: int, resume: bool = False, model: torch.nn.Module | None = None):
    L.seed_everything(0, workers=True, verbose=False)
    return fit(
        TinyModel() if model is None else model,
        **_loaders(),
        class_names=CLASS_NAMES,
        train_labels=TRAIN.label_matrix(),
        config=CONFIG,
        out_dir=out,
        dataset_kind="demo",
        lr=0.01,
        epochs=epochs,
        early_stop=6,
        accelerator="cpu",
        seed=0,
        resume=resume,
        progress_bar=False,
    )


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("straight")
    return out, _fit(out, epochs=4)


def test_fit_writes_the_run_folder(straight_run):
    out, result = straight_run
    for name in (
        "metrics.json",
        "predictions.csv",
        "curves.csv",
        "curves.png",
        "confusion.png",
        "best.pt",
        "last.pt",
    ):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["thresholds"]) == set(CLASS_NAMES)
    assert metrics["threshold_source"] == "tuned on validation"
    test = metrics["test"]
    # Learnable data: clearly above both baselines.
    assert test["average"]["f1"] > test["baselines"]["chance"]["average"]["f1"] + 0.2
    assert test["baselines"]["all_negative"]["average"]["f1"] == 0.0
    assert test["single_label"]["argmax_accuracy"] > 0.6
    with (out / "predictions.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(VAL) + len(TEST)
    assert {row["split"] for row in rows} == {"validation", "test"}
    assert set(rows[0]) == {
        "id",
        "split",
        *(f"prob_{n}" for n in CLASS_NAMES),
        *(f"label_{n}" for n in CLASS_NAMES),
    }
    with (out / "curves.csv").open() as handle:
        curves = list(csv.DictReader(handle))
    assert [int(row["epoch"]) for row in curves] == [0, 1, 2, 3]
    assert float(curves[-1]["train_loss"]) < float(curves[0]["train_loss"])
    best = load_checkpoint(out / "best.pt", expected_config=CONFIG, expected_classes=CLASS_NAMES)
    assert best.thresholds.tolist() == [metrics["thresholds"][n] for n in CLASS_NAMES]
    last = torch.load(out / "last.pt", weights_only=True)
    assert last["training"]["epoch"] == 3
    assert "optimizer" in last["training"] and "rng" in last["training"]
    assert "test" in result.summary("demo")


def test_eval_only_reproduces_test_metrics_with_stored_thresholds(straight_run, tmp_path):
    out, result = straight_run
    evaluated = evaluate(
        TinyModel(),
        checkpoint_path=out / "best.pt",
        val_loader=_loaders()["val_loader"],
        test_loader=_loaders()["test_loader"],
        class_names=CLASS_NAMES,
        config=CONFIG,
        out_dir=tmp_path,
        dataset_kind="demo",
        accelerator="cpu",
    )
    assert evaluated.metrics["test"] == result.metrics["test"]
    assert evaluated.metrics["validation"] == result.metrics["validation"]
    assert evaluated.metrics["threshold_source"] == "stored in the checkpoint"
    assert (tmp_path / "predictions.csv").read_text() == (out / "predictions.csv").read_text()
    with pytest.raises(CheckpointMismatchError, match="model=tiny, you asked for model=other"):
        evaluate(
            TinyModel(),
            checkpoint_path=out / "best.pt",
            **{k: v for k, v in _loaders().items() if k != "train_loader"},
            class_names=CLASS_NAMES,
            config={**CONFIG, "model": "other"},
            out_dir=tmp_path,
            dataset_kind="demo",
            accelerator="cpu",
        )


def test_eval_only_keeps_the_checkpoint_thresholds(straight_run, tmp_path):
    out, _ = straight_run
    payload = torch.load(out / "best.pt", weights_only=True)
    payload["thresholds"] = torch.full((len(CLASS_NAMES),), 0.95, dtype=torch.float64)
    torch.save(payload, tmp_path / "odd.pt")
    evaluated = evaluate(
        TinyModel(),
        checkpoint_path=tmp_path / "odd.pt",
        val_loader=_loaders()["val_loader"],
        test_loader=_loaders()["test_loader"],
        class_names=CLASS_NAMES,
        config=CONFIG,
        out_dir=tmp_path,
        dataset_kind="demo",
        accelerator="cpu",
    )
    assert set(evaluated.metrics["thresholds"].values()) == {0.95}


def test_resume_after_interruption_equals_uninterrupted(straight_run, tmp_path):
    out, result = straight_run
    _fit(tmp_path, epochs=2)  # "interrupted" after two epochs
    resumed = _fit(tmp_path, epochs=4, resume=True)
    straight_last = torch.load(out / "last.pt", weights_only=True)
    resumed_last = torch.load(tmp_path / "last.pt", weights_only=True)
    assert resumed_last["training"]["epoch"] == 3
    assert state_hash(resumed_last["state_dict"]) == state_hash(straight_last["state_dict"])
    assert resumed.metrics["test"] == result.metrics["test"]
    assert (tmp_path / "curves.csv").read_text() == (out / "curves.csv").read_text()


def test_resume_without_checkpoint_names_the_path(tmp_path):
    with pytest.raises(Exception, match=str(tmp_path / "lightning" / "checkpoints" / "last.ckpt")):
        _fit(tmp_path, epochs=1, resume=True)


def test_nan_loss_stops_with_step_and_last_checkpoint(tmp_path):
    # 60 items / batch 8 = 8 steps per epoch: the 11th forward (global step 10) is in epoch 2,
    # after the first epoch's checkpoint.
    with pytest.raises(NonFiniteLossError) as error:
        _fit(tmp_path, epochs=3, model=NaNAfter(after=10))
    message = str(error.value)
    assert "global step 10" in message
    assert str(tmp_path / "lightning" / "checkpoints" / "last.ckpt") in message


def test_epoch_seeded_sampler_depends_only_on_seed_and_epoch():
    sampler = EpochSeededSampler(range(20), seed=3)
    first = list(sampler)
    sampler.set_epoch(1)
    second = list(sampler)
    other = EpochSeededSampler(range(20), seed=3)
    other.set_epoch(1)
    assert sorted(first) == list(range(20)) and first != second and list(other) == second


def test_strategy_is_ddp_only_for_several_processes(monkeypatch):
    for name in ("LOCAL_RANK", "WORLD_SIZE", "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    assert resolve_strategy(1, "cpu")[0] == "auto"
    strategy, devices, nodes = resolve_strategy(2, "cpu")
    assert strategy.process_group_backend == "gloo" and devices == 2 and nodes == 1
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "x")
    strategy, devices, nodes = resolve_strategy(1, "cpu")
    assert strategy.process_group_backend == "gloo" and devices == 2 and nodes == 2


def test_train_labels_guard_runs_before_training(tmp_path):
    labels = np.zeros((len(TRAIN), len(CLASS_NAMES)))
    labels[:, 0] = 1
    with pytest.raises(ValueError, match=r"\['hap', 'neu'\] have no positive"):
        fit(
            TinyModel(),
            **_loaders(),
            class_names=CLASS_NAMES,
            train_labels=labels,
            config=CONFIG,
            out_dir=tmp_path,
            dataset_kind="demo",
            lr=0.01,
            epochs=1,
            accelerator="cpu",
            progress_bar=False,
        )
