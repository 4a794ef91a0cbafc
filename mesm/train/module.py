"""The LightningModule that trains any mesm model: loss, optimiser, validation F1, NaN guard.

The wrapped model takes ``batch.inputs`` (a mapping keyed by modality) and returns an output with
``logits`` (B, C) (and optionally ``flops``); nothing else about it is assumed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor, nn

from mesm.data.batch import Batch
from mesm.train.checkpoint import rng_state, set_rng_state
from mesm.train.loss import weighted_bce_loss
from mesm.train.metrics import THRESHOLD_GRID, apply_thresholds, choose_thresholds, confusion_counts

# Key under which the module keeps its own state inside Lightning's checkpoint dict.
CHECKPOINT_KEY = "mesm"
LAST_CHECKPOINT_NAME = "last.ckpt"


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


def average_f1(probabilities: np.ndarray, labels: np.ndarray, thresholds: np.ndarray) -> float:
    """Mean over classes of binary F1 at ``thresholds``: (N, C), (N, C), (C,) -> scalar."""
    counts = confusion_counts(apply_thresholds(probabilities, thresholds), labels.astype(bool))
    denominator = 2 * counts["tp"] + counts["fp"] + counts["fn"]
    f1 = np.divide(
        2.0 * counts["tp"], denominator, out=np.zeros(len(thresholds)), where=denominator > 0
    )
    return float(f1.mean())


class EmotionModule(L.LightningModule):
    """Trains ``model`` with the paper's weighted BCE and Adam; validates with tuned-threshold F1.

    Logged: ``train/loss`` (per step and epoch mean), ``val/loss``, ``val/avg_f1`` (average binary
    F1 at per-class thresholds tuned on this validation epoch's predictions, the early-stopping and
    best-checkpoint criterion) and ``train/gflops`` when the model reports FLOPs.

    Args:
        model: maps ``batch.inputs`` to an output with ``logits`` (B, C).
        class_names: C label names in logit order.
        pos_weight: (C,) BCE positive weights (negatives / positives of the training split).
        lr: Adam learning rate.
        text_lr_factor: the text encoder trains at ``lr / text_lr_factor`` (when the model
            provides ``parameter_groups``; otherwise every parameter trains at ``lr``).
        weight_decay: Adam weight decay.
        checkpoint_dir: where Lightning writes ``last.ckpt``; named in the NaN-loss error.
        threshold_grid: candidate thresholds for the validation F1.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        class_names: Sequence[str],
        pos_weight: Tensor,
        lr: float,
        text_lr_factor: float = 10.0,
        weight_decay: float = 0.0,
        checkpoint_dir: str | Path | None = None,
        threshold_grid: Sequence[float] | np.ndarray = THRESHOLD_GRID,
    ) -> None:
        super().__init__()
        if pos_weight.shape != (len(class_names),):
            raise ValueError(f"pos_weight {tuple(pos_weight.shape)} for {len(class_names)} classes")
        if lr <= 0 or text_lr_factor <= 0:
            raise ValueError(f"lr ({lr}) and text_lr_factor ({text_lr_factor}) must be positive")
        self.model = model
        self.class_names = list(class_names)
        self.loss_fn = weighted_bce_loss(pos_weight)
        self.lr = lr
        self.text_lr_factor = text_lr_factor
        self.weight_decay = weight_decay
        self.checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
        self.threshold_grid = np.asarray(threshold_grid, dtype=np.float64)
        self.val_thresholds: np.ndarray | None = None
        # One row per validated epoch: epoch, train_loss, val_loss, val_avg_f1. Kept in the
        # checkpoint so a resumed run's curves cover the whole run.
        self.history: list[dict[str, float]] = []
        self._val_probabilities: list[Tensor] = []
        self._val_labels: list[Tensor] = []
        self._val_loss_sum = torch.zeros(())
        self._val_count = torch.zeros(())
        self._train_loss_sum = torch.zeros(())
        self._train_count = torch.zeros(())

    # ----------------------------------------------------------------------------- plumbing
    def forward(self, batch: Batch) -> Any:
        return self.model(batch.inputs)

    def transfer_batch_to_device(
        self, batch: Any, device: torch.device, dataloader_idx: int
    ) -> Any:
        # Lightning cannot move our Batch dataclass by itself.
        if isinstance(batch, Batch):
            return batch.to(device)
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        parameter_groups = getattr(self.model, "parameter_groups", None)
        if callable(parameter_groups):
            groups = parameter_groups(self.lr, self.text_lr_factor)
        else:
            groups = [{"params": [p for p in self.model.parameters() if p.requires_grad]}]
        return torch.optim.Adam(groups, lr=self.lr, weight_decay=self.weight_decay)

    def _last_good_checkpoint(self) -> str:
        if (
            self.checkpoint_dir is not None
            and (self.checkpoint_dir / LAST_CHECKPOINT_NAME).is_file()
        ):
            return str(self.checkpoint_dir / LAST_CHECKPOINT_NAME)
        return "none saved yet (the loss failed before the first validation)"

    # ----------------------------------------------------------------------------- training
    def on_train_epoch_start(self) -> None:
        self._train_loss_sum = torch.zeros((), device=self.device)
        self._train_count = torch.zeros((), device=self.device)

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        output = self.model(batch.inputs)
        # Loss in float32 even under mixed precision: BCE on half logits loses the small terms.
        loss = self.loss_fn(output.logits.float(), batch.labels.float())
        # Every rank must take the same decision or the others would hang in the next all-reduce.
        bad = self.trainer.strategy.reduce_boolean_decision(
            not bool(torch.isfinite(loss)), all=False
        )
        if bad:
            raise NonFiniteLossError(
                f"training loss is {loss.item()} at global step {self.global_step} "
                f"(epoch {self.current_epoch}, batch {batch_idx}); last good checkpoint: "
                f"{self._last_good_checkpoint()}. Try a lower --lr or --precision 32-true."
            )
        batch_size = len(batch)
        self.log(
            "train/loss",
            loss,
            on_step=True,
            on_epoch=True,
            prog_bar=True,
            sync_dist=True,
            batch_size=batch_size,
        )
        flops = getattr(output, "flops", None)
        if flops is not None:
            self.log(
                "train/gflops",
                torch.as_tensor(flops, dtype=torch.float32).mean() / 1e9,
                on_step=False,
                on_epoch=True,
                batch_size=batch_size,
            )
        self._train_loss_sum = self._train_loss_sum + loss.detach() * batch_size
        self._train_count = self._train_count + batch_size
        return loss

    # ----------------------------------------------------------------------------- validation
    def on_validation_epoch_start(self) -> None:
        self._val_probabilities, self._val_labels = [], []
        self._val_loss_sum = torch.zeros((), device=self.device)
        self._val_count = torch.zeros((), device=self.device)

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        logits = self.model(batch.inputs).logits.float()
        labels = batch.labels.float()
        self._val_loss_sum = self._val_loss_sum + self.loss_fn(logits, labels) * len(batch)
        self._val_count = self._val_count + len(batch)
        self._val_probabilities.append(torch.sigmoid(logits).detach())
        self._val_labels.append(labels.detach())

    def on_validation_epoch_end(self) -> None:
        if not self._val_probabilities:
            return
        probabilities = torch.cat(self._val_probabilities)
        labels = torch.cat(self._val_labels)
        # Under DDP each rank saw a shard; gather so every rank tunes on the whole split.
        # (N_rank, C) -> (world, N_rank, C) -> (world * N_rank, C); a no-op on one device.
        gathered_probabilities = self._gather(probabilities).reshape(-1, probabilities.shape[-1])
        gathered_labels = self._gather(labels).reshape(-1, labels.shape[-1])
        loss_sum = self._gather(self._val_loss_sum).sum()
        count = self._gather(self._val_count).sum()
        train_sum = self._gather(self._train_loss_sum).sum()
        train_count = self._gather(self._train_count).sum()

        probabilities_np = gathered_probabilities.cpu().double().numpy()
        labels_np = gathered_labels.cpu().numpy().round().astype(np.int64)
        self.val_thresholds = choose_thresholds(probabilities_np, labels_np, self.threshold_grid)
        avg_f1 = average_f1(probabilities_np, labels_np, self.val_thresholds)
        val_loss = float(loss_sum / count.clamp(min=1))
        # sync_dist is a mean of identical values here (every rank saw the gathered split).
        self.log("val/avg_f1", avg_f1, prog_bar=True, sync_dist=True)
        self.log("val/loss", val_loss, sync_dist=True)
        if not self.trainer.sanity_checking and float(train_count) > 0:
            self.history.append(
                {
                    "epoch": int(self.current_epoch),
                    "train_loss": float(train_sum / train_count),
                    "val_loss": val_loss,
                    "val_avg_f1": avg_f1,
                }
            )
        self._val_probabilities, self._val_labels = [], []

    def _gather(self, tensor: Tensor) -> Tensor:
        """(...) on every rank -> (world, ...) under DDP; unchanged on one device."""
        gathered = self.all_gather(tensor)
        assert isinstance(gathered, Tensor)
        return gathered

    # ----------------------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Only tensors and plain data: Lightning resumes with torch.load(weights_only=True).
        checkpoint[CHECKPOINT_KEY] = {
            "class_names": list(self.class_names),
            "val_thresholds": None
            if self.val_thresholds is None
            else torch.as_tensor(self.val_thresholds, dtype=torch.float64),
            "history": [dict(row) for row in self.history],
            # RNG states make a resumed run draw the same dropout masks and loader seeds as an
            # uninterrupted one.
            "rng": rng_state(),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get(CHECKPOINT_KEY)
        if state is None:
            return
        if list(state["class_names"]) != self.class_names:
            raise ValueError(
                f"checkpoint was trained on classes {list(state['class_names'])}, "
                f"this run has {self.class_names}"
            )
        thresholds = state["val_thresholds"]
        self.val_thresholds = None if thresholds is None else thresholds.numpy()
        self.history = [dict(row) for row in state["history"]]
        set_rng_state(state["rng"])


__all__ = ["CHECKPOINT_KEY", "EmotionModule", "NonFiniteLossError", "average_f1"]
