"""The training loop: one readable loop for the Python API and the Hydra runner alike.

Data path: a preloaded dataset is indexed with a per-epoch permutation and batches are sliced
from one contiguous tensor in this process; a streaming dataset hands shuffled blocks of
contiguous rows to DataLoader workers, each returning a whole batch. Cropping, augmentation and
normalisation then run on the whole batch, on the training device.

Every random draw comes from state that a checkpoint holds (the epoch permutation is a function
of seed and epoch; the augmentation generator and the global RNGs are saved), so a resumed run
is bit-identical to an uninterrupted one on the CPU.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import signal
import sys
import time
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Subset

from ..console import default_console_logging, logs_above_bars
from ..data.augment import AugmentConfig, prepare_batch
from ..data.labels import CLASS_NAMES
from ..folders import writable_folder_problem
from ..plain import to_plain
from .checkpoint import CheckpointError, capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint
from .config import TrainingConfig
from .distributed import DistContext, all_reduce_sum, any_rank, barrier, init_distributed
from .metrics import confusion_matrix, metrics_from_confusion
from .optim import build_optimizer, build_scheduler, step_scheduler

log = logging.getLogger("seispolarity.training")


class TrainingInterrupted(RuntimeError):
    """Raised after a signal: a resumable checkpoint has been written."""

    def __init__(self, signum: int, checkpoint: str | None) -> None:
        self.signum = signum
        self.checkpoint = checkpoint
        name = signal.Signals(signum).name
        where = (f"; checkpoint written to {checkpoint}; resume with ckpt_path={checkpoint} "
                 f"(or TrainingConfig(resume_from=...))") if checkpoint else "; no checkpoint written (save_dir=None)"
        super().__init__(f"training stopped by {name}{where}")

    def __reduce__(self):  # picklable (launchers ship a job's exception to the parent process)
        return type(self), (self.signum, self.checkpoint)


class NonFiniteLossError(FloatingPointError):
    """A NaN or Inf loss, with the step and the batch's trace indices."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def resolve_device(name: str, ctx: DistContext | None = None) -> torch.device:
    """``auto`` picks cuda > mps > cpu; an unavailable device is a clear error."""
    name = name.lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else (
            "mps" if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"device={name!r} but CUDA is not available on this machine; "
                               f"use device='cpu' or device='auto'")
        if name == "cuda" and ctx is not None and ctx.enabled:
            name = f"cuda:{ctx.local_rank}"
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise RuntimeError("device='mps' but MPS is not available on this machine; use 'cpu' or 'auto'")
    return torch.device(name)


def _as_batched_dataset(ds):
    """A torch ``Subset`` of a WaveformDataset becomes a WaveformDataset view (batched path)."""
    if isinstance(ds, Subset) and hasattr(ds.dataset, "subset"):
        return _as_batched_dataset(ds.dataset).subset(list(ds.indices))
    return ds


class _BatchRequests(Dataset):
    """Each item is one whole batch, read by a DataLoader worker (streaming path).

    Batches travel back as numpy arrays, pickled through the worker's pipe: a tensor would cost a
    new shared-memory segment and file descriptor per batch and key (~3x slower on 2 cores).
    """

    def __init__(self, dataset, batches: list[torch.Tensor]) -> None:
        self.dataset, self.batches = dataset, batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        return {k: v.numpy() for k, v in self.dataset.get_batch(self.batches[i]).items()}


def _keep_numpy(batch):
    """DataLoader ``collate_fn``: leave a worker's numpy batch as it is (tensors are made in the main process)."""
    return batch


def _resolve_augment(augment: AugmentConfig | str | None) -> AugmentConfig | None:
    if isinstance(augment, str):
        if augment != "default":
            raise ValueError(f"augment={augment!r}; expected 'default', an AugmentConfig or None")
        return AugmentConfig()
    if augment is not None and not isinstance(augment, AugmentConfig):
        raise ValueError(f"augment={augment!r}; expected 'default', an AugmentConfig or None")
    return augment


