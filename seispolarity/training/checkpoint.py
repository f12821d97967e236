"""Atomic, code-free checkpoints.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts only, so it loads with
``torch.load(..., weights_only=True)``. It is written to a temporary file in the same folder,
fsynced, then renamed over the target, so a crash or SIGKILL never leaves a truncated file.
"""
from __future__ import annotations

import codecs
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
    if os.path.isdir(path):
        raise CheckpointError(f"{path}: {_folder_hint(path)}")
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such checkpoint file")
    kind = file_kind(path)
    if kind is not None:  # torch.load would end in e.g. "Unsupported operand 72" for an HDF5 file
        raise CheckpointError(f"{path}: not a readable SeisPolarity checkpoint ({EXPECTED}; this looks like {kind})")
    damage = _zip_damage(path)
    if damage:
        raise CheckpointError(f"{path}: damaged checkpoint ({damage}): cut short or altered after it was written")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # any failure here means "not a usable checkpoint"
        raise CheckpointError(f"{path}: not a readable SeisPolarity checkpoint ({load_failure(path, exc)})") from None
    if not isinstance(state, dict) or "model_state_dict" not in state:
        what = f"a {type(state).__name__}" if not isinstance(state, dict) else \
            f"a dict without 'model_state_dict' (keys: {sorted(map(str, state))[:8]})"
        raise CheckpointError(f"{path}: not a SeisPolarity checkpoint ({what})")
    return state


def _folder_hint(path: str) -> str:
    """What to give instead of a folder: the run's checkpoints that are there (a run folder, or its
    ``checkpoints/``), last.ckpt to resume, best.ckpt to evaluate or fine-tune."""
    found = [f for sub in ("checkpoints", "") for f in (os.path.join(path, sub, n) for n in ("last.ckpt", "best.ckpt"))
             if os.path.isfile(f)]
    if not found:
        return "a folder, not a checkpoint file, and it holds no checkpoints/last.ckpt or best.ckpt"
    uses = {"last.ckpt": " (to resume the run)", "best.ckpt": " (to evaluate or fine-tune it)"}
    return "a folder, not a checkpoint file; give the file: " + " or ".join(
        os.path.normpath(f) + uses[os.path.basename(f)] for f in found[:2])


#: What a checkpoint file should be, for the messages about one that is not.
EXPECTED = "a torch .ckpt/.pt file was expected"
#: torch.save writes a zip archive (older versions: a pickle, protocol byte 0x80 first)
ZIP_MAGIC, PICKLE_MAGIC = b"PK\x03\x04", b"\x80"
#: First bytes of files mistaken for checkpoints, and what they are.
SIGNATURES = ((b"\x89HDF\r\n\x1a\n", "an HDF5 file"), (b"\x93NUMPY", "a NumPy .npy file"),
              (b"\x1f\x8b", "a gzip file"))


def file_kind(path: str | os.PathLike) -> str | None:
    """What ``path`` looks like when its first bytes are not those of a torch file ("an HDF5 file",
    "a text file", ...); None when they are (a zip archive or a pickle: torch.load decides)."""
    with open(path, "rb") as fh:
        head = fh.read(512)
    if head.startswith((ZIP_MAGIC, PICKLE_MAGIC)):
        return None
    if not head:
        return "an empty file"
    for magic, kind in SIGNATURES:
        if head.startswith(magic):
            return kind
    if _is_text(head):
        return "a text file"
    return f"unknown binary data (first bytes {head[:4].hex(' ')})"


def _is_text(head: bytes) -> bool:
    """UTF-8 without NUL bytes (a cut multi-byte character at the end of ``head`` is fine)."""
    if b"\x00" in head:
        return False
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return False
    return True


def load_failure(path: str | os.PathLike, exc: BaseException, expected: str = EXPECTED) -> str:
    """Why torch.load(weights_only=True) refused a zip archive or a pickle, in a few words: torch's
    own message is a page long, or as bare as "Unsupported operand 149"."""
    detail = _load_failure(exc)
    if "global" in detail.lower():  # it names the function or class it refused to load
        return f"it holds code or classes, which are not loaded: {detail}"
    if _foreign_zip(path):
        return f"{expected}; this looks like a zip archive torch.save did not write"
    with open(path, "rb") as fh:
        if fh.read(1) == PICKLE_MAGIC:
            return f"{expected}; this looks like a plain Python pickle, which is not loaded as it could run code"
    return f"truncated, corrupt or holding code objects: {detail}"


def _foreign_zip(path: str | os.PathLike) -> bool:
    """A readable zip archive without the ``<name>/data.pkl`` record every torch.save archive has."""
    try:
        with zipfile.ZipFile(path) as archive:
            return not any(name.endswith("/data.pkl") for name in archive.namelist())
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        return False


def _zip_damage(path: str) -> str | None:
    """What is wrong with a checkpoint's zip container, if anything: torch.load does not check the
    CRC-32 of each record, so flipped bytes inside a tensor would load silently as wrong weights."""
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head != ZIP_MAGIC:
        return None  # a legacy pickle: torch.load(weights_only=True) decides
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
            return line.replace("WeightsUnpickler error: ", "").split(" Please use")[0].rstrip(".")[:200]
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
