"""What the Trainer keeps track of: an epoch's running totals, early stopping, the scalars it logs.

``EpochTotals`` are the loss, correct and count sums of the epoch so far (a mid-epoch checkpoint
holds them as ``epoch_sums``). ``EarlyStopping`` holds the best validation loss and the epochs
since it improved (both go into checkpoints, so a resumed run stops when the uninterrupted one
would). ``ScalarLog`` writes the
epoch and step scalars to TensorBoard (when ``tensorboard_dir`` is set, on the main process) and
the epoch line to the console log. TensorBoard is imported, and its ``SummaryWriter`` made, only
when the first scalar is written (or the writer asked for, or training ends): the import costs
~0.1-0.3 s, which a run without ``tensorboard_dir`` never pays and a run with one pays after its
start-up instead of before its first step. The event files are the ones an eager writer makes.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import torch

from ..folders import writable_folder_problem
from .distributed import DistContext, all_reduce_sum

log = logging.getLogger("seispolarity.training")


@dataclass
class EpochTotals:
    """An epoch's running sums, kept on the training device: adding a step's numbers never waits
    for the device (a new tensor from a Python number would be a blocking copy on CUDA)."""

    loss: torch.Tensor  # the loss summed over traces (float64)
    correct: torch.Tensor  # traces classified right
    count: torch.Tensor  # traces seen

    @classmethod
    def from_tensor(cls, sums: torch.Tensor, device: torch.device | str = "cpu") -> EpochTotals:
        """From the checkpoint's ``epoch_sums``: ``[loss, correct, count]``."""
        sums = sums.to(device=device, dtype=torch.float64)
        return cls(*(value.clone() for value in sums.unbind()))

    @classmethod
    def zeros(cls, device: torch.device | str = "cpu") -> EpochTotals:
        return cls.from_tensor(torch.zeros(3), device)

    def as_tensor(self) -> torch.Tensor:
        return torch.stack([self.loss, self.correct, self.count])

    def add(self, loss_sum: torch.Tensor, correct: torch.Tensor, count: int) -> None:
        self.loss += loss_sum.double()
        self.correct += correct.double()
        self.count += count

    def all_reduce(self, ctx: DistContext) -> EpochTotals:
        return EpochTotals.from_tensor(all_reduce_sum(self.as_tensor(), ctx), self.loss.device)

    def mean_loss(self) -> float:
        return float(self.loss / self.count.clamp_min(1))

    def accuracy(self) -> float:
        return float(self.correct / self.count.clamp_min(1))


@dataclass
class EarlyStopping:
    """Stop when the validation loss has not improved by ``min_delta`` for ``patience`` epochs
    (``patience=None``: never)."""

    patience: int | None = None
    min_delta: float = 0.0
    best_val_loss: float = math.inf
    bad_epochs: int = 0

    def update(self, val_loss: float) -> bool:
        """Record one validation loss; returns whether it improved on the best."""
        improved = val_loss < self.best_val_loss - self.min_delta
        if improved:
            self.best_val_loss, self.bad_epochs = val_loss, 0
        else:
            self.bad_epochs += 1
        return improved

    @property
    def should_stop(self) -> bool:
        return self.patience is not None and self.bad_epochs >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {"best_val_loss": self.best_val_loss, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_val_loss = float(state.get("best_val_loss", math.inf))
        self.bad_epochs = int(state.get("bad_epochs", 0))


def log_eval_scalars(writer, prefix: str, metrics: dict[str, Any], step: int) -> None:
    """An evaluation's accuracy, loss and per-class precision / recall / F1 under ``prefix/``."""
    writer.add_scalar(f"{prefix}/accuracy", metrics["accuracy"], step)
    writer.add_scalar(f"{prefix}/loss", metrics["loss"], step)
    for name in ("precision", "recall", "f1"):
        for cls, value in metrics[name].items():
            writer.add_scalar(f"{prefix}/{name}_{cls}", value, step)


class ScalarLog:
    """The training scalars, to TensorBoard (``writer``: None until opened or without a folder)
    and to the console log."""

    def __init__(self, tensorboard_dir: str | None, enabled: bool = True) -> None:
        self.tensorboard_dir = tensorboard_dir if enabled else None
        self._writer = None
        self._pending: dict[str, Any] | None = None  # opened, writer not made yet: its arguments

    def open(self, epoch: int = 0) -> None:
        """Open the log for training; a resumed run (``epoch`` > 0) drops the events logged after its
        checkpoint. The ``SummaryWriter`` is made at the first scalar (``writer``); a folder it could
        not write fails here, at the start of training, as an eager writer would."""
        if self._writer is None and self._pending is None and self.tensorboard_dir:
            self._pending = {"log_dir": self.tensorboard_dir, "purge_step": epoch + 1 if epoch else None}
            if writable_folder_problem(self.tensorboard_dir):
                self._make()  # raises SummaryWriter's own error now

    def _make(self):
        from torch.utils.tensorboard import SummaryWriter  # lazily: see the module docstring

        pending, self._pending = self._pending, None
        self._writer = SummaryWriter(**pending)
        return self._writer

    @property
    def writer(self):
        """The ``SummaryWriter`` once opened (made now if it is not yet), else None."""
        return self._make() if self._writer is None and self._pending is not None else self._writer

    def scalar(self, tag: str, value: float, step: int) -> None:
        writer = self.writer
        if writer is not None:
            writer.add_scalar(tag, value, step)

    def evaluation(self, prefix: str, metrics: dict[str, Any], step: int) -> None:
        writer = self.writer
        if writer is not None:
            log_eval_scalars(writer, prefix, metrics, step)

    def epoch(self, record: dict[str, Any], epochs: int) -> None:
        """One finished epoch: the history ``record`` (with ``val_metrics`` when validated)."""
        epoch, val = record["epoch"], record.get("val_metrics")
        if val is not None:
            self.evaluation("Val", val, epoch)
            self.scalar("Loss/val", val["loss"], epoch)
            self.scalar("Accuracy/val", val["accuracy"], epoch)
        self.scalar("Loss/train", record["train_loss"], epoch)
        self.scalar("Accuracy/train", record["train_accuracy"], epoch)
        self.scalar("LR", record["lr"], epoch)
        log.info("epoch %d/%d: train loss %.4f acc %.4f%s (%.0f samples/s)", epoch, epochs, record["train_loss"],
                 record["train_accuracy"],
                 f", val loss {val['loss']:.4f} acc {val['accuracy']:.4f}" if val is not None else "",
                 record["samples_per_second"])

    def flush(self) -> None:
        """Flush the events; an opened log that wrote nothing yet makes its (empty) event file now,
        as an eager writer would have (the Trainer flushes when training ends or stops)."""
        writer = self.writer
        if writer is not None:
            writer.flush()

    def close(self) -> None:
        writer = self.writer
        if writer is not None:
            writer.close()
            self._writer = None
