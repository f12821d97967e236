"""What a Trainer is built from, resolved once before training: the device, the seeds, the
augmentation, the weights to start from and the layers to freeze, the network to step (DDP,
``torch.compile``) and the class weights of the loss."""
from __future__ import annotations

import logging
import os
import random
from typing import Any

import numpy as np
import torch

from ..data.augment import AugmentConfig
from ..data.labels import CLASS_NAMES
from .batches import as_batched_dataset, workers_to_start
from .checkpoint import CheckpointError, load_checkpoint
from .config import TrainingConfig
from .distributed import DistContext, init_distributed
from .worker_pool import usable_cores

log = logging.getLogger("seispolarity.training")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def resolve_device(name: str, ctx: DistContext | None = None) -> torch.device:
    """``auto`` picks cuda > mps > cpu; an unavailable device is a one-line ``ValueError`` (the
    runner checks it before a run folder exists)."""
    name = name.lower()
    mps = getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else ("mps" if mps else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            why = ("this torch is a CPU-only build" if torch.version.cuda is None
                   else "no CUDA GPU is visible") + f", torch {torch.__version__}"
            raise ValueError(f"device={name!r} but CUDA is not available on this machine ({why}); "
                             f"use device='cpu' or device='auto'")
        index = name.partition(":")[2]
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise ValueError(f"device={name!r}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                             f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
        if name == "cuda" and ctx is not None and ctx.enabled:
            name = f"cuda:{ctx.local_rank}"
    if name == "mps" and not mps:
        raise ValueError("device='mps' but MPS is not available on this machine; use 'cpu' or 'auto'")
    return torch.device(name)


def start_processes_and_device(config: TrainingConfig) -> tuple[DistContext, torch.device]:
    """Join the DDP process group (under torchrun), pick the device, set determinism and the seeds."""
    if config.deterministic:
        # deterministic cuBLAS needs a fixed workspace; read when cuBLAS starts (no effect on CPU)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    ctx = init_distributed(config.distributed, config.device)
    if ctx.enabled and "OMP_NUM_THREADS" not in os.environ:
        # torchrun sets OMP_NUM_THREADS itself; a SLURM task would otherwise run threads for every
        # core of the node beside the node's other ranks
        torch.set_num_threads(max(1, min(torch.get_num_threads(), usable_cores())))
    device = resolve_device(config.device, ctx)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = not config.deterministic
    if config.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    seed_everything(config.seed)
    return ctx, device


def split_datasets(cfg: TrainingConfig, dataset, val_dataset=None, test_dataset=None) -> tuple[Any, Any, Any]:
    """Train / validation / test sets: the ones given, else shares held out of ``dataset``."""
    dataset = as_batched_dataset(dataset)
    val_dataset = as_batched_dataset(val_dataset) if val_dataset is not None else None
    test_dataset = as_batched_dataset(test_dataset) if test_dataset is not None else None
    if val_dataset is None and (cfg.validation_split > 0 or cfg.test_split > 0) and hasattr(dataset, "split"):
        # An explicit test set (e.g. the data set's own test file) replaces the test split: hold out none.
        test_share = 0.0 if test_dataset is not None else cfg.test_split
        dataset, val_dataset, split_test = dataset.split(cfg.validation_split, test_share, cfg.seed)
        test_dataset = test_dataset if test_dataset is not None else split_test
    return dataset, val_dataset, test_dataset


def resolve_augment(augment: AugmentConfig | str | None) -> AugmentConfig | None:
    if isinstance(augment, str) and augment == "default":
        return AugmentConfig()
    if augment is not None and not isinstance(augment, AugmentConfig):
        raise ValueError(f"augment={augment!r}; expected 'default', an AugmentConfig or None")
    return augment


def tell_capped_workers(num_workers: int | str, dataset, device: torch.device) -> None:
    """Say so once when fewer workers start than ``num_workers`` asks for (``workers_to_start``)."""
    if num_workers == "auto":
        return
    started = workers_to_start(num_workers, dataset, device)
    if started < int(num_workers):
        log.info("trainer.num_workers=%s: %d worker(s) start on this machine's %d cores, one core "
                 "staying with the training process", num_workers, started, started + 1)


def check_labels_fit(dataset, num_classes: int, role: str) -> None:
    labels = getattr(dataset, "labels", None)
    if isinstance(labels, torch.Tensor) and len(labels) and int(labels.max()) >= num_classes:
        top = int(labels.max())
        raise ValueError(
            f"the {role} data holds label {top} ({CLASS_NAMES[top]}) but the model has {num_classes} classes; "
            f"for a two-class model drop unknown traces (WaveformDataset(unknown='drop') or data.unknown=drop)")


def load_model_weights(model: torch.nn.Module, state: dict, source: str, what: str = "checkpoint") -> None:
    """``model.load_state_dict`` with a one-line CheckpointError naming torch's first concrete mismatch."""
    try:
        model.load_state_dict(state["model_state_dict"])
    except RuntimeError as exc:
        details = [ln.strip() for ln in str(exc).splitlines()[1:] if ln.strip()]
        raise CheckpointError(f"{source}: {what} does not fit {type(model).__name__}: "
                              f"{(details or str(exc).splitlines())[0][:300]}") from None


def init_weights(model: torch.nn.Module, spec: str, device: torch.device, normalize: str | None) -> None:
    """Fine-tuning (``init_from``): the model starts from a checkpoint's weights, nothing else of it."""
    state = load_checkpoint(spec, map_location=device)
    load_model_weights(model, state, spec, "init_from checkpoint")
    theirs = (state.get("data") or {}).get("normalize")
    if theirs and normalize is not None and theirs != normalize:
        log.warning("init_from %s was trained with normalize=%r, this data set uses %r", spec, theirs, normalize)
    log.info("initialised the model from %s (weights only: a new run from epoch 0 with a fresh optimizer)", spec)


def freeze(model: torch.nn.Module, what: str | None) -> list[torch.nn.Module]:
    """``freeze="features"``: only the classification head trains; returns the BatchNorm layers to
    keep in eval mode (their running statistics are part of the frozen features)."""
    if what in (None, "none"):
        return []
    name = type(model).__name__
    if not hasattr(model, "freeze_features"):
        raise ValueError(f"freeze={what!r}: {name} is not a PolarityModel; it does not say which parameters are "
                         f"its head")
    try:
        frozen = model.freeze_features()
    except NotImplementedError as exc:
        raise ValueError(f"freeze={what!r}: {exc}") from None
    total = sum(p.numel() for p in model.parameters())
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if not trained:
        raise ValueError(f"freeze={what!r}: {name} has no head parameters to train")
    log.info("freeze=%s: training the head only, %d of %d parameters (%d tensors frozen)", what, trained, total,
             len(frozen))
    return model.frozen_norm_layers()


def wrap_network(model: torch.nn.Module, ctx: DistContext, device: torch.device, compile: bool) -> torch.nn.Module:
    """The module the step calls: DDP around the model under torchrun, then ``torch.compile`` if asked."""
    net = model
    if ctx.enabled:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=bool(getattr(model, "aux_targets", ())))
    return torch.compile(net) if compile else net


def class_weights(labels: torch.Tensor, num_classes: int, device: torch.device) -> torch.Tensor:
    """``class_balance=weights``: each class weighs the inverse of its share of the training traces."""
    counts = torch.bincount(labels, minlength=num_classes).double()
    weights = counts.sum() / (num_classes * counts.clamp_min(1))
    return weights.float().to(device)


def autocast_dtype(amp) -> torch.dtype | None:
    """``amp``: False / None / "none" -> no autocast, "fp16" -> float16, anything else true -> bfloat16."""
    if amp in (False, None, "none"):
        return None
    return torch.float16 if amp == "fp16" else torch.bfloat16


def grad_scaler(amp_dtype: torch.dtype | None, device: torch.device) -> torch.amp.GradScaler:
    """Loss scaling for fp16 on CUDA only (bf16 has float32's range; the CPU needs none)."""
    return torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16 and device.type == "cuda")


def augment_generator(device: torch.device, seed: int, rank: int) -> torch.Generator:
    """The augmentations' own random stream (on the training device), one per DDP rank; checkpoints save it."""
    generator = torch.Generator(device=device if device.type == "cuda" else "cpu")
    return generator.manual_seed(seed + 1_000_003 * rank)


def describe(model: torch.nn.Module, dataset, normalize: str | None, sampling_rate: float) -> dict[str, Any]:
    """What a checkpoint says about its model (registry name and arguments) and its data, so that
    inference can rebuild the model and prepare inputs the same way."""
    name = {"name": type(model).__name__}
    return {"model": model.describe() if hasattr(model, "describe") else name,
            "label_map": getattr(dataset, "label_map", None),
            "data": {"window_length": getattr(dataset, "window_length", None), "normalize": normalize,
                     "sampling_rate": sampling_rate, "num_channels": getattr(dataset, "num_channels", None)}}
