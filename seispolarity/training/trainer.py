"""The training loop: one readable loop for the Python API and the Hydra runner alike.

It reads top to bottom: ``__init__`` -> ``train`` -> ``run_epoch`` -> ``train_step`` ->
``finish_epoch`` -> ``evaluate`` -> the checkpoint state. What it is built from (device, seeds,
frozen layers, DDP) is ``setup.py``; the batches of an epoch and how they reach this process are
``batches.py``; the stop on a signal is ``signals.py``; early stopping and the scalar log are
``tracking.py``; the NaN guard's deferred look on CUDA is ``guards.py`` (docs/architecture.md).

Every random draw comes from state that a checkpoint holds (the epoch order is a function of
seed and epoch; the augmentation generator and the global RNGs are saved), so a resumed run is
bit-identical to an uninterrupted one on the CPU.
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from typing import Any, Callable

import torch
import torch.nn.functional as F

from ..console import bar as console_bar
from ..console import default_console_logging, logs_above_bars
from ..data.augment import AugmentConfig, NoiseBank, prepare_batch
from ..folders import writable_folder_problem
from ..plain import to_plain
from . import setup
from .batches import as_batched_dataset, epoch_batches, iterate_batches, prepared_batches, to_device, workers_to_start
from .checkpoint import capture_rng_state, load_checkpoint, restore_optimizer_state, restore_rng_state, save_checkpoint
from .config import TrainingConfig
from .distributed import barrier
from .guards import NanGuard, NonFiniteLossError, clip_gradients, gradient_norm
from .metrics import EvaluationSums
from .optim import build_optimizer, build_scheduler, step_scheduler
from .setup import resolve_device, seed_everything
from .signals import StopRequest, TrainingInterrupted
from .tracking import EarlyStopping, EpochTotals, ScalarLog

# NonFiniteLossError, TrainingInterrupted, resolve_device and seed_everything are also imported from here.
__all__ = ["Trainer", "EpochTotals", "NonFiniteLossError", "TrainingInterrupted", "resolve_device",
           "seed_everything"]

log = logging.getLogger("seispolarity.training")


class Trainer:
    """Train and evaluate a polarity model.

    Args:
        model: a ``PolarityModel`` (or any module mapping (B, C, L) to logits).
        dataset: training data (a WaveformDataset; a torch ``Subset`` of one also works).
        config: a TrainingConfig (defaults if None).
        val_dataset / test_dataset: explicit splits; without ``val_dataset`` a
            ``validation_split`` share is held out (event-grouped when the data has event ids).
        optimizer / scheduler: optional factories ``f(params)`` / ``f(optimizer)`` that override
            ``config.optimizer`` / ``config.lr_scheduler`` (the Hydra runner passes none: it sets both
            in the TrainingConfig, from the optimizer registry).
        augment: training augmentations: "default" (``AugmentConfig()``, the runner's default too:
            polarity flips, added noise, pick-error shifts), an AugmentConfig, or None for none.
            Models trained on the synthetic set transfer to real records with it (docs/sim2real.md).
        extra_state: plain data stored in every checkpoint (the runner stores the resolved config).
    """

    def __init__(self, model: torch.nn.Module, dataset, config: TrainingConfig | None = None,
                 val_dataset=None, test_dataset=None, optimizer: Callable | None = None,
                 scheduler: Callable | None = None, augment: AugmentConfig | str | None = "default",
                 extra_state: dict[str, Any] | None = None) -> None:
        self.config = config = config or TrainingConfig()
        default_console_logging()  # plain API: what set-up says (init_from, freeze, ...) is seen too
        self.ctx, self.device = setup.start_processes_and_device(config)
        splits = setup.split_datasets(config, dataset, val_dataset, test_dataset)
        self.train_dataset, self.val_dataset, self.test_dataset = splits
        self.batched = hasattr(self.train_dataset, "get_batch")
        self.model = model.to(self.device)
        self.input_length = int(getattr(model, "input_length", 0) or 0)
        self.num_classes = int(getattr(model, "num_classes", 3))
        setup.check_labels_fit(self.train_dataset, self.num_classes, "training")
        self.augment = setup.resolve_augment(augment)
        setup.tell_capped_workers(config.num_workers, self.train_dataset, self.device)
        self.normalize = getattr(self.train_dataset, "normalize", None)
        self.sampling_rate = float(getattr(self.train_dataset, "sampling_rate", 100.0))
        if config.init_from and config.resume_from:
            log.info("resuming from %s: init_from=%s is not applied again", config.resume_from, config.init_from)
        elif config.init_from:
            setup.init_weights(self.model, config.init_from, self.device, self.normalize)
        self._frozen_norms = setup.freeze(self.model, config.freeze)
        self.net = setup.wrap_network(self.model, self.ctx, self.device, config.compile)
        self.optimizer = build_optimizer([p for p in self.model.parameters() if p.requires_grad], config, optimizer)
        self.scheduler = build_scheduler(self.optimizer, config, scheduler)
        self.amp_dtype = setup.autocast_dtype(config.amp)
        self.scaler = setup.grad_scaler(self.amp_dtype, self.device)
        self.class_weights = (setup.class_weights(self.train_dataset.labels, self.num_classes, self.device)
                              if config.class_balance == "weights" else None)
        self.augment_generator = setup.augment_generator(self.device, config.seed, self.ctx.rank)
        self.noise_bank = NoiseBank(seed=config.seed + 1_000_003 * self.ctx.rank)  # used on the CPU only
        # (generator state, bank state) after the last trained batch's draws, when its group drew ahead
        self._stream_after: tuple[torch.Tensor, dict] | None = None

        # Progress: all of it goes into checkpoints.
        self.epoch = 0  # completed epochs
        self.global_step = 0
        self.batch_in_epoch = 0  # batches of the current epoch already trained (mid-epoch resume)
        self.totals = EpochTotals.zeros(self.device)
        self.early_stopping = EarlyStopping(config.early_stopping_patience, config.early_stopping_min_delta)
        self.best_metrics: dict[str, Any] = {}
        self.history: list[dict[str, Any]] = []
        self.finished = False
        self.skipped_batches = 0  # batches skipped for a non-finite loss or gradient (on_nan_loss=skip)
        # On CUDA the NaN guard looks every log_every steps, not every step (each look is a host
        # sync; guards.py). The CPU looks at every step.
        self.nan_guard = NanGuard(config.on_nan_loss, self.device.type == "cuda", self.ctx, self.device,
                                  self.train_dataset, self.optimizer)
        self.stop = StopRequest()
        self.scalars = ScalarLog(config.tensorboard_dir, enabled=self.is_main)
        self.extra_state = dict(extra_state or {})
        if config.resume_from:
            self.load_checkpoint(config.resume_from)

    @property
    def is_main(self) -> bool:
        return self.ctx.is_main

    @property
    def best_val_loss(self) -> float:
        return self.early_stopping.best_val_loss

    @property
    def bad_epochs(self) -> int:
        return self.early_stopping.bad_epochs

    @property
    def writer(self):
        """The TensorBoard SummaryWriter while training with ``tensorboard_dir`` (else None)."""
        return self.scalars.writer

    # -- the loop ----------------------------------------------------------------------------------
    def train(self) -> dict[str, Any]:
        """Train for ``config.epochs`` (or until early stopping); returns history and best metrics."""
        cfg = self.config
        default_console_logging()  # plain API without logging set up: one line per epoch on stderr
        if self.finished and not self._extend_finished_run():
            return self.result()
        problem = writable_folder_problem(cfg.save_dir, create=True) if self.is_main and cfg.save_dir else None
        if problem:  # fail before the first step, not after an epoch
            raise OSError(f"save_dir {cfg.save_dir} is not a writable folder: {problem}")
        self.scalars.open(self.epoch)
        log.info("training %s (%d parameters) on %d traces (val %s) for %s on %s%s",
                 type(self.model).__name__, sum(p.numel() for p in self.model.parameters()),
                 len(self.train_dataset), len(self.val_dataset) if self.val_dataset is not None else 0,
                 self._epochs_to_train(), self.device,
                 f", {self.ctx.world_size} processes" if self.ctx.enabled else "")
        # Signals only raise a flag inside `self.stop`; the loop stops at the next step boundary.
        with self.stop, logs_above_bars(self._bars()):  # log lines above the bars
            try:
                while self.epoch < cfg.epochs and not self.finished:
                    self.run_epoch()
            finally:
                self.scalars.flush()
        self.finished = True
        if self.is_main and cfg.save_dir:
            self.save_checkpoint(os.path.join(cfg.save_dir, "last.ckpt"))
        barrier(self.ctx)
        return self.result()

    def _epochs_to_train(self) -> str:
        """'4 epochs'; on a resume the epochs still to come ('epochs 3-4 of 4', 'epoch 4 of 4'): a
        resumed or extended run does not train ``config.epochs`` epochs."""
        total, first = self.config.epochs, self.epoch + 1
        if self.epoch == 0 and self.batch_in_epoch == 0:
            return f"{total} epoch{'' if total == 1 else 's'}"
        return f"epoch {first} of {total}" if first == total else f"epochs {first}-{total} of {total}"

    def _extend_finished_run(self) -> bool:
        """A finished run resumed with more epochs (e.g. trainer.epochs=2, then 4) trains on."""
        if self.epoch >= self.config.epochs or self.early_stopping.should_stop:
            log.info("run already finished at epoch %d%s; nothing to train", self.epoch,
                     " (early stopping)" if self.early_stopping.should_stop else "")
            return False
        log.info("extending a finished run from epoch %d to %d", self.epoch, self.config.epochs)
        self.finished = False
        return True

    def epoch_batches(self, epoch: int) -> list[torch.Tensor]:
        """This rank's batches of one epoch: a function of (seed, epoch, rank) only."""
        return epoch_batches(self.train_dataset, self.config, epoch, self.num_classes, self.ctx.world_size,
                             self.ctx.rank)

    def iterate(self, dataset, batches: list[torch.Tensor], train: bool = False):
        """Batch dicts of ``dataset`` for ``batches`` (index tensors): sliced here, or read by workers.

        Training on the CPU from a preloaded set, batches come prepared, several at a time
        (``batches.prepared_batches``: the same draws and bytes as one at a time, fewer torch calls).
        """
        if train and self.device.type == "cpu" and getattr(dataset, "preloaded", False) and self.input_length:
            return prepared_batches(dataset, batches, self.input_length, self.normalize, self.augment,
                                    self.augment_generator, self.noise_bank, self.sampling_rate)
        workers = workers_to_start(self.config.num_workers, dataset, self.device)
        return iterate_batches(dataset, batches, num_workers=workers, batch_size=self.config.batch_size,
                               pin_memory=self.config.pin_memory and self.device.type == "cuda")

    def run_epoch(self) -> None:
        """One epoch (after a mid-epoch resume, from ``batch_in_epoch`` on), then ``finish_epoch``."""
        cfg, epoch = self.config, self.epoch + 1
        self._train_mode()
        self._rewind_stream()
        batches = self.epoch_batches(epoch)
        skip = self.batch_in_epoch
        started = time.perf_counter()
        bar = console_bar(len(batches), f"epoch {epoch}/{cfg.epochs}", enabled=self._bars(), initial=skip)
        for i, batch in enumerate(self.iterate(self.train_dataset, batches[skip:], train=True), start=skip):
            self.totals.add(*self.train_step(batch))
            self.batch_in_epoch, self._stream_after = i + 1, batch.get("stream_after")
            if bar is not None:
                bar.update(1)
            if self.global_step % cfg.log_every == 0:
                self._log_step(bar)
            if self.stop.on_any_rank(self.ctx, self.device):
                self._stop_here()
        if bar is not None:
            bar.close()
        self.finish_epoch(epoch, started)

    def _rewind_stream(self) -> None:
        """After an epoch stopped in the middle of a group of prepared batches (a signal, an error),
        put the augmentation generator and noise bank back where the last trained batch left them:
        the group drew ahead, and this Trainer may train on (``StopRequest``: it can train again)."""
        if self._stream_after is not None:
            rng, bank = self._stream_after
            self.augment_generator.set_state(rng)
            self.noise_bank.load_state_dict(bank)
            self._stream_after = None

    def _log_step(self, bar) -> None:
        """Every ``log_every`` steps: the deferred NaN guard's look and the epoch's mean loss so far
        (each a host sync, which is why they wait for ``log_every``)."""
        self.nan_guard.check(self.global_step)
        mean = (self.totals.loss / self.totals.count.clamp_min(1)).item()
        if bar is not None:
            bar.set_postfix(loss=f"{mean:.4f}")
        log.info("epoch %d step %d loss %.4f", self.epoch + 1, self.global_step, mean, extra={"per_step": True})
        self.scalars.scalar("Loss/train_step", mean, self.global_step)

    def _stop_here(self) -> None:
        """Write a resumable ``last.ckpt`` at this step, hand the signal on, raise TrainingInterrupted."""
        signum = self.stop.signum or signal.SIGTERM
        # every rank gets the signal; rank 0 says so (the others' consoles show warnings)
        (log.warning if self.is_main else log.info)(
            "received %s: stopping at this step boundary (step %d, epoch %d, batch %d)",
            signal.Signals(signum).name, self.global_step, self.epoch + 1, self.batch_in_epoch)
        self.nan_guard.check(self.global_step)
        path = os.path.join(self.config.save_dir, "last.ckpt") if self.config.save_dir else None
        if path and self.is_main:
            self.save_checkpoint(path)
            log.warning("checkpoint written to %s (epoch %d, batch %d)", path, self.epoch + 1, self.batch_in_epoch)
        barrier(self.ctx)
        self.scalars.flush()
        self.stop.pass_on()
        raise TrainingInterrupted(signum, path)

    # -- one step ----------------------------------------------------------------------------------
    def autocast(self):
        """The AMP context of ``config.amp`` (a no-op without AMP)."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def prepare_inputs(self, batch: dict[str, torch.Tensor], train: bool):
        """A batch dict -> (model input, labels, auxiliary targets) on the device: ``prepare_batch``'s
        crop around P (shifted in training), augmentation (training only) and normalisation; a batch
        from ``prepared_batches`` has them already."""
        if "prepared" in batch:
            return batch["prepared"]
        batch = to_device(batch, self.device)
        length = self.input_length or batch["waveforms"].shape[-1]
        return prepare_batch(batch, length, self.normalize, self.augment if train else None,
                             self.augment_generator, self.sampling_rate, self.noise_bank)

    def compute_loss(self, logits: torch.Tensor, labels: torch.Tensor, aux: torch.Tensor | None) -> torch.Tensor:
        """Cross-entropy (class-weighted with ``class_balance=weights``) plus any auxiliary loss."""
        loss = F.cross_entropy(logits.float(), labels, weight=self.class_weights)
        return loss + aux.float() if aux is not None else loss

    def train_step(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, int]:
        """One optimiser step on one batch; returns (loss sum, correct, count), the tensors on the
        device (no sync). A non-finite loss or gradient raises or skips (``on_nan_loss``)."""
        cfg = self.config
        x, labels, targets = self.prepare_inputs(batch, train=True)
        # A skipped batch must leave no trace: its forward pass already updated BatchNorm's
        # running statistics, so keep a copy of the buffers to put back.
        buffers = [b.detach().clone() for b in self.model.buffers()] if cfg.on_nan_loss == "skip" else None
        with self.autocast():
            with_aux = getattr(self.model, "aux_targets", None) is not None
            logits, aux = self.net(x, targets) if with_aux else (self.net(x), None)
            loss = self.compute_loss(logits, labels, aux)
        problem = self.nan_guard.loss_problem(loss.detach())
        if problem:
            return self._skip_or_raise(problem, batch, buffers)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        norm = gradient_norm(self.model, self.scaler, self.device)
        problem = self.nan_guard.norm_problem(norm, loss.detach())
        if problem:
            return self._skip_or_raise(problem, batch, buffers)
        clip_gradients(self.model, self.scaler, self.optimizer, cfg.gradient_clip_value, cfg.gradient_clip_algorithm)
        if self.nan_guard.looks_later:
            self.nan_guard.remember(loss, norm, self.global_step + 1, self.epoch + 1, self.batch_in_epoch + 1,
                                    batch.get("index"))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.global_step += 1
        correct = (logits.detach().argmax(dim=1) == labels).sum()
        return loss.detach() * len(labels), correct, len(labels)

    def _skip_or_raise(self, what: str, batch: dict[str, torch.Tensor], buffers: list[torch.Tensor] | None):
        """A non-finite loss or gradient: NonFiniteLossError, or the batch skipped without a trace."""
        self.optimizer.zero_grad(set_to_none=True)
        self.nan_guard.report(what, self.global_step + 1, self.epoch + 1, self.batch_in_epoch + 1, batch.get("index"))
        with torch.no_grad():
            for saved, buf in zip(buffers or [], self.model.buffers()):
                buf.copy_(saved)
        self.skipped_batches += 1
        return torch.zeros((), device=self.device), torch.zeros((), device=self.device), 0

    # -- the end of an epoch -------------------------------------------------------------------------
    def finish_epoch(self, epoch: int, started: float) -> None:
        """The epoch's numbers (summed over ranks), validation, the scheduler's step, the logs, early
        stopping and the checkpoints."""
        cfg = self.config
        self.nan_guard.check(self.global_step)  # before the epoch's numbers and checkpoints
        totals = self.totals.all_reduce(self.ctx)
        elapsed = time.perf_counter() - started
        record: dict[str, Any] = {
            "epoch": epoch, "train_loss": totals.mean_loss(), "train_accuracy": totals.accuracy(),
            "lr": float(self.optimizer.param_groups[0]["lr"]), "step": self.global_step,
            "samples_per_second": float(totals.count) / max(elapsed, 1e-9), "epoch_seconds": elapsed,
        }
        self.epoch, self.batch_in_epoch, self._stream_after = epoch, 0, None
        self.totals = EpochTotals.zeros(self.device)
        val_loss = self._validate(epoch, record)
        step_scheduler(self.scheduler, val_loss)
        self.history.append(record)
        self.scalars.epoch(record, cfg.epochs)
        if val_loss is not None and self.early_stopping.should_stop:
            log.info("early stopping after epoch %d: no validation improvement for %d epochs", epoch, self.bad_epochs)
            self.finished = True
        if self.is_main and cfg.save_dir:
            if record.get("best"):
                self.save_checkpoint(os.path.join(cfg.save_dir, "best.ckpt"))
            if not cfg.save_best_only and epoch % cfg.save_every == 0:
                self.save_checkpoint(os.path.join(cfg.save_dir, f"epoch_{epoch:03d}.ckpt"))
            self.save_checkpoint(os.path.join(cfg.save_dir, "last.ckpt"))

    def _validate(self, epoch: int, record: dict[str, Any]) -> float | None:
        """Every ``validation_every`` epochs: the val_* entries of ``record``, early stopping's update
        and the best metrics. Returns the validation loss (None when not validated)."""
        if self.val_dataset is None or not len(self.val_dataset) or epoch % self.config.validation_every:
            return None
        val = self.evaluate(self.val_dataset)
        shown = ("loss", "accuracy", "macro_f1", "updown_accuracy")
        record.update({f"val_{k}": v for k, v in val.items() if k in shown})
        record["val_metrics"] = val
        record["best"] = self.early_stopping.update(val["loss"])
        if record["best"]:
            self.best_metrics = {"epoch": epoch, **{f"val_{k}": v for k, v in val.items()}}
        return val["loss"]

    # -- evaluation ----------------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, dataset=None, return_predictions: bool = False, batch_size: int | None = None) -> dict[str, Any]:
        """Metrics on a dataset (default: the test split): loss, accuracy, per-class precision /
        recall / F1 / support, macro F1, up/down accuracy and the confusion matrix.

        Traces whose label the model cannot output (unknown, for a two-class model) are left out
        and counted under ``excluded_unknown``. Under DDP each rank scores a shard and the sums are
        reduced. ``return_predictions`` adds per-trace ``predictions``, ``probabilities``, ``labels``
        and ``indices`` (numpy).
        """
        dataset = as_batched_dataset(dataset if dataset is not None else self.test_dataset)
        if dataset is None:
            raise ValueError("evaluate() needs a dataset (no test split was configured)")
        was_training = self.model.training
        self.model.eval()
        n = len(dataset)
        shard = torch.arange(n)[self.ctx.rank::self.ctx.world_size] if self.ctx.enabled else torch.arange(n)
        batches = list(torch.split(shard, batch_size or self.config.batch_size))
        sums = EvaluationSums(self.num_classes, self.device, keep_predictions=return_predictions)
        bar = console_bar(len(batches), "evaluating", enabled=self._bars() and len(batches) > 1)
        for indices, batch in zip(batches, self.iterate(dataset, batches)):
            if bar is not None:
                bar.update(1)
            x, labels, _ = self.prepare_inputs(batch, train=False)
            with self.autocast():
                logits = self.model(x).float()
            sums.add(logits, labels, indices)
        if bar is not None:
            bar.close()
        if was_training:
            self._train_mode()
        return sums.metrics(self.ctx)

    def log_eval_scalars(self, prefix: str, metrics: dict[str, Any], step: int | None = None) -> None:
        """An evaluation's scalars under ``prefix/`` in TensorBoard (at ``step``, default the epoch);
        nothing without a writer (no ``tensorboard_dir``, or not the main process)."""
        self.scalars.evaluation(prefix, metrics, self.epoch if step is None else step)

    def result(self) -> dict[str, Any]:
        return {"history": self.history, "best": self.best_metrics, "epochs_trained": self.epoch,
                "global_step": self.global_step, "best_val_loss": self.best_val_loss}

    # -- checkpoints ---------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        last_val = next((h for h in reversed(self.history) if "val_loss" in h), None)
        augment_rng, noise_bank = self._stream_after or (self.augment_generator.get_state(),
                                                         self.noise_bank.state_dict())
        return {
            "epoch": self.epoch, "global_step": self.global_step, "batch_in_epoch": self.batch_in_epoch,
            "world_size": self.ctx.world_size,  # batch_size is per process: a resume keeps world_size x batch_size
            "epoch_sums": self.totals.as_tensor().cpu(),
            "model_state_dict": self.model.state_dict(),
            "optimizer_state_dict": self.optimizer.state_dict(),
            "scheduler_state_dict": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler_state_dict": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "loss": last_val["val_loss"] if last_val else (self.history[-1]["train_loss"] if self.history else None),
            "accuracy": last_val["val_accuracy"] if last_val else None,
            "rng": capture_rng_state(), "augment_rng": augment_rng, "noise_bank": noise_bank,
            "early_stopping": self.early_stopping.state_dict(),
            "best_metrics": to_plain(self.best_metrics), "history": to_plain(self.history), "finished": self.finished,
            "training_config": self.config.to_dict(),
            **setup.describe(self.model, self.train_dataset, self.normalize, self.sampling_rate),
            **self.extra_state,
        }

    def save_checkpoint(self, path: str) -> str:
        self.nan_guard.check(self.global_step)  # no NaN ever reaches a checkpoint
        return save_checkpoint(self.state_dict(), path)

    def load_checkpoint(self, path: str, weights_only_model: bool = False) -> dict[str, Any]:
        """Restore the full state (model, optimiser, scheduler, scaler, counters, RNGs, early stopping)."""
        state = load_checkpoint(path, map_location=self.device)
        setup.load_model_weights(self.model, state, path)
        if weights_only_model:
            return state
        restore_optimizer_state(state, path, self.optimizer, self.scheduler, self.scaler)
        self.epoch, self.global_step = int(state["epoch"]), int(state["global_step"])
        self.batch_in_epoch, self._stream_after = int(state.get("batch_in_epoch", 0)), None
        self.totals = EpochTotals.from_tensor(state.get("epoch_sums", torch.zeros(3)), self.device)
        self.early_stopping.load_state_dict(state.get("early_stopping", {}))
        self.best_metrics = dict(state.get("best_metrics") or {})
        self.history = list(state.get("history") or [])
        self.finished = bool(state.get("finished", False))
        if "rng" in state:
            restore_rng_state(state["rng"])
        if "augment_rng" in state and not self.ctx.enabled:
            self.augment_generator.set_state(state["augment_rng"].cpu())
            self.noise_bank.load_state_dict(state.get("noise_bank", {}))
        log.info("resumed from %s at epoch %d, step %d%s", path, self.epoch, self.global_step,
                 f" (batch {self.batch_in_epoch} of epoch {self.epoch + 1})" if self.batch_in_epoch else "")
        return state

    # -- small helpers -------------------------------------------------------------------------------
    def _train_mode(self) -> None:
        """``model.train()``, with the frozen features' BatchNorm layers kept in eval mode."""
        self.model.train()
        for module in self._frozen_norms:
            module.eval()

    def _bars(self) -> bool:
        """Progress bars: asked for, and this is the main process (``console.bar`` adds: on a terminal)."""
        return bool(self.config.show_progress and self.is_main)

    def close(self) -> None:
        self.scalars.close()

