"""Optimizers and learning-rate schedulers: one registry, read by the Python API and the runner.

``OPTIMIZERS`` and ``SCHEDULERS`` map a name (``TrainingConfig(optimizer="sgd",
lr_scheduler="cosine")``, ``python train.py optimizer=sgd scheduler=cosine``) to a ``Factory``: the
torch class and every keyword a config may set, with its default. This is the one place where
those defaults live (``DEFAULT_LR``, Adam's weight decay, SGD's momentum, a step schedule's
``step_size``, ...):

- ``TrainingConfig`` checks its names and keyword arguments against the registry when it is
  created and fills in the optimizer's defaults (``weight_decay=None`` becomes 1e-5 for Adam and
  1e-2 for AdamW);
- the runner's ``conf/optimizer/*.yaml`` and ``conf/scheduler/*.yaml`` options are schemas
  generated from these entries (``seispolarity/config.py``), so their keys, types and defaults
  are these; the runner turns the composed node back into ``TrainingConfig`` fields with
  ``fields_from_node`` and hands the Trainer no factory of its own;
- ``build_optimizer`` / ``build_scheduler`` build the torch objects from a ``TrainingConfig``.

Adding an optimizer or a scheduler is one entry here and one ``conf/<group>/<name>.yaml``
(``defaults: [/schema/<group>/<name>@_here_]``); docs/architecture.md, "Where to add things".
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

import torch

OptimizerFactory = Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], Any]

#: The learning rate of every optimizer unless set (``TrainingConfig.learning_rate``, the runner's ``lr``).
DEFAULT_LR = 1e-3


class _RunEpochs:
    """A default that is the run's ``epochs`` (a cosine schedule's ``T_max``); ``${trainer.epochs}``
    in the runner's schema."""

    def __repr__(self) -> str:
        return "<the run's epochs>"


EPOCHS = _RunEpochs()


@dataclass(frozen=True)
class Factory:
    """One registry entry: ``target``, the import path of a torch class (also the runner's
    ``_target_``), and ``defaults``, every keyword argument a config may set, with its default
    (the learning rate of an optimizer is not among them: it is ``DEFAULT_LR`` for all)."""

    target: str
    defaults: Mapping[str, Any]

    @property
    def cls(self) -> type:
        module, name = self.target.rsplit(".", 1)
        return getattr(importlib.import_module(module), name)


OPTIMIZERS: dict[str, Factory] = {
    "adam": Factory("torch.optim.Adam", {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 1e-5,
                                         "amsgrad": False}),
    "adamw": Factory("torch.optim.AdamW", {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 1e-2,
                                           "amsgrad": False}),
    "sgd": Factory("torch.optim.SGD", {"momentum": 0.9, "dampening": 0.0, "weight_decay": 1e-5,
                                       "nesterov": False}),
}

#: Per-epoch schedules; ``reduce_on_plateau`` steps on the validation loss.
SCHEDULERS: dict[str, Factory] = {
    "step": Factory("torch.optim.lr_scheduler.StepLR", {"step_size": 10, "gamma": 0.1}),
    "cosine": Factory("torch.optim.lr_scheduler.CosineAnnealingLR", {"T_max": EPOCHS, "eta_min": 0.0}),
    "reduce_on_plateau": Factory("torch.optim.lr_scheduler.ReduceLROnPlateau", {
        "mode": "min", "factor": 0.1, "patience": 5, "threshold": 1e-4, "threshold_mode": "rel",
        "cooldown": 0, "min_lr": 0.0}),
}

#: The ``TrainingConfig`` fields the optimizer and the scheduler are described by (what
#: ``fields_from_node`` fills in); under the runner, the ``optimizer`` and ``scheduler`` groups.
OPTIMIZER_FIELDS = ("optimizer", "learning_rate", "weight_decay", "momentum", "optimizer_params")
SCHEDULER_FIELDS = ("lr_scheduler", "lr_scheduler_params")
#: The optimizer keywords that are ``TrainingConfig`` fields of their own (the docs' fields).
_OWN_FIELDS = {"lr": "learning_rate", "weight_decay": "weight_decay", "momentum": "momentum"}


def optimizer_problem(name: str, params: Mapping[str, Any] | None) -> str | None:
    """Why ``name`` with ``optimizer_params`` is not an optimizer of the registry, or None."""
    if name not in OPTIMIZERS:
        return f"one of {tuple(OPTIMIZERS)}"
    extra = sorted(set(params or {}) - set(OPTIMIZERS[name].defaults) - {"lr"})
    own = sorted(set(params or {}) & set(_OWN_FIELDS))
    if own:
        return f"no {', '.join(own)} (TrainingConfig.{', TrainingConfig.'.join(_OWN_FIELDS[k] for k in own)} sets it)"
    if extra:
        takes = sorted(k for k in OPTIMIZERS[name].defaults if k not in _OWN_FIELDS)
        return f"keywords of {name!r} only: {takes}, not {extra}"
    return None


def _whole(low: int):
    return lambda v: not isinstance(v, bool) and isinstance(v, int) and v >= low, f"a whole number >= {low}"


def _number(test, text: str):
    return lambda v: not isinstance(v, bool) and isinstance(v, (int, float)) and test(v), text


