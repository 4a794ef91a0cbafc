"""Exported checkpoints (``best.pt``, ``last.pt``) that load with ``torch.load(weights_only=True)``.

A checkpoint holds only tensors and plain containers (dict, list, tuple, str, int, float, bool,
None), never a pickled object, so loading one cannot run code. Contents::

    format_version   CHECKPOINT_FORMAT
    state_dict       the model's parameters and buffers (keys as in ``model.state_dict()``)
    config           the resolved run config, a plain dict
    class_names      label names in logit order
    thresholds       (C,) float64 per-class decision thresholds chosen on validation
    training         None, or what resuming needs: epoch, global_step, optimizer state,
                     RNG states as tensors, best validation metric, early-stopping counter
    train_prior      None, or (C,) training-split class frequencies (chance baseline)

Resuming a Lightning run itself uses Lightning's own ``last.ckpt`` (``Trainer.fit(ckpt_path=...)``);
Lightning 2.6 reads it through ``torch.load`` with torch's default ``weights_only=True``, which is
why :class:`~mesm.train.module.EmotionModule` stores its RNG states as tensors too.
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

CHECKPOINT_FORMAT = 1

# Run-config keys that change the model's weights or their meaning; a checkpoint trained with
# another value of any of them is refused. (The sparse backend is not one: both backends share
# weights, so a GPU-trained spconv checkpoint may be evaluated with the torch backend.)
MODEL_CONFIG_KEYS: tuple[str, ...] = (
    "model",
    "modalities",
    "top_p",
    "attention",
    "text_model",
    "text_max_len",
    "img_interval",
)

_PLAIN_SCALARS = (str, int, float, bool, type(None))


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable or of another format."""


class CheckpointMismatchError(ValueError):
    """A checkpoint was trained with another model config or label set than the one asked for."""


@dataclass
class Checkpoint:
    """A loaded checkpoint.

    Attributes:
        path: the file it was read from.
        state_dict: model parameters and buffers.
        config: the run config it was trained with.
        class_names: label names in logit order.
        thresholds: (C,) validation-chosen thresholds.
        training: resume state or None.
        train_prior: (C,) training-split class frequencies, or None.
        format_version: the file's format version.
    """

    path: Path
    state_dict: dict[str, Tensor]
    config: dict[str, Any]
    class_names: list[str]
    thresholds: np.ndarray
    training: dict[str, Any] | None
    train_prior: np.ndarray | None
    format_version: int


def check_plain(value: Any, where: str = "config") -> None:
    """Raise TypeError naming the first entry of ``value`` that is not a tensor or plain data."""
    if isinstance(value, (Tensor, *_PLAIN_SCALARS)):
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str | int):
                raise TypeError(f"{where} has a non-string key {key!r} ({type(key).__name__})")
            check_plain(item, f"{where}[{key!r}]")
        return
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            check_plain(item, f"{where}[{index}]")
        return
    raise TypeError(
        f"{where} is a {type(value).__name__}; a checkpoint may hold only tensors, dicts, lists, "
        "tuples, str, int, float, bool and None (convert it, e.g. Path -> str)"
    )


