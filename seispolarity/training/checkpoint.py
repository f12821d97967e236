"""Atomic, code-free checkpoints.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts only, so it loads with
``torch.load(..., weights_only=True)``. It is written to a temporary file in the same folder,
fsynced, then renamed over the target, so a crash or SIGKILL never leaves a truncated file.
"""
from __future__ import annotations

import logging
import os
import random
import zipfile
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..folders import atomic_file
from ..plain import to_plain

log = logging.getLogger("seispolarity.training")

FORMAT = "seispolarity-checkpoint"
FORMAT_VERSION = 1
#: ``pretrained:<name>`` names the weights packaged with SeisPolarity (``seispolarity/pretrained/``)
PRETRAINED_PREFIX = "pretrained:"


class CheckpointError(RuntimeError):
    """A checkpoint file that is missing, truncated, corrupt or not ours."""


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> str:
    """Write ``state`` to ``path`` atomically: a temporary file in the same folder, fsync, rename.

    The state is first reduced to plain containers (dict, list, tuple, tensors, numbers, strings);
    an object that would make the file unloadable with ``weights_only=True`` is refused before
    anything is written, naming its key. A write failure (disk full, read-only folder) leaves the
    previous file untouched and no temporary file behind. Temporary files left by a killed writer
    (``.<name>.<host>.<pid>.*.tmp``, never matching ``*.ckpt``) are removed by the next save.
    """
    path = os.fspath(path)
    state = plain_state({"format": FORMAT, "format_version": FORMAT_VERSION, **state})
    try:
        with atomic_file(path, durable=True) as tmp, open(tmp, "wb") as fh:
            torch.save(state, fh)
    except BaseException as exc:
        cause = _os_error(exc)  # torch's zip writer turns ENOSPC into a RuntimeError on close
        if cause is not None:
            raise OSError(cause.errno, f"cannot write checkpoint {path}: {cause.strerror or cause}") from None
        raise
    return path