#: The schedules' numeric keywords: torch takes any value and fails (step_size=0: a division by zero)
#: or quietly does the wrong thing (gamma=-1: a negative learning rate) epochs later.
SCHEDULER_VALUES = {
    "step_size": _whole(1), "T_max": _whole(1), "patience": _whole(0), "cooldown": _whole(0),
    "gamma": _number(lambda v: v > 0, "a number > 0"), "factor": _number(lambda v: 0 < v < 1, "a number in (0, 1)"),
    "eta_min": _number(lambda v: v >= 0, "a number >= 0"), "min_lr": _number(lambda v: v >= 0, "a number >= 0"),
    "threshold": _number(lambda v: v >= 0, "a number >= 0"),
}


def scheduler_problem(name: str | None, params: Mapping[str, Any] | None) -> str | None:
    """Why ``name`` with ``lr_scheduler_params`` is not a schedule of the registry, or None."""
    if name is None:
        return None  # no schedule: its parameters are kept, unused
    if name not in SCHEDULERS:
        return f"one of {list(SCHEDULERS)} or None"
    extra = sorted(set(params or {}) - set(SCHEDULERS[name].defaults))
    if extra:
        return f"keywords of lr_scheduler={name!r} only: {sorted(SCHEDULERS[name].defaults)}, not {extra}"
    return None


def scheduler_value_problem(params: Mapping[str, Any] | None) -> tuple[str, str] | None:
    """The first keyword of ``lr_scheduler_params`` with a value out of its range, and what it expects."""
    for key, value in (params or {}).items():
        valid, expected = SCHEDULER_VALUES.get(key, (lambda v: True, ""))
        if not valid(value):
            return key, expected
    return None


def optimizer_kwargs(config) -> dict[str, Any]:
    """The keyword arguments of ``config.optimizer``'s class: the registry's defaults, then the
    config's ``learning_rate``, ``weight_decay``, ``momentum`` (where the optimizer has one) and
    ``optimizer_params``."""
    entry = OPTIMIZERS[config.optimizer]
    kwargs = {**entry.defaults, "lr": config.learning_rate}
    for key in ("weight_decay", "momentum"):
        value = getattr(config, key)
        if key in entry.defaults and value is not None:
            kwargs[key] = value
    kwargs.update(config.optimizer_params or {})
    return kwargs


def scheduler_kwargs(config) -> dict[str, Any]:
    """The keyword arguments of ``config.lr_scheduler``'s class (``T_max``: the config's epochs)."""
    kwargs = {**SCHEDULERS[config.lr_scheduler].defaults, **(config.lr_scheduler_params or {})}
    return {k: config.epochs if v is EPOCHS else v for k, v in kwargs.items()}


def build_optimizer(params, config, factory: OptimizerFactory | None = None) -> torch.optim.Optimizer:
    """``factory(params)`` when given (any ``torch.optim`` class), else ``config.optimizer`` from the registry."""
    if factory is not None:
        return factory(params)
    return OPTIMIZERS[config.optimizer].cls(params, **optimizer_kwargs(config))


def build_scheduler(optimizer: torch.optim.Optimizer, config, factory: SchedulerFactory | None = None):
    """Per-epoch scheduler: ``factory(optimizer)``, or ``config.lr_scheduler`` from the registry with
    ``config.lr_scheduler_params`` over its defaults; None without one."""
    if factory is not None:
        return factory(optimizer)
    if config.lr_scheduler is None:
        return None
    kwargs = scheduler_kwargs(config)
    try:
        return SCHEDULERS[config.lr_scheduler].cls(optimizer, **kwargs)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"lr_scheduler_params {config.lr_scheduler_params} do not fit "
                         f"lr_scheduler={config.lr_scheduler!r}: {exc}") from None


def step_scheduler(scheduler, val_loss: float | None) -> None:
    if scheduler is None:
        return
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        if val_loss is not None:
            scheduler.step(val_loss)
    else:
        scheduler.step()


def _by_target(registry: Mapping[str, Factory], node: Mapping[str, Any], group: str) -> str:
    target = str(node.get("_target_", ""))
    for name, entry in registry.items():
        if entry.target == target:
            return name
    raise ValueError(f"{group}._target_={target!r} is not in seispolarity.training.optim.{group.upper()}S "
                     f"({', '.join(e.target for e in registry.values())}): add an entry there for a new one")


def fields_from_node(optimizer: Mapping[str, Any] | None, scheduler: Mapping[str, Any] | None) -> dict[str, Any]:
    """``TrainingConfig`` fields from the runner's composed ``optimizer`` and ``scheduler`` nodes
    (plain dicts, resolved; a node is ``_target_`` (a registry entry's), ``_partial_`` and its
    keywords): ``{"optimizer": "sgd", "learning_rate": node.lr, "weight_decay": ..., "momentum":
    ..., "optimizer_params": the rest, "lr_scheduler": ..., "lr_scheduler_params": ...}``. A None
    optimizer node leaves the optimizer fields out (``TrainingConfig``'s defaults)."""
    out: dict[str, Any] = {}
    if optimizer is not None:
        values = {k: v for k, v in optimizer.items() if not str(k).startswith("_")}
        out["optimizer"] = _by_target(OPTIMIZERS, optimizer, "optimizer")
        out["learning_rate"] = values.pop("lr", DEFAULT_LR)
        out.update({field: values.pop(key) for key, field in _OWN_FIELDS.items() if key in values})
        out["optimizer_params"] = values or None
    if scheduler is None:
        out.update(lr_scheduler=None, lr_scheduler_params=None)
    else:
        out["lr_scheduler"] = _by_target(SCHEDULERS, scheduler, "scheduler")
        out["lr_scheduler_params"] = {k: v for k, v in scheduler.items() if not str(k).startswith("_")} or None
    return out