def rng_state() -> dict[str, Any]:
    """The process's torch, CUDA, numpy and Python RNG states, as tensors and plain values."""
    numpy_state: tuple[Any, ...] = tuple(np.random.get_state())
    python_version, python_internal, python_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np.asarray(numpy_state[1], dtype=np.int64)),
            "pos": int(numpy_state[2]),
            "has_gauss": int(numpy_state[3]),
            "cached_gaussian": float(numpy_state[4]),
        },
        "python": {
            "version": int(python_version),
            "internal": torch.tensor(python_internal, dtype=torch.int64),
            "gauss_next": python_gauss,
        },
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore states captured by :func:`rng_state`."""
    torch.set_rng_state(state["torch"].cpu())
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            numpy_state["keys"].numpy().astype(np.uint32),
            int(numpy_state["pos"]),
            int(numpy_state["has_gauss"]),
            float(numpy_state["cached_gaussian"]),
        )
    )
    python_state = state["python"]
    random.setstate(
        (
            int(python_state["version"]),
            tuple(int(value) for value in python_state["internal"].tolist()),
            python_state["gauss_next"],
        )
    )
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = list(state["cuda"])
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.cpu() for s in cuda_states])


def save_checkpoint(
    path: str | os.PathLike[str],
    *,
    state_dict: Mapping[str, Tensor],
    config: Mapping[str, Any],
    class_names: Sequence[str],
    thresholds: np.ndarray | Sequence[float],
    training: Mapping[str, Any] | None = None,
    train_prior: np.ndarray | Sequence[float] | None = None,
) -> Path:
    """Write a weights_only-loadable checkpoint, atomically (a partial file never replaces one).

    Args:
        path: destination file.
        state_dict: the model's ``state_dict()``.
        config: the resolved run config (plain data only; checked, with the offending key named).
        class_names: C label names in logit order.
        thresholds: (C,) per-class thresholds.
        training: optional resume state (plain data and tensors).
        train_prior: optional (C,) training-split class frequencies (for the chance baseline of a
            later evaluation).

    Returns:
        The written path.
    """
    path = Path(path)
    thresholds_tensor = torch.as_tensor(np.asarray(thresholds, dtype=np.float64))
    names = [str(name) for name in class_names]
    if thresholds_tensor.shape != (len(names),):
        raise ValueError(f"{tuple(thresholds_tensor.shape)} thresholds for {len(names)} classes")
    check_plain(dict(config), "config")
    if training is not None:
        check_plain(dict(training), "training")
    payload = {
        "format_version": CHECKPOINT_FORMAT,
        "state_dict": {key: value.detach().cpu() for key, value in state_dict.items()},
        "config": dict(config),
        "class_names": names,
        "thresholds": thresholds_tensor,
        "training": None if training is None else dict(training),
        "train_prior": None
        if train_prior is None
        else torch.as_tensor(np.asarray(train_prior, dtype=np.float64)),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    torch.save(payload, temporary)
    os.replace(temporary, path)
    return path


def _describe(value: Any) -> str:
    return "<not set>" if value is None else str(value)


def _normalise(value: Any) -> Any:
    # YAML/JSON round trips turn tuples into lists; compare contents, not container types.
    if isinstance(value, tuple | list):
        return [_normalise(item) for item in value]
    return value


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    expected_config: Mapping[str, Any] | None = None,
    expected_classes: Sequence[str] | None = None,
    model_keys: Sequence[str] = MODEL_CONFIG_KEYS,
    map_location: str | torch.device = "cpu",
) -> Checkpoint:
    """Read a checkpoint with ``weights_only=True`` and verify it matches the run.

    Args:
        path: the checkpoint file.
        expected_config: the config asked for now; each of ``model_keys`` present in either this
            or the checkpoint's config must be equal.
        expected_classes: the label names asked for now (order matters).
        model_keys: config keys that define the model.
        map_location: where tensors are loaded.

    Raises:
        CheckpointError: missing, unreadable or corrupt file, unknown format (names the file).
        CheckpointMismatchError: names every differing key and the label-name difference.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} does not exist")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises many types for a bad file; all mean the same here
        raise CheckpointError(
            f"cannot read checkpoint {path}: the file is corrupt, truncated or holds pickled "
            f"objects that weights_only loading refuses ({type(error).__name__}: {error})"
        ) from error
    if not isinstance(payload, dict) or "format_version" not in payload:
        raise CheckpointError(
            f"{path} is not a mesm checkpoint (no format_version); Lightning's .ckpt files are "
            "exported to best.pt/last.pt by mesm.train.fit"
        )
    version = payload["format_version"]
    if version != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"checkpoint {path} has format version {version}; this mesm reads version "
            f"{CHECKPOINT_FORMAT}"
        )
    config = dict(payload["config"])
    class_names = list(payload["class_names"])

    problems: list[str] = []
    if expected_config is not None:
        for key in model_keys:
            if key not in expected_config and key not in config:
                continue
            stored, asked = config.get(key), expected_config.get(key)
            if _normalise(stored) != _normalise(asked):
                problems.append(
                    f"checkpoint was trained with {key}={_describe(stored)}, "
                    f"you asked for {key}={_describe(asked)}"
                )
    if expected_classes is not None and list(expected_classes) != class_names:
        problems.append(
            f"checkpoint predicts classes {class_names}, the data has {list(expected_classes)}"
        )
    if problems:
        raise CheckpointMismatchError(
            f"checkpoint {path} does not match this run: " + "; ".join(problems)
        )

    return Checkpoint(
        path=path,
        state_dict=dict(payload["state_dict"]),
        config=config,
        class_names=class_names,
        thresholds=payload["thresholds"].numpy().astype(np.float64),
        training=payload["training"],
        train_prior=None
        if payload.get("train_prior") is None
        else payload["train_prior"].numpy().astype(np.float64),
        format_version=int(version),
    )


def load_lightning_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a Lightning ``.ckpt`` file with ``weights_only=True``, naming the file on error."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Lightning checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(f"cannot read Lightning checkpoint {path}: {error}") from error
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path} is not a Lightning checkpoint")
    return payload


__all__ = [
    "CHECKPOINT_FORMAT",
    "MODEL_CONFIG_KEYS",
    "Checkpoint",
    "CheckpointError",
    "CheckpointMismatchError",
    "check_plain",
    "load_checkpoint",
    "load_lightning_checkpoint",
    "rng_state",
    "save_checkpoint",
    "set_rng_state",
]