def _os_error(exc: BaseException | None) -> OSError | None:
    """The OSError in ``exc``'s chain (itself, its cause or context), if any."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def plain_state(value: Any, key: str = "state") -> Any:
    """``value`` with every container made a plain dict / list / tuple (OmegaConf nodes included)
    and numpy values made numbers / tensors; anything else raises a CheckpointError naming ``key``."""
    if value is None or isinstance(value, (bool, int, float, str, bytes, torch.Tensor, torch.dtype, torch.Size)):
        return value
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value)) if value.dtype != object else \
            [plain_state(v, f"{key}[{i}]") for i, v in enumerate(value.tolist())]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        items = ((k if isinstance(k, (str, int)) else str(k), plain_state(v, f"{key}.{k}")) for k, v in value.items())
        return OrderedDict(items) if isinstance(value, OrderedDict) else dict(items)
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return tuple(plain_state(v, f"{key}[{i}]") for i, v in enumerate(value))
    if isinstance(value, (list, tuple, Sequence)):  # ListConfig, namedtuples, ...
        return [plain_state(v, f"{key}[{i}]") for i, v in enumerate(value)]
    raise CheckpointError(f"checkpoint value {key} is a {type(value).__module__}.{type(value).__qualname__}; "
                          f"a checkpoint holds only tensors, numbers, strings, lists and dicts")


def is_pretrained(spec: Any) -> bool:
    """Whether ``spec`` names packaged weights (``pretrained:<name>``) rather than a file."""
    return isinstance(spec, str) and spec.startswith(PRETRAINED_PREFIX)


def checkpoint_file(spec: str | os.PathLike) -> str:
    """The file behind a checkpoint argument: a path as it is, ``pretrained:<name>`` the packaged
    ``<name>.pt`` (a CheckpointError listing the packaged names when there is none)."""
    text = os.fspath(spec)
    if is_pretrained(text):
        from ..pretrained import weights_path  # a file lookup in the package; imports nothing above training/

        return str(weights_path(text[len(PRETRAINED_PREFIX):]))
    return text


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint (a path or ``pretrained:<name>``) with ``weights_only=True``, after checking
    its zip container; a missing, damaged or foreign file is a CheckpointError naming it."""
    path = checkpoint_file(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such checkpoint file")
    damage = _zip_damage(path)
    if damage:
        raise CheckpointError(f"{path}: damaged checkpoint ({damage}): cut short or altered after it was written")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # any failure here means "not a usable checkpoint"
        raise CheckpointError(f"{path}: not a readable SeisPolarity checkpoint (truncated, corrupt or "
                              f"holding code objects): {_load_failure(exc)}") from None
    if not isinstance(state, dict) or "model_state_dict" not in state:
        what = f"a {type(state).__name__}" if not isinstance(state, dict) else \
            f"a dict without 'model_state_dict' (keys: {sorted(map(str, state))[:8]})"
        raise CheckpointError(f"{path}: not a SeisPolarity checkpoint ({what})")
    return state


def _zip_damage(path: str) -> str | None:
    """What is wrong with a checkpoint's zip container, if anything: torch.load does not check the
    CRC-32 of each record, so flipped bytes inside a tensor would load silently as wrong weights."""
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head != b"PK\x03\x04":
        return None  # not a zip (a legacy pickle, random bytes): torch.load(weights_only=True) decides
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        return f"incomplete zip archive: {str(exc).strip() or type(exc).__name__}"
    return f"CRC mismatch in record {bad}" if bad else None


def _load_failure(exc: BaseException) -> str:
    """The informative line of a torch.load failure (torch's weights_only message is a page long)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in lines:
        if "nsupported" in line and not line.startswith("Please file"):
            return line.replace("WeightsUnpickler error: ", "")[:200]
    return (lines[0] if lines else type(exc).__name__)[:200]


# -- RNG states as plain tensors / lists (weights_only-safe) ------------------------------------
def restore_optimizer_state(state: dict[str, Any], path: str, optimizer, scheduler, scaler) -> None:
    """The optimizer's, the scheduler's and the grad scaler's state from a checkpoint; another optimizer
is a one-line CheckpointError, another schedule a warning (the checkpoint's continues)."""
    names = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD"}
    theirs, mine = str((state.get("training_config") or {}).get("optimizer", "")), type(optimizer).__name__
    if theirs in names and mine.lower() in names and theirs != mine.lower():
        raise CheckpointError(f"{path}: the checkpoint was trained with {names[theirs]}, this run's optimizer is "
                              f"{mine}; resume with the same optimizer (optimizer={theirs})")
    try:
        optimizer.load_state_dict(state["optimizer_state_dict"])
    except (KeyError, ValueError) as exc:  # e.g. KeyError('step'): another optimizer's state
        raise CheckpointError(f"{path}: the checkpoint's optimizer state does not fit {mine}: "
                              f"{type(exc).__name__} {exc}") from None
    saved = state.get("scheduler_state_dict")
    if scheduler is not None and saved is not None:
        configured = scheduler.state_dict()
        scheduler.load_state_dict(saved)
        for key in ("T_max", "step_size", "gamma", "milestones", "total_steps"):
            if key in configured and configured[key] != saved.get(key, configured[key]):
                log.warning("%s: the checkpoint's learning-rate schedule has %s=%s, this config %s; the "
                            "checkpoint's schedule continues (e.g. a cosine schedule's T_max follows the "
                            "epochs of the run that started it)", path, key, saved[key], configured[key])
    if state.get("scaler_state_dict") is not None:
        scaler.load_state_dict(state["scaler_state_dict"])


def capture_rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state = {
        "python": to_plain(random.getstate()),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]),
                  int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    if "python" in state:
        random.setstate(_to_tuple(state["python"]))
    if "numpy" in state:
        name, keys, pos, has_gauss, gauss = state["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    if "torch" in state:
        torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def _to_tuple(value):
    if isinstance(value, list):
        return tuple(_to_tuple(v) for v in value)
    return value
