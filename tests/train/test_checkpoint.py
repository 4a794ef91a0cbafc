"""Exported checkpoints: weights_only loading, mismatch messages, missing/corrupt file messages."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from mesm.train.checkpoint import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    CheckpointMismatchError,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)

CONFIG = {
    "model": "fe2e",
    "modalities": "tav",
    "top_p": None,
    "text_model": "albert-base-v2",
    "lr": 5e-5,
    "batch_size": 8,
}
CLASSES = ["ang", "exc", "fru", "hap", "neu", "sad"]


def _save(path: Path, **overrides) -> Path:
    model = nn.Linear(3, 6)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.ones(2, 3)).sum().backward()
    optimizer.step()
    arguments = dict(
        state_dict=model.state_dict(),
        config=CONFIG,
        class_names=CLASSES,
        thresholds=np.linspace(0.05, 0.3, 6),
        train_prior=np.full(6, 1 / 6),
        training={
            "epoch": 3,
            "global_step": 40,
            "optimizer": optimizer.state_dict(),
            "rng": rng_state(),
            "best_metric": 0.5,
            "early_stop_wait": 2,
        },
    )
    arguments.update(overrides)
    return save_checkpoint(path, **arguments)


def test_round_trip_and_plain_weights_only_load(tmp_path):
    path = _save(tmp_path / "best.pt")
    raw = torch.load(path, weights_only=True)  # plain torch, no allow-listing: no pickled objects
    assert raw["format_version"] == CHECKPOINT_FORMAT == 1
    checkpoint = load_checkpoint(path, expected_config=CONFIG, expected_classes=CLASSES)
    assert checkpoint.class_names == CLASSES
    np.testing.assert_allclose(checkpoint.thresholds, np.linspace(0.05, 0.3, 6))
    np.testing.assert_allclose(checkpoint.train_prior, np.full(6, 1 / 6))
    assert checkpoint.config == CONFIG
    assert checkpoint.training["early_stop_wait"] == 2
    fresh = nn.Linear(3, 6)
    fresh.load_state_dict(checkpoint.state_dict)
    optimizer = torch.optim.Adam(fresh.parameters())
    optimizer.load_state_dict(checkpoint.training["optimizer"])
    assert not (tmp_path / "best.pt.tmp").exists()


def test_non_model_keys_may_differ(tmp_path):
    path = _save(tmp_path / "best.pt")
    load_checkpoint(
        path, expected_config={**CONFIG, "lr": 1.0, "batch_size": 2, "sparse_backend": "torch"}
    )
    # A YAML round trip turns tuples into lists: still equal.
    load_checkpoint(path, expected_config={**CONFIG, "modalities": "tav"})


def test_mismatch_message_names_every_difference(tmp_path):
    path = _save(tmp_path / "best.pt")
    asked = {**CONFIG, "model": "mesm", "top_p": 0.5}
    with pytest.raises(CheckpointMismatchError) as error:
        load_checkpoint(path, expected_config=asked, expected_classes=CLASSES)
    message = str(error.value)
    assert "checkpoint was trained with model=fe2e, you asked for model=mesm" in message
    assert "top_p=<not set>, you asked for top_p=0.5" in message
    assert str(path) in message
    with pytest.raises(CheckpointMismatchError, match="predicts classes .*'ang'.* the data has"):
        load_checkpoint(path, expected_classes=["anger", "disgust"])


def test_missing_and_corrupt_files_are_named(tmp_path):
    missing = tmp_path / "nope.pt"
    with pytest.raises(CheckpointError, match=f"{missing}.* does not exist"):
        load_checkpoint(missing)
    path = _save(tmp_path / "best.pt")
    data = path.read_bytes()
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=f"cannot read checkpoint {corrupt}"):
        load_checkpoint(corrupt)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match=str(garbage)):
        load_checkpoint(garbage)


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format_version": 1, "payload": Path("/etc")}, path)  # a pickled object
    with pytest.raises(CheckpointError, match="pickled objects"):
        load_checkpoint(path)


def test_other_format_and_foreign_files(tmp_path):
    path = _save(tmp_path / "best.pt")
    payload = torch.load(path, weights_only=True)
    payload["format_version"] = 99
    torch.save(payload, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="format version 99"):
        load_checkpoint(tmp_path / "future.pt")
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a mesm checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")


def test_saving_a_non_plain_config_names_the_key(tmp_path):
    with pytest.raises(TypeError, match=r"config\['out'\] is a PosixPath"):
        _save(tmp_path / "x.pt", config={**CONFIG, "out": Path("/tmp")})
    with pytest.raises(ValueError, match="thresholds for 6 classes"):
        _save(tmp_path / "x.pt", thresholds=[0.5])


def test_rng_state_round_trip():
    torch.manual_seed(5)
    np.random.seed(5)
    random.seed(5)
    state = rng_state()
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.rand(10)
    np.random.rand(10)
    random.random()
    set_rng_state(state)
    again = (torch.rand(3), np.random.rand(3), random.random())
    torch.testing.assert_close(expected[0], again[0])
    np.testing.assert_array_equal(expected[1], again[1])
    assert expected[2] == again[2]
