"""Train with Lightning, then evaluate the best checkpoint honestly and fill the run folder.

Run folder written by :func:`fit` (``out_dir``)::

    metrics.json        validation and test metrics, per class and averages, thresholds, baselines
    predictions.csv     id, split, one probability and one label column per class
    curves.csv/.png     train loss and validation average F1 per epoch
    confusion.png       per-class 2x2 matrices at the chosen thresholds (+ argmax matrix if
                        single-label), test split
    best.pt, last.pt    weights_only checkpoints (mesm.train.checkpoint) with thresholds
    lightning/          Lightning's own checkpoints (resume) and CSV logs

:func:`evaluate` (``--eval-only``) loads a ``best.pt``/``last.pt``, reuses ITS thresholds and writes
the same metrics and predictions files, so train-then-evaluate gives identical test metrics.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.strategies import DDPStrategy
from torch import nn
from torch.utils.data import DataLoader

from mesm.data.batch import Batch
from mesm.train.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_lightning_checkpoint,
    save_checkpoint,
)
from mesm.train.loss import pos_weight_from_labels
from mesm.train.metrics import (
    apply_thresholds,
    choose_thresholds,
    compute_metrics,
    confusion_counts,
    format_metrics_table,
    primary_metrics,
)
from mesm.train.module import CHECKPOINT_KEY, LAST_CHECKPOINT_NAME, EmotionModule

MONITOR = "val/avg_f1"
LIGHTNING_DIR = "lightning"


@dataclass
class RunResult:
    """What a fit or an evaluation produced.

    Attributes:
        metrics: the content of ``metrics.json`` (``validation`` and ``test`` entries among others).
        files: name -> path of every file written into the run folder.
        is_global_zero: False on the non-zero ranks of a DDP run, which evaluate nothing (their
            ``metrics`` is empty).
    """

    metrics: dict[str, Any] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)
    is_global_zero: bool = True

    def summary(self, dataset_kind: str) -> str:
        """Printable tables of validation and test metrics and the list of written files."""
        if not self.metrics:
            return ""
        parts = [
            format_metrics_table(self.metrics[split], dataset_kind, title=f"== {split} ==")
            for split in ("validation", "test")
            if split in self.metrics
        ]
        parts.append(
            "files:\n" + "\n".join(f"  {name}: {path}" for name, path in self.files.items())
        )
        return "\n\n".join(parts)


# --------------------------------------------------------------------------------- helpers
def launched_by_torchrun() -> bool:
    """True inside a process started by ``torchrun`` (it sets LOCAL_RANK and WORLD_SIZE)."""
    return (
        "LOCAL_RANK" in os.environ
        and "WORLD_SIZE" in os.environ
        and "TORCHELASTIC_RUN_ID" in os.environ
    )


def _uses_gpu(accelerator: str) -> bool:
    if accelerator in ("gpu", "cuda"):
        return True
    return accelerator == "auto" and torch.cuda.is_available()


def resolve_strategy(
    devices: int | str,
    accelerator: str,
    start_method: str = "popen",
    find_unused_parameters: bool = False,
) -> tuple[Any, int | str, int]:
    """Choose Lightning's strategy, devices and nodes: DDP when several processes train.

    DDP is used when ``devices`` > 1 or under ``torchrun`` (whose process count then sets the
    devices and nodes); its backend is NCCL on GPUs and gloo on CPU.

    Args:
        devices: device count (or Lightning's "auto").
        accelerator: "auto", "cpu", "gpu"/"cuda".
        start_method: "popen" (Lightning re-launches the script: the CLI) or "spawn"
            (torch.multiprocessing: notebooks and tests).
        find_unused_parameters: let DDP tolerate parameters that get no gradient in a step
            (e.g. a text model's unused pooler); slower, so off unless a model needs it.

    Returns:
        (strategy, devices, num_nodes) for ``lightning.Trainer``.
    """
    num_nodes = 1
    if launched_by_torchrun():
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ["WORLD_SIZE"]))
        devices = local_world
        num_nodes = max(1, int(os.environ["WORLD_SIZE"]) // local_world)
    several = launched_by_torchrun() or (isinstance(devices, int) and devices > 1)
    if not several:
        return "auto", devices, num_nodes
    backend = "nccl" if _uses_gpu(accelerator) else "gloo"
    if launched_by_torchrun():
        strategy = DDPStrategy(
            process_group_backend=backend, find_unused_parameters=find_unused_parameters
        )
    else:
        strategy = DDPStrategy(
            process_group_backend=backend,
            start_method=start_method,  # type: ignore[arg-type]
            find_unused_parameters=find_unused_parameters,
        )
    return strategy, devices, num_nodes


def _strip_prefix(
    state_dict: Mapping[str, torch.Tensor], prefix: str = "model."
) -> dict[str, torch.Tensor]:
    """The wrapped model's weights from a LightningModule state dict (drops the loss buffer)."""
    return {
        key[len(prefix) :]: value for key, value in state_dict.items() if key.startswith(prefix)
    }


def _callback_state(checkpoint: Mapping[str, Any], name: str) -> dict[str, Any]:
    """State of the callback class ``name`` that monitors val/avg_f1."""
    # Lightning keys callback states by class name and settings: "EarlyStopping{'monitor': ..."
    for key, value in checkpoint.get("callbacks", {}).items():
        if str(key).startswith(name) and repr(MONITOR) in str(key):
            return dict(value)
    return {}


def _as_float(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) else number


def _eval_device(accelerator: str) -> torch.device:
    return (
        torch.device("cuda")
        if _uses_gpu(accelerator) and torch.cuda.is_available()
        else torch.device("cpu")
    )


@torch.no_grad()
def predict(
    model: nn.Module, loader: DataLoader[Any], device: torch.device
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Probabilities of a whole split, in loader order, in float32 on one device.

    Returns:
        ids (N), probabilities (N, C) float64, labels (N, C) int64.
    """
    was_training = model.training
    model.eval()
    model.to(device)
    ids: list[str] = []
    probabilities: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    for batch in loader:
        if not isinstance(batch, Batch):
            raise TypeError(f"loaders must yield mesm.data.batch.Batch, got {type(batch).__name__}")
        batch = batch.to(device)
        logits = model(batch.inputs).logits.float()
        ids.extend(batch.ids)
        probabilities.append(torch.sigmoid(logits).cpu().double().numpy())
        labels.append(batch.labels.cpu().numpy().round().astype(np.int64))
    model.train(was_training)
    if not ids:
        raise ValueError("the loader yielded no batch")
    return ids, np.concatenate(probabilities), np.concatenate(labels)


def _write_predictions(
    path: Path,
    class_names: Sequence[str],
    splits: Mapping[str, tuple[list[str], np.ndarray, np.ndarray]],
) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                "id",
                "split",
                *(f"prob_{name}" for name in class_names),
                *(f"label_{name}" for name in class_names),
            ]
        )
        for split, (ids, probabilities, labels) in splits.items():
            for row, sample_id in enumerate(ids):
                writer.writerow(
                    [
                        sample_id,
                        split,
                        *(repr(float(value)) for value in probabilities[row]),
                        *(int(value) for value in labels[row]),
                    ]
                )


def _write_json(path: Path, payload: Mapping[str, Any]) -> None:
    path.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n")


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as error:  # pragma: no cover - matplotlib is a core dependency
        raise ImportError("figures need matplotlib: `uv sync` installs it") from error
    matplotlib.use("Agg")  # files only; never open a window (and work on headless machines)
    import matplotlib.pyplot as plt

    return plt


def write_curves(history: Sequence[Mapping[str, float]], out_dir: Path) -> dict[str, Path]:
    """``curves.csv`` and ``curves.png``: train loss and validation average F1 per epoch."""
    csv_path, png_path = out_dir / "curves.csv", out_dir / "curves.png"
    columns = ("epoch", "train_loss", "val_loss", "val_avg_f1")
    with csv_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for row in history:
            writer.writerow([row[column] for column in columns])
    plt = _pyplot()
    figure, (loss_axis, f1_axis) = plt.subplots(1, 2, figsize=(9, 3.5))
    epochs = [row["epoch"] + 1 for row in history]
    loss_axis.plot(epochs, [row["train_loss"] for row in history], marker="o", label="train")
    loss_axis.plot(epochs, [row["val_loss"] for row in history], marker="o", label="validation")
    loss_axis.set(xlabel="epoch", ylabel="weighted BCE loss", title="loss")
    loss_axis.legend()
    f1_axis.plot(epochs, [row["val_avg_f1"] for row in history], marker="o", color="tab:green")
    f1_axis.set(xlabel="epoch", ylabel="average F1", title="validation average F1", ylim=(0, 1))
    figure.tight_layout()
    figure.savefig(png_path, dpi=100)
    plt.close(figure)
    return {"curves_csv": csv_path, "curves_png": png_path}


def write_confusion_figure(
    probabilities: np.ndarray,
    labels: np.ndarray,
    thresholds: np.ndarray,
    class_names: Sequence[str],
    path: Path,
    title: str,
) -> Path:
    """Per-class 2x2 confusion matrices at ``thresholds`` and, for single-label data, the argmax
    confusion matrix (rows: true class)."""
    plt = _pyplot()
    counts = confusion_counts(apply_thresholds(probabilities, thresholds), labels.astype(bool))
    single_label = bool((labels.sum(axis=1) == 1).all())
    num_classes = len(class_names)
    columns = num_classes + (2 if single_label else 0)
    figure = plt.figure(figsize=(2.3 * columns, 2.8))
    for c, name in enumerate(class_names):
        axis = figure.add_subplot(1, columns, c + 1)
        # Rows: true absent/present; columns: predicted absent/present.
        matrix = np.array([[counts["tn"][c], counts["fp"][c]], [counts["fn"][c], counts["tp"][c]]])
        axis.imshow(matrix, cmap="Blues")
        for (row, column), value in np.ndenumerate(matrix):
            axis.text(column, row, str(value), ha="center", va="center")
        axis.set_xticks([0, 1], ["no", "yes"])
        axis.set_yticks([0, 1], ["no", "yes"])
        axis.set_title(f"{name} @ {thresholds[c]:.2f}", fontsize=9)
        axis.set_xlabel("predicted")
        if c == 0:
            axis.set_ylabel("true")
    if single_label:
        axis = figure.add_subplot(1, columns, (num_classes + 1, columns))
        true_class, predicted_class = labels.argmax(axis=1), probabilities.argmax(axis=1)
        matrix = np.bincount(true_class * num_classes + predicted_class, minlength=num_classes**2)
        matrix = matrix.reshape(num_classes, num_classes)
        axis.imshow(matrix, cmap="Blues")
        for (row, column), value in np.ndenumerate(matrix):
            axis.text(column, row, str(value), ha="center", va="center", fontsize=7)
        axis.set_xticks(range(num_classes), class_names, rotation=90, fontsize=7)
        axis.set_yticks(range(num_classes), class_names, fontsize=7)
        axis.set_title("argmax (rows: true)", fontsize=9)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _evaluate_and_write(
    model: nn.Module,
    *,
    val_loader: DataLoader[Any],
    test_loader: DataLoader[Any],
    thresholds: np.ndarray | None,
    class_names: Sequence[str],
    train_prior: np.ndarray | None,
    out_dir: Path,
    dataset_kind: str,
    device: torch.device,
    extra: Mapping[str, Any],
) -> tuple[dict[str, Any], dict[str, Path], np.ndarray]:
    """Predict validation and test, tune thresholds on validation if none are given, write files."""
    splits = {
        "validation": predict(model, val_loader, device),
        "test": predict(model, test_loader, device),
    }
    _, val_probabilities, val_labels = splits["validation"]
    if thresholds is None:
        thresholds = choose_thresholds(val_probabilities, val_labels)
        source = "tuned on validation"
    else:
        source = "stored in the checkpoint"
    metrics: dict[str, Any] = {
        **extra,
        "dataset_kind": dataset_kind,
        "primary_metrics": list(primary_metrics(dataset_kind)),
        "class_names": list(class_names),
        "thresholds": {name: float(thresholds[c]) for c, name in enumerate(class_names)},
        "threshold_source": source,
        "train_prior": None if train_prior is None else [float(v) for v in train_prior],
    }
    for split, (_, probabilities, labels) in splits.items():
        metrics[split] = compute_metrics(
            probabilities, labels, thresholds, class_names, train_prior
        )
    files = {"metrics": out_dir / "metrics.json", "predictions": out_dir / "predictions.csv"}
    _write_json(files["metrics"], metrics)
    _write_predictions(files["predictions"], class_names, splits)
    _, test_probabilities, test_labels = splits["test"]
    files["confusion"] = write_confusion_figure(
        test_probabilities,
        test_labels,
        thresholds,
        class_names,
        out_dir / "confusion.png",
        title=f"test confusion (thresholds {source})",
    )
    return metrics, files, thresholds


def _labels_matrix(train_labels: np.ndarray | torch.Tensor) -> np.ndarray:
    labels = np.asarray(train_labels, dtype=np.float64)
    if labels.ndim != 2:
        raise ValueError(f"train_labels must be (N, C), got {labels.shape}")
    return labels


# --------------------------------------------------------------------------------- fit
def fit(
    model: nn.Module,
    *,
    train_loader: DataLoader[Any],
    val_loader: DataLoader[Any],
    test_loader: DataLoader[Any],
    class_names: Sequence[str],
    train_labels: np.ndarray | torch.Tensor,
    config: Mapping[str, Any],
    out_dir: str | os.PathLike[str],
    dataset_kind: str,
    lr: float,
    text_lr_factor: float = 10.0,
    weight_decay: float = 0.0,
    epochs: int = 40,
    early_stop: int = 6,
    precision: str = "32-true",
    devices: int | str = 1,
    accelerator: str = "auto",
    seed: int = 0,
    resume: bool = False,
    progress_bar: bool = True,
    deterministic: bool = True,
    start_method: str = "popen",
    find_unused_parameters: bool = False,
    log_every_n_steps: int = 10,
    callbacks: Sequence[Callback] = (),
) -> RunResult:
    """Train ``model``, then evaluate its best checkpoint on validation and test.

    Call ``lightning.seed_everything(seed, workers=True)`` BEFORE building the model (its initial
    weights come from the global RNG) and build the train loader with
    :func:`mesm.train.sampling.make_loader` so a resumed run sees the same data order.

    Args:
        model: maps ``batch.inputs`` to an output with ``logits`` (B, C).
        train_loader: training batches (shuffled).
        val_loader: validation batches, fixed order.
        test_loader: test batches, fixed order.
        class_names: C label names in logit order.
        train_labels: (N, C) 0/1 labels of the whole training split (pos_weight, chance prior).
        config: the resolved run config (plain data), stored in the checkpoints.
        out_dir: the run folder.
        dataset_kind: "iemocap", "mosei" or "demo": which metrics lead the tables.
        lr: Adam learning rate.
        text_lr_factor: text encoder learning rate = lr / text_lr_factor.
        weight_decay: Adam weight decay.
        epochs: maximum epochs.
        early_stop: stop after this many validations without a gain in val/avg_f1.
        precision: Lightning precision ("32-true", "16-mixed", "bf16-mixed").
        devices: devices per node; > 1 (or torchrun) trains data-parallel.
        accelerator: "auto", "cpu", "gpu".
        seed: the run seed (the Lightning seed is set again here for the trainer's processes).
        resume: continue from ``out_dir/lightning/last.ckpt`` (an error if it is missing).
        progress_bar: show Lightning's progress bar.
        deterministic: ask torch for deterministic kernels.
        start_method: DDP launch, "popen" (the CLI) or "spawn" (tests, notebooks).
        find_unused_parameters: see :func:`resolve_strategy`.
        log_every_n_steps: CSV logging interval.
        callbacks: extra Lightning callbacks.

    Returns:
        The metrics and files; on non-zero DDP ranks an empty result.
    """
    out = Path(out_dir)
    lightning_dir = out / LIGHTNING_DIR
    checkpoint_dir = lightning_dir / "checkpoints"
    names = list(class_names)
    labels = _labels_matrix(train_labels)
    pos_weight = pos_weight_from_labels(labels, names)
    train_prior = labels.mean(axis=0)

    resume_path: Path | None = None
    if resume:
        resume_path = checkpoint_dir / LAST_CHECKPOINT_NAME
        if not resume_path.is_file():
            raise CheckpointError(
                f"--resume: no checkpoint to resume from at {resume_path} (was this run folder "
                "ever trained for one epoch?)"
            )
    out.mkdir(parents=True, exist_ok=True)

    L.seed_everything(seed, workers=True, verbose=False)
    module = EmotionModule(
        model,
        class_names=names,
        pos_weight=pos_weight,
        lr=lr,
        text_lr_factor=text_lr_factor,
        weight_decay=weight_decay,
        checkpoint_dir=checkpoint_dir,
    )
    checkpoint_callback = ModelCheckpoint(
        dirpath=checkpoint_dir,
        filename="best-epoch{epoch:03d}",
        auto_insert_metric_name=False,
        monitor=MONITOR,
        mode="max",
        save_top_k=1,
    )
    # Lightning 2.6 writes ``save_last`` only in epochs that also saved a best checkpoint, so
    # "last" is its own monitor-less callback that overwrites one file every epoch.
    last_callback = ModelCheckpoint(
        dirpath=checkpoint_dir,
        filename=Path(LAST_CHECKPOINT_NAME).stem,
        monitor=None,
        save_top_k=1,
        enable_version_counter=False,
    )
    early_stopping = EarlyStopping(monitor=MONITOR, mode="max", patience=early_stop)
    strategy, devices, num_nodes = resolve_strategy(
        devices, accelerator, start_method, find_unused_parameters
    )
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator=accelerator,
        devices=devices,
        num_nodes=num_nodes,
        strategy=strategy,
        precision=precision,  # type: ignore[arg-type]
        callbacks=[checkpoint_callback, last_callback, early_stopping, *callbacks],
        logger=CSVLogger(save_dir=str(out), name=LIGHTNING_DIR, version="logs"),
        deterministic=deterministic,
        enable_progress_bar=progress_bar,
        enable_model_summary=progress_bar,
        # A sanity pass would consume RNG and log a meaningless 2-batch F1.
        num_sanity_val_steps=0,
        log_every_n_steps=log_every_n_steps,
        default_root_dir=str(out),
    )
    trainer.fit(
        module,
        train_dataloaders=train_loader,
        val_dataloaders=val_loader,
        ckpt_path=None if resume_path is None else str(resume_path),
    )
    if not trainer.is_global_zero:
        return RunResult(is_global_zero=False)

    best_path = (
        Path(checkpoint_callback.best_model_path) if checkpoint_callback.best_model_path else None
    )
    last_path = checkpoint_dir / LAST_CHECKPOINT_NAME
    if best_path is None or not best_path.is_file():
        raise CheckpointError(
            f"training produced no best checkpoint in {checkpoint_dir} (did any validation run?)"
        )
    best = load_lightning_checkpoint(best_path)
    last = load_lightning_checkpoint(last_path)
    files: dict[str, Path] = {}

    # Evaluate the BEST weights; thresholds are re-tuned on the full validation split in one
    # process (under DDP the in-training value saw DistributedSampler's padded shards).
    model.load_state_dict(_strip_prefix(best["state_dict"]))
    metrics, eval_files, thresholds = _evaluate_and_write(
        model,
        val_loader=val_loader,
        test_loader=test_loader,
        thresholds=None,
        class_names=names,
        train_prior=train_prior,
        out_dir=out,
        dataset_kind=dataset_kind,
        device=_eval_device(accelerator),
        extra={
            "checkpoint": str(out / "best.pt"),
            "best_epoch": int(best["epoch"]),
            "epochs_trained": int(last["epoch"]) + 1,
            "best_val_avg_f1_during_training": _as_float(
                _callback_state(last, "ModelCheckpoint").get("best_model_score")
            ),
        },
    )
    files.update(eval_files)
    files["best"] = save_checkpoint(
        out / "best.pt",
        state_dict=model.state_dict(),
        config=config,
        class_names=names,
        thresholds=thresholds,
        train_prior=train_prior,
        training={"epoch": int(best["epoch"]), "global_step": int(best["global_step"])},
    )

    last_state = last.get(CHECKPOINT_KEY, {})
    last_thresholds = last_state.get("val_thresholds")
    early_state = _callback_state(last, "EarlyStopping")
    files["last"] = save_checkpoint(
        out / "last.pt",
        state_dict=_strip_prefix(last["state_dict"]),
        config=config,
        class_names=names,
        # The last epoch's own validation-tuned thresholds (from its in-training validation).
        thresholds=thresholds if last_thresholds is None else last_thresholds.numpy(),
        train_prior=train_prior,
        training={
            "epoch": int(last["epoch"]),
            "global_step": int(last["global_step"]),
            "optimizer": last["optimizer_states"][0] if last.get("optimizer_states") else None,
            "rng": last_state.get("rng"),
            "best_metric": _as_float(
                _callback_state(last, "ModelCheckpoint").get("best_model_score")
            ),
            "early_stop_wait": int(early_state.get("wait_count", 0)),
            "lightning_checkpoint": str(last_path),
        },
    )
    files.update(write_curves(last_state.get("history", []), out))
    files["lightning_checkpoints"] = checkpoint_dir
    return RunResult(metrics=metrics, files=files)


# --------------------------------------------------------------------------------- evaluate
def evaluate(
    model: nn.Module,
    *,
    checkpoint_path: str | os.PathLike[str],
    val_loader: DataLoader[Any],
    test_loader: DataLoader[Any],
    class_names: Sequence[str],
    config: Mapping[str, Any],
    out_dir: str | os.PathLike[str],
    dataset_kind: str,
    accelerator: str = "auto",
) -> RunResult:
    """``--eval-only``: evaluate a checkpoint with ITS stored thresholds (never re-tuned).

    Args:
        model: a freshly built model of the checkpoint's architecture.
        checkpoint_path: a ``best.pt``/``last.pt`` written by :func:`fit`.
        val_loader: validation batches, fixed order.
        test_loader: test batches, fixed order.
        class_names: the data's label names (must equal the checkpoint's).
        config: the run config asked for (its model-defining keys must equal the checkpoint's).
        out_dir: where metrics.json, predictions.csv and confusion.png are written.
        dataset_kind: "iemocap", "mosei" or "demo".
        accelerator: "auto", "cpu" or "gpu".

    Raises:
        CheckpointError, CheckpointMismatchError: see :func:`mesm.train.checkpoint.load_checkpoint`.
    """
    checkpoint = load_checkpoint(
        checkpoint_path, expected_config=config, expected_classes=list(class_names)
    )
    try:
        model.load_state_dict(checkpoint.state_dict)
    except RuntimeError as error:
        raise CheckpointError(
            f"the weights in {checkpoint.path} do not fit the model built for this run: {error}"
        ) from error
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics, files, _ = _evaluate_and_write(
        model,
        val_loader=val_loader,
        test_loader=test_loader,
        thresholds=checkpoint.thresholds,
        class_names=checkpoint.class_names,
        train_prior=checkpoint.train_prior,
        out_dir=out,
        dataset_kind=dataset_kind,
        device=_eval_device(accelerator),
        extra={"checkpoint": str(checkpoint.path)},
    )
    return RunResult(metrics=metrics, files=files)


__all__ = [
    "MONITOR",
    "RunResult",
    "evaluate",
    "fit",
    "launched_by_torchrun",
    "predict",
    "resolve_strategy",
    "write_confusion_figure",
    "write_curves",
]
