"""TrainingConfig: every knob of a training run, validated on creation."""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

from .optim import DEFAULT_LR, OPTIMIZERS, SCHEDULERS, optimizer_problem, scheduler_problem, scheduler_value_problem

DEVICES = ("auto", "cpu", "cuda", "mps")
FREEZE = ("none", "features")


def _real(value) -> bool:
    """A finite int or float, not a bool (True is an int in Python)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class TrainingConfig:
    """How to train. The fields of the docs, plus what long runs need.

    The docs' fields: batch_size, num_workers, pin_memory, epochs, learning_rate, optimizer,
    weight_decay, momentum, lr_scheduler, lr_scheduler_params, gradient_clip_value,
    early_stopping_patience, early_stopping_min_delta, save_dir, save_every, save_best_only,
    validation_split, validation_every, device, log_every, tensorboard_dir.

    The optimizer and the schedule come from one registry, ``seispolarity.training.optim``
    (``OPTIMIZERS``, ``SCHEDULERS``), which the runner's ``optimizer`` and ``scheduler`` groups
    are generated from too, so both have the same names and defaults: ``learning_rate``
    ``DEFAULT_LR`` (1e-3, the runner's ``lr``); ``weight_decay=None`` and ``momentum=None`` mean
    the optimizer's own (weight decay 1e-5 for Adam and SGD, 1e-2 for AdamW; SGD's momentum 0.9;
    Adam and AdamW take no momentum, so setting one with them is an error); ``optimizer_params``
    sets the optimizer's other keywords (``betas``, ``eps``, ``amsgrad``; ``dampening``,
    ``nesterov``); ``lr_scheduler_params`` sets the schedule's over its defaults (step:
    ``step_size`` 10, ``gamma`` 0.1; cosine: ``T_max`` = ``epochs``, ``eta_min`` 0;
    reduce_on_plateau: ``factor`` 0.1, ``patience`` 5, ...). Unknown names or keywords fail here,
    in one line.

    Why these defaults differ from the runner's ``conf/trainer/default.yaml``: these are for a
    real training run from Python (the docs' 50 epochs, ended earlier by early stopping after 10
    epochs without improvement; batch 256; no held-out test split), whereas ``python train.py``'s
    default job is a demonstration on the generated synthetic set that finishes in minutes on a
    laptop CPU (10 epochs, batch 128, patience 5, a 10 % test split). The device is ``"auto"`` in
    both (CUDA, else MPS, else the CPU): a script written on a laptop runs unchanged on a GPU
    machine; ``device="cuda"`` asks for a GPU and fails in one line without one.

    Added: seed, amp ("bf16"/"fp16"/True), resume_from (a checkpoint path), test_split,
    class_balance ("none", "weights" for a weighted loss, "sampler" for balanced batches),
    on_nan_loss ("error" or "skip"), deterministic, compile, show_progress, max_steps_per_epoch,
    distributed ("auto": DDP when launched by torchrun), gradient_clip_algorithm ("norm": the
    gradients' total norm is clipped to gradient_clip_value; "value": each element).

    Fine-tuning: ``init_from`` (a checkpoint path or ``"pretrained:<name>"``) starts a new run from
    those model weights: epoch 0, a fresh optimizer and schedule, nothing else of the checkpoint
    (``resume_from`` continues a run instead, and wins when both are set). ``freeze="features"``
    trains only the model's classification head (``head_prefixes``); the rest, BatchNorm running
    statistics included, stays as loaded.

    ``save_best_only=True`` keeps ``best.ckpt`` (and ``last.ckpt``, always written so a run can be
    resumed); with False, ``epoch_NNN.ckpt`` is also written every ``save_every`` epochs.
    """

    batch_size: int = 256
    num_workers: int | str = "auto"  # "auto": 0 unless streaming to a GPU; training.batches.workers_to_start
    pin_memory: bool = True
    epochs: int = 50
    learning_rate: float = DEFAULT_LR
    optimizer: str = "adam"
    weight_decay: float | None = None  # None: the optimizer's (OPTIMIZERS)
    momentum: float | None = None  # None: the optimizer's (SGD 0.9); Adam and AdamW have none
    optimizer_params: dict[str, Any] | None = None
    lr_scheduler: str | None = None
    lr_scheduler_params: dict[str, Any] | None = None
    gradient_clip_value: float | None = None
    early_stopping_patience: int | None = 10
    early_stopping_min_delta: float = 1e-4
    save_dir: str = "./checkpoints"
    save_every: int = 5
    save_best_only: bool = True
    validation_split: float = 0.1
    validation_every: int = 1
    device: str = "auto"
    log_every: int = 100
    tensorboard_dir: str | None = None
    # beyond the docs
    seed: int = 42
    amp: bool | str = False
    resume_from: str | None = None
    test_split: float = 0.0
    class_balance: str = "none"
    on_nan_loss: str = "error"
    deterministic: bool = False
    compile: bool = False
    show_progress: bool = True
    distributed: bool | str = "auto"
    gradient_clip_algorithm: str = "norm"
    max_steps_per_epoch: int | None = None
    init_from: str | None = None
    freeze: str = "none"

    def __post_init__(self) -> None:
        """Every field checked where it is set, each bad value a one-line ValueError naming it."""
        self._check_types()
        self._check_ranges()
        self._check_optimizer()
        self._check_choices()

    def _fail(self, name: str, expected: str) -> None:
        raise ValueError(f"TrainingConfig.{name}={getattr(self, name)!r}: expected {expected}")

    def _check_types(self) -> None:
        fail = self._fail
        for name in ("pin_memory", "save_best_only", "deterministic", "compile", "show_progress"):
            if not isinstance(getattr(self, name), bool):
                fail(name, "True or False")
        for name in ("save_dir", "tensorboard_dir", "resume_from", "init_from"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, (str, os.PathLike)):
                fail(name, "None or a path")
            if value is not None:
                setattr(self, name, os.fspath(value))
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            fail("seed", "a whole number")
        if self.lr_scheduler_params is not None and not isinstance(self.lr_scheduler_params, Mapping):
            fail("lr_scheduler_params", "a dict of keyword arguments for the scheduler")
        if self.optimizer_params is not None and not isinstance(self.optimizer_params, Mapping):
            fail("optimizer_params", "a dict of keyword arguments for the optimizer")
        for name in ("learning_rate", "weight_decay", "momentum", "early_stopping_min_delta", "validation_split",
                     "test_split"):
            if not _real(getattr(self, name)) and not (name in ("weight_decay", "momentum")
                                                       and getattr(self, name) is None):
                fail(name, "a finite number")
        if self.gradient_clip_value is not None and not _real(self.gradient_clip_value):
            fail("gradient_clip_value", "None or a number > 0")
        for name in ("early_stopping_patience", "max_steps_per_epoch"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                fail(name, "None or a whole number >= 1")

    def _check_ranges(self) -> None:
        fail = self._fail
        for name in ("batch_size", "epochs", "save_every", "validation_every", "log_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                fail(name, "a whole number >= 1")
        workers = self.num_workers
        if workers != "auto" and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 0):
            fail("num_workers", "'auto' or a whole number >= 0")
        if not self.learning_rate > 0:
            fail("learning_rate", "a number > 0")
        for name in ("weight_decay", "momentum", "early_stopping_min_delta"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                fail(name, "a number >= 0")
        if self.gradient_clip_value is not None and not self.gradient_clip_value > 0:
            fail("gradient_clip_value", "None or a number > 0")
        for name in ("early_stopping_patience", "max_steps_per_epoch"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                fail(name, "None or a whole number >= 1")
        for name in ("validation_split", "test_split"):
            if not 0.0 <= float(getattr(self, name)) < 1.0:
                fail(name, "a fraction in [0, 1)")
        if self.validation_split + self.test_split >= 1.0:
            fail("validation_split", "validation_split + test_split < 1")

    def _check_choices(self) -> None:
        fail = self._fail
        self.device = str(self.device).lower()
        if self.device.split(":")[0] not in DEVICES:
            fail("device", f"one of {DEVICES} (optionally cuda:N)")
        if self.amp not in (False, True, "bf16", "fp16", "none", None):
            fail("amp", "False, True, 'bf16' or 'fp16'")
        if self.class_balance not in ("none", "weights", "sampler"):
            fail("class_balance", "'none', 'weights' or 'sampler'")
        if self.on_nan_loss not in ("error", "skip"):
            fail("on_nan_loss", "'error' or 'skip'")
        if self.distributed not in ("auto", True, False):
            fail("distributed", "'auto', True or False")
        if self.gradient_clip_algorithm not in ("norm", "value"):
            fail("gradient_clip_algorithm", "'norm' or 'value'")
        if self.freeze not in FREEZE:
            fail("freeze", f"one of {FREEZE}")

    def _check_optimizer(self) -> None:
        """The optimizer and the schedule: names and keywords of the registry (``optim``)."""
        fail = self._fail
        self.optimizer = str(self.optimizer).lower()
        if self.optimizer not in OPTIMIZERS:
            fail("optimizer", f"one of {tuple(OPTIMIZERS)}")
        if self.optimizer_params is not None:
            self.optimizer_params = dict(self.optimizer_params)
            problem = optimizer_problem(self.optimizer, self.optimizer_params)
            if problem:
                fail("optimizer_params", problem)
        if self.momentum is not None and "momentum" not in OPTIMIZERS[self.optimizer].defaults:
            fail("momentum", f"None: optimizer={self.optimizer!r} has no momentum (optimizer='sgd' has)")
        if isinstance(self.lr_scheduler, str):
            self.lr_scheduler = self.lr_scheduler.lower()
        if self.lr_scheduler in ("none", ""):
            self.lr_scheduler = None
        if self.lr_scheduler is not None and self.lr_scheduler not in SCHEDULERS:
            fail("lr_scheduler", f"one of {list(SCHEDULERS)} or None")
        if self.lr_scheduler_params is not None:
            self.lr_scheduler_params = dict(self.lr_scheduler_params)
        problem = scheduler_problem(self.lr_scheduler, self.lr_scheduler_params)
        if problem:
            fail("lr_scheduler_params", problem)
        bad = scheduler_value_problem(self.lr_scheduler_params) if self.lr_scheduler is not None else None
        if bad:
            key, expected = bad
            raise ValueError(f"TrainingConfig.lr_scheduler_params[{key!r}]={self.lr_scheduler_params[key]!r}: "
                             f"expected {expected}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainingConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"TrainingConfig has no field(s) {unknown}; known fields: {sorted(known)}")
        return cls(**values)