class Trainer:
    """Train and evaluate a polarity model.

    Args:
        model: a ``PolarityModel`` (or any module mapping (B, C, L) to logits).
        dataset: training data (a WaveformDataset; a torch ``Subset`` of one also works).
        config: a TrainingConfig (defaults if None).
        val_dataset / test_dataset: explicit splits; without ``val_dataset`` a
            ``validation_split`` share is held out (event-grouped when the data has event ids).
        optimizer / scheduler: optional factories ``f(params)`` / ``f(optimizer)`` that override
            ``config.optimizer`` / ``config.lr_scheduler`` (the Hydra runner passes ``_partial_`` ones).
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
        if config.deterministic:
            # deterministic cuBLAS needs a fixed workspace; read when cuBLAS starts (no effect on CPU)
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        self.ctx = init_distributed(config.distributed, config.device)
        self.device = resolve_device(config.device, self.ctx)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
            torch.backends.cudnn.benchmark = not config.deterministic
        if config.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        seed_everything(config.seed)

        dataset = _as_batched_dataset(dataset)
        val_dataset = _as_batched_dataset(val_dataset) if val_dataset is not None else None
        test_dataset = _as_batched_dataset(test_dataset) if test_dataset is not None else None
        if val_dataset is None and (config.validation_split > 0 or config.test_split > 0) and hasattr(dataset, "split"):
            # An explicit test set (e.g. the data set's own test file) replaces the test split: hold out none.
            test_share = 0.0 if test_dataset is not None else config.test_split
            dataset, val_dataset, split_test = dataset.split(config.validation_split, test_share, config.seed)
            test_dataset = test_dataset if test_dataset is not None else split_test
        self.train_dataset, self.val_dataset, self.test_dataset = dataset, val_dataset, test_dataset
        self.batched = hasattr(dataset, "get_batch")

        self.model = model.to(self.device)
        self.input_length = int(getattr(model, "input_length", 0) or 0)
        self.num_classes = int(getattr(model, "num_classes", 3))
        self._check_labels_fit(dataset, "training")
        self.augment = _resolve_augment(augment)
        self.normalize = getattr(dataset, "normalize", None)
        self.sampling_rate = float(getattr(dataset, "sampling_rate", 100.0))
        if config.init_from and config.resume_from:
            log.info("resuming from %s: init_from=%s is not applied again", config.resume_from, config.init_from)
        elif config.init_from:
            self._init_weights(config.init_from)
        self._frozen_norms: list[torch.nn.Module] = self._freeze(config.freeze)
        self.net: torch.nn.Module = self.model
        if self.ctx.enabled:
            self.net = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=bool(getattr(model, "aux_targets", ())))
        if config.compile:
            self.net = torch.compile(self.net)

        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(trainable, config, optimizer)
        self.scheduler = build_scheduler(self.optimizer, config, scheduler)
        amp = config.amp
        self.amp_dtype = None if amp in (False, None, "none") else (torch.float16 if amp == "fp16" else torch.bfloat16)
        fp16_on_cuda = self.amp_dtype == torch.float16 and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=fp16_on_cuda)
        self.class_weights = self._class_weights() if config.class_balance == "weights" else None
        self.augment_generator = torch.Generator(device=self.device if self.device.type == "cuda" else "cpu")
        self.augment_generator.manual_seed(config.seed + 1_000_003 * self.ctx.rank)

        self.epoch = 0  # completed epochs
        self.global_step = 0
        self.batch_in_epoch = 0  # batches of the current epoch already trained (mid-epoch resume)
        self._epoch_sums = torch.zeros(3, dtype=torch.float64)  # loss sum, correct, count of this epoch
        self.best_val_loss = math.inf
        self.best_metrics: dict[str, Any] = {}
        self.bad_epochs = 0
        self.history: list[dict[str, Any]] = []
        self.finished = False
        self.skipped_batches = 0  # batches skipped for a non-finite loss or gradient (on_nan_loss=skip)
        # The NaN guard on CUDA with on_nan_loss=error: each step's isfinite flags stay on the device
        # (no host sync per step) and are read every log_every steps, at the epoch end and before any
        # checkpoint; a bad step still raises naming that step and its rows, and no NaN is saved.
        self.defer_nan_check = self.device.type == "cuda" and config.on_nan_loss == "error"
        self._pending_guard: list[tuple] = []
        self.extra_state = dict(extra_state or {})
        self._stop_signal: int | None = None
        self.writer = None
        if config.resume_from:
            self.load_checkpoint(config.resume_from)

    # -- set-up helpers ----------------------------------------------------------------------------
    def _check_labels_fit(self, dataset, role: str) -> None:
        labels = getattr(dataset, "labels", None)
        if isinstance(labels, torch.Tensor) and len(labels) and int(labels.max()) >= self.num_classes:
            raise ValueError(
                f"the {role} data holds label {int(labels.max())} ({CLASS_NAMES[int(labels.max())]}) but the model "
                f"has {self.num_classes} classes; for a two-class model drop unknown traces "
                f"(WaveformDataset(unknown='drop') or data.unknown=drop)")

    def _init_weights(self, spec: str) -> None:
        """Fine-tuning: the model starts from a checkpoint's weights (nothing else of it is used)."""
        state = load_checkpoint(spec, map_location=self.device)
        try:
            self.model.load_state_dict(state["model_state_dict"])
        except RuntimeError as exc:
            details = [ln.strip() for ln in str(exc).splitlines()[1:] if ln.strip()]
            raise CheckpointError(f"{spec}: init_from checkpoint does not fit {type(self.model).__name__}: "
                                  f"{(details or str(exc).splitlines())[0][:300]}") from None
        theirs = (state.get("data") or {}).get("normalize")
        if theirs and self.normalize is not None and theirs != self.normalize:
            log.warning("init_from %s was trained with normalize=%r, this data set uses %r", spec, theirs,
                        self.normalize)
        log.info("initialised the model from %s (weights only: a new run from epoch 0 with a fresh optimizer)", spec)

    def _freeze(self, what: str) -> list[torch.nn.Module]:
        """``freeze="features"``: only the classification head trains; returns the BatchNorm layers to
        keep in eval mode (their running statistics are part of the frozen features)."""
        if what in (None, "none"):
            return []
        if not hasattr(self.model, "freeze_features"):
            raise ValueError(f"freeze={what!r}: {type(self.model).__name__} is not a PolarityModel; it does not say "
                             f"which parameters are its head")
        try:
            frozen = self.model.freeze_features()
        except NotImplementedError as exc:
            raise ValueError(f"freeze={what!r}: {exc}") from None
        total = sum(p.numel() for p in self.model.parameters())
        trained = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        if not trained:
            raise ValueError(f"freeze={what!r}: {type(self.model).__name__} has no head parameters to train")
        log.info("freeze=%s: training the head only, %d of %d parameters (%d tensors frozen)", what, trained, total,
                 len(frozen))
        return self.model.frozen_norm_layers()

    def _train_mode(self) -> None:
        """``model.train()``, with the frozen features' BatchNorm layers kept in eval mode."""
        self.model.train()
        for module in self._frozen_norms:
            module.eval()

    def _class_weights(self) -> torch.Tensor:
        counts = torch.bincount(self.train_dataset.labels, minlength=self.num_classes).double()
        weights = counts.sum() / (self.num_classes * counts.clamp_min(1))
        return weights.float().to(self.device)

    @property
    def is_main(self) -> bool:
        return self.ctx.is_main

    # -- epoch order -------------------------------------------------------------------------------
    def epoch_batches(self, epoch: int) -> list[torch.Tensor]:
        """This rank's batches of one epoch: a function of (seed, epoch, rank) only."""
        cfg, n = self.config, len(self.train_dataset)
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
        if cfg.class_balance == "sampler":
            labels = self.train_dataset.labels
            counts = torch.bincount(labels, minlength=self.num_classes).double()
            order = torch.multinomial((1.0 / counts.clamp_min(1))[labels], n, replacement=True, generator=g)
        elif self.batched and not getattr(self.train_dataset, "preloaded", True):
            # Streaming: shuffle blocks of contiguous rows so each batch is a few large reads.
            block = 16
            starts = torch.randperm((n + block - 1) // block, generator=g) * block
            order = (starts[:, None] + torch.arange(block)).flatten()
            order = order[order < n]
        else:
            order = torch.randperm(n, generator=g)
        world, rank, bs = self.ctx.world_size, self.ctx.rank, cfg.batch_size
        global_bs = bs * world
        batches = []
        for a in range(0, n, global_bs):
            chunk = order[a:a + global_bs]
            if len(chunk) < world:
                break  # too few traces to give every rank one
            if len(chunk) == global_bs:
                batches.append(chunk[rank * bs:(rank + 1) * bs])
            else:
                batches.append(torch.tensor_split(chunk, world)[rank])
        if cfg.max_steps_per_epoch is not None:
            batches = batches[:cfg.max_steps_per_epoch]
        return batches

    def _iterate(self, dataset, batches: list[torch.Tensor]):
        """Yield batch dicts: in-process when preloaded, else through DataLoader workers."""
        if not hasattr(dataset, "get_batch"):
            loader = DataLoader(Subset(dataset, torch.cat(batches).tolist()) if batches else dataset,
                                batch_size=self.config.batch_size, shuffle=False,
                                num_workers=self.config.num_workers)
            for x, y in loader:
                yield {"waveforms": x, "labels": y}
            return
        if getattr(dataset, "preloaded", False) or self.config.num_workers == 0:
            for idx in batches:
                yield dataset.get_batch(idx)
            return
        pin = self.config.pin_memory and self.device.type == "cuda"
        loader = DataLoader(_BatchRequests(dataset, batches), batch_size=None, shuffle=False,
                            num_workers=min(self.config.num_workers, max(1, len(batches))),
                            collate_fn=_keep_numpy, persistent_workers=False)
        for batch in loader:
            batch = {k: torch.from_numpy(v) for k, v in batch.items()}
            yield {k: v.pin_memory() for k, v in batch.items()} if pin else batch

    # -- one step --------------------------------------------------------------------------------
    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        nb = self.device.type == "cuda"
        return {k: v.to(self.device, non_blocking=nb) for k, v in batch.items()}

    def _inputs(self, batch, train: bool):
        length = self.input_length or batch["waveforms"].shape[-1]
        return prepare_batch(batch, length, self.normalize, self.augment if train else None,
                             self.augment_generator, self.sampling_rate)

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor, aux: torch.Tensor | None) -> torch.Tensor:
        loss = F.cross_entropy(logits.float(), labels, weight=self.class_weights)
        return loss + aux.float() if aux is not None else loss

    def train_step(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, int]:
        """One optimiser step on one batch; returns (loss, correct, count) as tensors (no sync)."""
        cfg = self.config
        batch = self._to_device(batch)
        x, labels, targets = self._inputs(batch, train=True)
        # A skipped batch must leave no trace: its forward pass already updated BatchNorm's
        # running statistics, so keep a copy of the buffers to put back.
        buffers = [b.detach().clone() for b in self.model.buffers()] if cfg.on_nan_loss == "skip" else None
        with self._autocast():
            with_aux = getattr(self.model, "aux_targets", None) is not None
            logits, aux = self.net(x, targets) if with_aux else (self.net(x), None)
            loss = self._loss(logits, labels, aux)
        defer = self.defer_nan_check and cfg.on_nan_loss == "error"
        if not defer and any_rank(not bool(torch.isfinite(loss.detach())), self.ctx, self.device):
            return self._non_finite(f"loss {float(loss.detach())}", batch, buffers)
        norm = None
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if cfg.gradient_clip_value is not None or not self.scaler.is_enabled():
            self.scaler.unscale_(self.optimizer)
            grads = [p.grad for p in self.model.parameters() if p.grad is not None]
            if not self.scaler.is_enabled():
                # A finite loss can still give Inf/NaN gradients (e.g. a huge-but-finite trace);
                # one such step would turn every weight into NaN. (With fp16 the scaler skips it.)
                norm = torch.nn.utils.get_total_norm(grads) if grads else torch.zeros((), device=self.device)
                if not defer and not bool(torch.isfinite(norm)):
                    return self._non_finite(f"gradient norm {float(norm)} (loss {float(loss.detach()):.4g})",
                                            batch, buffers)
            if cfg.gradient_clip_value is not None:
                if cfg.gradient_clip_algorithm == "value":
                    torch.nn.utils.clip_grad_value_(self.model.parameters(), cfg.gradient_clip_value)
                else:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.gradient_clip_value)
        if defer:
            self._pending_guard.append((loss.detach(), norm, self.global_step + 1, self.epoch + 1,
                                        self.batch_in_epoch + 1, batch.get("index")))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.global_step += 1
        correct = (logits.detach().argmax(dim=1) == labels).sum()
        return loss.detach() * len(labels), correct, len(labels)

    def check_nan_guard(self) -> None:
        """Read the deferred NaN guard's flags (one host sync for all the steps since the last look).

        A non-finite loss or gradient norm raises ``NonFiniteLossError`` naming the first bad step
        (step, epoch, batch) and its rows, as the per-step check does; the model then holds the bad
        step's update, but nothing of it has been written (every checkpoint comes after a look).
        """
        pending, self._pending_guard = self._pending_guard, []
        if not pending:
            return
        finite = torch.stack([torch.isfinite(loss) if norm is None else torch.isfinite(loss) & torch.isfinite(norm)
                              for loss, norm, *_ in pending]).cpu()
        bad = (~finite).nonzero().flatten().tolist()
        if not any_rank(bool(bad), self.ctx, self.device):
            return
        if not bad:
            raise NonFiniteLossError("non-finite loss or gradient norm on another rank; the last good checkpoint "
                                     "is untouched")
        loss, norm, step, epoch, batch_no, index = pending[bad[0]]
        what = f"loss {float(loss)}" if not bool(torch.isfinite(loss)) else \
            f"gradient norm {float(norm)} (loss {float(loss):.4g})"
        self.optimizer.zero_grad(set_to_none=True)
        raise NonFiniteLossError(f"non-finite {what} at step {step} (epoch {epoch}, batch {batch_no}); "
                                 f"{self._batch_rows({'index': index} if index is not None else {})}; "
                                 f"the last good checkpoint is untouched (seen at step {self.global_step}: the "
                                 f"check runs every log_every steps on CUDA; trainer.on_nan_loss=skip skips such "
                                 f"batches)")

    def _non_finite(self, what: str, batch: dict[str, torch.Tensor], buffers: list[torch.Tensor] | None):
        """A non-finite loss or gradient: raise NonFiniteLossError, or skip the batch without trace."""
        message = (f"non-finite {what} at step {self.global_step + 1} (epoch {self.epoch + 1}, batch "
                   f"{self.batch_in_epoch + 1}); {self._batch_rows(batch)}")
        self.optimizer.zero_grad(set_to_none=True)
        if self.config.on_nan_loss == "error":
            raise NonFiniteLossError(message + "; the last good checkpoint is untouched "
                                               "(trainer.on_nan_loss=skip skips such batches)")
        log.warning("skipped batch: %s", message)
        if buffers is not None:
            with torch.no_grad():
                for saved, buf in zip(buffers, self.model.buffers()):
                    buf.copy_(saved)
        self.skipped_batches += 1
        return torch.zeros((), device=self.device), torch.zeros((), device=self.device), 0

    def _batch_rows(self, batch: dict[str, torch.Tensor]) -> str:
        """The batch's traces as rows of the data file (what a user can look up), all of them."""
        indices = batch.get("index")
        if indices is None:
            return "batch trace indices unknown"
        idx = indices.detach().cpu().numpy()
        rows = getattr(self.train_dataset, "rows", None)
        values = [int(v) for v in (rows[idx] if rows is not None else idx)]
        path = getattr(self.train_dataset, "path", None)
        return f"batch trace rows{f' of {path}' if path else ''}: {values}"

    # -- the loop ----------------------------------------------------------------------------------
    def train(self) -> dict[str, Any]:
        """Train for ``config.epochs`` (or until early stopping); returns history and best metrics."""
        cfg = self.config
        default_console_logging()  # plain API without logging set up: one line per epoch on stderr
        if self.finished:
            stopped_early = (cfg.early_stopping_patience is not None
                             and self.bad_epochs >= cfg.early_stopping_patience)
            if self.epoch >= cfg.epochs or stopped_early:
                log.info("run already finished at epoch %d%s; nothing to train", self.epoch,
                         " (early stopping)" if stopped_early else "")
                return self.result()
            # a finished run resumed with more epochs (e.g. trainer.epochs=2, then 4) trains on
            log.info("extending a finished run from epoch %d to %d", self.epoch, cfg.epochs)
            self.finished = False
        problem = writable_folder_problem(cfg.save_dir, create=True) if self.is_main and cfg.save_dir else None
        if problem:  # fail before the first step, not after an epoch
            raise OSError(f"save_dir {cfg.save_dir} is not a writable folder: {problem}")
        self._open_writer()
        self._stop_signal = None  # a Trainer stopped by a signal can train() again
        previous = self._previous_handlers = self._install_signal_handlers()
        log.info("training %s (%d parameters) on %d traces (val %s) for %d epochs on %s%s",
                 type(self.model).__name__, sum(p.numel() for p in self.model.parameters()),
                 len(self.train_dataset), len(self.val_dataset) if self.val_dataset is not None else 0,
                 cfg.epochs, self.device, f", {self.ctx.world_size} processes" if self.ctx.enabled else "")
        try:
            with logs_above_bars(cfg.show_progress and self.is_main):  # log lines above the bars
                while self.epoch < cfg.epochs and not self.finished:
                    self._train_one_epoch()
                    if self.finished:
                        break
        finally:
            self._restore_signal_handlers(previous)
            if self.writer is not None:
                self.writer.flush()
        self.finished = True
        if self.is_main and cfg.save_dir:
            self.save_checkpoint(os.path.join(cfg.save_dir, "last.ckpt"))
        barrier(self.ctx)
        return self.result()

    def _train_one_epoch(self) -> None:
        cfg = self.config
        epoch = self.epoch + 1
        self._train_mode()
        batches = self.epoch_batches(epoch)
        skip = self.batch_in_epoch
        sums = self._epoch_sums.to(self.device)
        started = time.perf_counter()
        bar = self._progress(len(batches), f"epoch {epoch}/{cfg.epochs}", initial=skip)
        for i, batch in enumerate(self._iterate(self.train_dataset, batches[skip:]), start=skip):
            loss_sum, correct, count = self.train_step(batch)
            # No new tensor from the host per step (torch.tensor(count, device=cuda) is a blocking copy).
            sums[:2] += torch.stack([loss_sum.double(), correct.double()])
            sums[2] += count
            self.batch_in_epoch = i + 1
            if bar is not None:
                bar.update(1)
            if self.global_step % cfg.log_every == 0:
                self.check_nan_guard()
                mean = (sums[0] / sums[2].clamp_min(1)).item()
                if bar is not None:
                    bar.set_postfix(loss=f"{mean:.4f}")
                log.info("epoch %d step %d loss %.4f", epoch, self.global_step, mean, extra={"per_step": True})
                if self.writer is not None:
                    self.writer.add_scalar("Loss/train_step", mean, self.global_step)
            if self._should_stop():
                log.warning("received %s: stopping at this step boundary (step %d, epoch %d, batch %d)",
                            signal.Signals(self._stop_signal or signal.SIGTERM).name, self.global_step,
                            epoch, self.batch_in_epoch)
                self.check_nan_guard()
                self._epoch_sums = sums.cpu()
                path = self._interrupt_checkpoint()
                self._pass_on_signal()
                raise TrainingInterrupted(self._stop_signal or signal.SIGTERM, path)
        if bar is not None:
            bar.close()
        self.check_nan_guard()  # before the epoch's numbers and checkpoints
        all_reduce_sum(sums, self.ctx)
        elapsed = time.perf_counter() - started
        train_loss = float(sums[0] / sums[2].clamp_min(1))
        record: dict[str, Any] = {
            "epoch": epoch, "train_loss": train_loss, "train_accuracy": float(sums[1] / sums[2].clamp_min(1)),
            "lr": float(self.optimizer.param_groups[0]["lr"]), "step": self.global_step,
            "samples_per_second": float(sums[2]) / max(elapsed, 1e-9), "epoch_seconds": elapsed,
        }
        self.epoch, self.batch_in_epoch = epoch, 0
        self._epoch_sums = torch.zeros(3, dtype=torch.float64)
        val_loss = None
        if self.val_dataset is not None and len(self.val_dataset) and epoch % cfg.validation_every == 0:
            val = self.evaluate(self.val_dataset)
            val_loss = val["loss"]
            record.update({f"val_{k}": v for k, v in val.items()
                           if k in ("loss", "accuracy", "macro_f1", "updown_accuracy")})
            record["val_metrics"] = val
            improved = val_loss < self.best_val_loss - cfg.early_stopping_min_delta
            if improved:
                self.best_val_loss, self.bad_epochs = val_loss, 0
                self.best_metrics = {"epoch": epoch, **{f"val_{k}": v for k, v in val.items()}}
            else:
                self.bad_epochs += 1
            record["best"] = improved
            if self.writer is not None:
                self._log_eval_scalars("Val", val, epoch)
                self.writer.add_scalar("Loss/val", val_loss, epoch)
                self.writer.add_scalar("Accuracy/val", val["accuracy"], epoch)
        step_scheduler(self.scheduler, val_loss)
        self.history.append(record)
        if self.writer is not None:
            self.writer.add_scalar("Loss/train", train_loss, epoch)
            self.writer.add_scalar("Accuracy/train", record["train_accuracy"], epoch)
            self.writer.add_scalar("LR", record["lr"], epoch)
        log.info("epoch %d/%d: train loss %.4f acc %.4f%s (%.0f samples/s)", epoch, cfg.epochs, train_loss,
                 record["train_accuracy"],
                 f", val loss {val_loss:.4f} acc {record['val_accuracy']:.4f}" if val_loss is not None else "",
                 record["samples_per_second"])
        stop = (cfg.early_stopping_patience is not None and val_loss is not None
                and self.bad_epochs >= cfg.early_stopping_patience)
        if stop:
            log.info("early stopping after epoch %d: no validation improvement for %d epochs", epoch, self.bad_epochs)
            self.finished = True
        if self.is_main and cfg.save_dir:
            if record.get("best"):
                self.save_checkpoint(os.path.join(cfg.save_dir, "best.ckpt"))
            if not cfg.save_best_only and epoch % cfg.save_every == 0:
                self.save_checkpoint(os.path.join(cfg.save_dir, f"epoch_{epoch:03d}.ckpt"))
            self.save_checkpoint(os.path.join(cfg.save_dir, "last.ckpt"))

    # -- evaluation --------------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, dataset=None, return_predictions: bool = False, batch_size: int | None = None) -> dict[str, Any]:
        """Metrics on a dataset (default: the test split): loss, accuracy, per-class precision /
        recall / F1 / support, macro F1, up/down accuracy and the confusion matrix.

        Traces whose label the model cannot output (unknown, for a two-class model) are left out
        and counted under ``excluded_unknown``. Under DDP each rank scores a shard and the sums are
        reduced. ``return_predictions`` adds per-trace ``predictions``, ``probabilities``, ``labels``
        and ``indices`` (numpy).
        """
        dataset = _as_batched_dataset(dataset if dataset is not None else self.test_dataset)
        if dataset is None:
            raise ValueError("evaluate() needs a dataset (no test split was configured)")
        was_training = self.model.training
        self.model.eval()
        bs = batch_size or self.config.batch_size
        n = len(dataset)
        shard = torch.arange(n)[self.ctx.rank::self.ctx.world_size] if self.ctx.enabled else torch.arange(n)
        batches = list(torch.split(shard, bs))
        k = self.num_classes
        cm = torch.zeros(k, k, dtype=torch.long, device=self.device)
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        excluded = torch.zeros((), dtype=torch.long, device=self.device)
        preds, probs, labels_all, idx_all = [], [], [], []
        bar = self._progress(len(batches), "evaluating") if len(batches) > 1 else None
        for b, batch in zip(batches, self._iterate(dataset, batches)):
            if bar is not None:
                bar.update(1)
            batch = self._to_device(batch)
            x, labels, _ = self._inputs(batch, train=False)
            with self._autocast():
                logits = self.model(x).float()
            keep = labels < k
            excluded += (~keep).sum()
            lk, yk = logits[keep], labels[keep]
            if len(yk):
                loss_sum += F.cross_entropy(lk, yk, reduction="sum").double()
                cm += confusion_matrix(yk, lk.argmax(dim=1), k)
            if return_predictions:
                p = torch.softmax(logits, dim=1)
                preds.append(p.argmax(dim=1).cpu())
                probs.append(p.cpu())
                labels_all.append(labels.cpu())
                idx_all.append(b)
        if bar is not None:
            bar.close()
        all_reduce_sum(cm, self.ctx)
        all_reduce_sum(loss_sum, self.ctx)
        all_reduce_sum(excluded, self.ctx)
        if was_training:
            self._train_mode()
        metrics = metrics_from_confusion(cm.cpu(), CLASS_NAMES[:k])
        metrics["loss"] = float(loss_sum / max(1, int(cm.sum())))
        metrics["excluded_unknown"] = int(excluded)
        if return_predictions:
            metrics["predictions"] = torch.cat(preds).numpy() if preds else np.zeros(0, np.int64)
            metrics["probabilities"] = torch.cat(probs).numpy() if probs else np.zeros((0, k), np.float32)
            metrics["labels"] = torch.cat(labels_all).numpy() if labels_all else np.zeros(0, np.int64)
            metrics["indices"] = torch.cat(idx_all).numpy() if idx_all else np.zeros(0, np.int64)
        return metrics

    def test(self) -> dict[str, Any] | None:
        if self.test_dataset is None:
            return None
        metrics = self.evaluate(self.test_dataset)
        if self.writer is not None:
            self._log_eval_scalars("Test", metrics, self.epoch)
        return metrics

    def _log_eval_scalars(self, prefix: str, metrics: dict[str, Any], step: int) -> None:
        self.writer.add_scalar(f"{prefix}/accuracy", metrics["accuracy"], step)
        self.writer.add_scalar(f"{prefix}/loss", metrics["loss"], step)
        for name in ("precision", "recall", "f1"):
            for cls, value in metrics[name].items():
                self.writer.add_scalar(f"{prefix}/{name}_{cls}", value, step)

    def result(self) -> dict[str, Any]:
        return {"history": self.history, "best": self.best_metrics, "epochs_trained": self.epoch,
                "global_step": self.global_step, "best_val_loss": self.best_val_loss}

    # -- checkpoints -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        last_val = next((h for h in reversed(self.history) if "val_loss" in h), None)
        describe = self.model.describe() if hasattr(self.model, "describe") else {"name": type(self.model).__name__}
        return {
            "epoch": self.epoch, "global_step": self.global_step, "batch_in_epoch": self.batch_in_epoch,
            "world_size": self.ctx.world_size,  # batch_size is per process: a resume keeps world_size x batch_size
            "epoch_sums": self._epoch_sums.clone(),
            "model_state_dict": self.model.state_dict(),
            "optimizer_state_dict": self.optimizer.state_dict(),
            "scheduler_state_dict": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler_state_dict": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "loss": last_val["val_loss"] if last_val else (self.history[-1]["train_loss"] if self.history else None),
            "accuracy": last_val["val_accuracy"] if last_val else None,
            "rng": capture_rng_state(), "augment_rng": self.augment_generator.get_state(),
            "early_stopping": {"best_val_loss": self.best_val_loss, "bad_epochs": self.bad_epochs},
            "best_metrics": to_plain(self.best_metrics), "history": to_plain(self.history), "finished": self.finished,
            "training_config": self.config.to_dict(), "model": describe,
            "label_map": getattr(self.train_dataset, "label_map", None),
            "data": {"window_length": getattr(self.train_dataset, "window_length", None),
                     "normalize": self.normalize, "sampling_rate": self.sampling_rate,
                     "num_channels": getattr(self.train_dataset, "num_channels", None)},
            **self.extra_state,
        }

    def save_checkpoint(self, path: str) -> str:
        self.check_nan_guard()  # no NaN ever reaches a checkpoint
        return save_checkpoint(self.state_dict(), path)

    def load_checkpoint(self, path: str, weights_only_model: bool = False) -> dict[str, Any]:
        """Restore the full state (model, optimiser, scheduler, scaler, counters, RNGs, early stopping)."""
        state = load_checkpoint(path, map_location=self.device)
        try:
            self.model.load_state_dict(state["model_state_dict"])
        except RuntimeError as exc:
            # a CheckpointError (a RuntimeError): one line, with torch's first concrete mismatch
            details = [ln.strip() for ln in str(exc).splitlines()[1:] if ln.strip()]
            raise CheckpointError(f"{path}: checkpoint does not fit {type(self.model).__name__}: "
                                  f"{(details or str(exc).splitlines())[0][:300]}") from None
        if weights_only_model:
            return state
        names = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD"}
        theirs, mine = str((state.get("training_config") or {}).get("optimizer", "")), type(self.optimizer).__name__
        if theirs in names and mine.lower() in names and theirs != mine.lower():
            raise CheckpointError(f"{path}: the checkpoint was trained with {names[theirs]}, this run's optimizer is "
                                  f"{mine}; resume with the same optimizer (optimizer={theirs})")
        try:
            self.optimizer.load_state_dict(state["optimizer_state_dict"])
        except (KeyError, ValueError) as exc:  # e.g. KeyError('step'): another optimizer's state
            raise CheckpointError(f"{path}: the checkpoint's optimizer state does not fit {mine}: "
                                  f"{type(exc).__name__} {exc}") from None
        if self.scheduler is not None and state.get("scheduler_state_dict") is not None:
            configured = self.scheduler.state_dict()
            self.scheduler.load_state_dict(state["scheduler_state_dict"])
            for key in ("T_max", "step_size", "gamma", "milestones", "total_steps"):
                if key in configured and configured[key] != state["scheduler_state_dict"].get(key, configured[key]):
                    log.warning("%s: the checkpoint's learning-rate schedule has %s=%s, this config %s; the "
                                "checkpoint's schedule continues (e.g. a cosine schedule's T_max follows the "
                                "epochs of the run that started it)", path, key,
                                state["scheduler_state_dict"][key], configured[key])
        if state.get("scaler_state_dict") is not None:
            self.scaler.load_state_dict(state["scaler_state_dict"])
        self.epoch, self.global_step = int(state["epoch"]), int(state["global_step"])
        self.batch_in_epoch = int(state.get("batch_in_epoch", 0))
        self._epoch_sums = state.get("epoch_sums", torch.zeros(3, dtype=torch.float64)).cpu().double()
        es = state.get("early_stopping", {})
        self.best_val_loss = float(es.get("best_val_loss", math.inf))
        self.bad_epochs = int(es.get("bad_epochs", 0))
        self.best_metrics = dict(state.get("best_metrics") or {})
        self.history = list(state.get("history") or [])
        self.finished = bool(state.get("finished", False))
        if "rng" in state:
            restore_rng_state(state["rng"])
        if "augment_rng" in state and not self.ctx.enabled:
            self.augment_generator.set_state(state["augment_rng"].cpu())
        log.info("resumed from %s at epoch %d, step %d%s", path, self.epoch, self.global_step,
                 f" (batch {self.batch_in_epoch} of epoch {self.epoch + 1})" if self.batch_in_epoch else "")
        return state

    # -- signals -----------------------------------------------------------------------------------
    def _install_signal_handlers(self) -> dict[int, Any]:
        import threading

        if threading.current_thread() is not threading.main_thread():
            return {}
        previous = {}
        # SIGUSR1 / SIGUSR2: SLURM's advance warning (--signal=USR1@90; submitit uses USR2 by default)
        for sig in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGUSR1", None), getattr(signal, "SIGUSR2", None)):
            if sig is None:
                continue
            previous[sig] = signal.getsignal(sig)
            signal.signal(sig, self._on_signal)
        return previous

    def _restore_signal_handlers(self, previous: dict[int, Any]) -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    def _pass_on_signal(self) -> None:
        """After the checkpoint, hand the signal to the Python handler installed before training,
        if any (submitit's pre-emption handler: it requeues the job, which then resumes from
        ``last.ckpt``, and exits). Python's own Ctrl-C handler is not called."""
        signum = self._stop_signal
        handler = getattr(self, "_previous_handlers", {}).get(signum)
        if signum is None or not callable(handler) or handler is signal.default_int_handler:
            return
        log.warning("passing %s on to the handler installed before training (%s)", signal.Signals(signum).name,
                    getattr(handler, "__qualname__", handler))
        self._restore_signal_handlers(self._previous_handlers)
        handler(signum, None)

    def _on_signal(self, signum, frame) -> None:  # (frame: the signal module's handler signature)
        if self._stop_signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C stops at once
        # Only set the flag: logging here could re-enter a log handler that the signal interrupted
        # mid-write (a "reentrant call" error); the loop logs it at the next step boundary.
        self._stop_signal = signum

    def _should_stop(self) -> bool:
        flag = any_rank(self._stop_signal is not None, self.ctx, self.device)
        if flag and self._stop_signal is None:  # another rank was signalled
            self._stop_signal = signal.SIGTERM
        return flag

    def _interrupt_checkpoint(self) -> str | None:
        path = None
        if self.config.save_dir:
            path = os.path.join(self.config.save_dir, "last.ckpt")
            if self.is_main:
                self.save_checkpoint(path)
                log.warning("checkpoint written to %s (epoch %d, batch %d)", path, self.epoch + 1, self.batch_in_epoch)
        barrier(self.ctx)
        if self.writer is not None:
            self.writer.flush()
        return path

    # -- logging sinks -----------------------------------------------------------------------------
    def _open_writer(self) -> None:
        if self.writer is None and self.config.tensorboard_dir and self.is_main:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=self.config.tensorboard_dir,
                                        purge_step=self.epoch + 1 if self.epoch else None)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def _progress(self, total: int, desc: str, initial: int = 0):
        if not (self.config.show_progress and self.is_main and sys.stderr.isatty()):
            return None
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, initial=initial, leave=False, dynamic_ncols=True)
