"""Optimizers and learning-rate schedulers by name, or from factories (Hydra's ``_partial_``)."""
from __future__ import annotations

from typing import Any, Callable, Iterable

import torch

OptimizerFactory = Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], Any]


def build_optimizer(params, config, factory: OptimizerFactory | None = None) -> torch.optim.Optimizer:
    """``factory(params)`` when given (any ``torch.optim`` class), else ``config.optimizer`` by name."""
    if factory is not None:
        return factory(params)
    name, lr, wd = config.optimizer, config.learning_rate, config.weight_decay
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=config.momentum, weight_decay=wd)
    raise ValueError(f"optimizer={name!r}; expected 'adam', 'adamw' or 'sgd'")


def build_scheduler(optimizer: torch.optim.Optimizer, config, factory: SchedulerFactory | None = None):
    """Per-epoch scheduler: ``factory(optimizer)`` or ``config.lr_scheduler`` with its params.

    Defaults: step (step_size 10, gamma 0.1), cosine (T_max = epochs), reduce_on_plateau (on the
    validation loss, factor 0.1, patience 5). ``lr_scheduler_params`` overrides any of them.
    """
    if factory is not None:
        return factory(optimizer)
    name, params = config.lr_scheduler, dict(config.lr_scheduler_params or {})
    if name is None:
        return None
    try:
        if name == "step":
            return torch.optim.lr_scheduler.StepLR(optimizer, **{"step_size": 10, "gamma": 0.1, **params})
        if name == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, **{"T_max": config.epochs, **params})
        if name == "reduce_on_plateau":
            return torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, **{"mode": "min", "factor": 0.1, "patience": 5, **params})
    except TypeError as exc:
        raise ValueError(f"lr_scheduler_params {params} do not fit lr_scheduler={name!r}: {exc}") from None
    raise ValueError(f"lr_scheduler={name!r}; expected None, 'step', 'cosine' or 'reduce_on_plateau'")


def step_scheduler(scheduler, val_loss: float | None) -> None:
    if scheduler is None:
        return
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        if val_loss is not None:
            scheduler.step(val_loss)
    else:
        scheduler.step()
