"""Folders and files: whether a folder can be written, and all-or-nothing writes.

:func:`writable_folder_problem` is asked before anything starts rather than after an epoch, by the
Trainer (its ``save_dir``, before the first step) and the runner's ``CheckOutputDir`` callback (the
run or sweep folder, before Hydra makes it). :func:`atomic_file` is how every file that must never
be seen half-written is written: checkpoints, metrics and reports, the synthetic cache, model
cards. Imports nothing of the package, so every layer can use it.
"""
from __future__ import annotations

import contextlib
import os
import socket
import tempfile
from collections.abc import Iterator

__all__ = ["writable_folder_problem", "atomic_file", "temporary_prefix"]

_HOST = socket.gethostname().replace(".", "_") or "host"


def temporary_prefix(path: str | os.PathLike) -> str:
    """The name start of ``path``'s temporary files from this process: ``.<name>.<host>.<pid>.``
    (hidden, never matching the file's own pattern, e.g. ``*.ckpt``; host and pid tell a killed
    writer's leftovers from those of a live one on a shared file system)."""
    return f".{os.path.basename(os.fspath(path))}.{_HOST}.{os.getpid()}."


def _remove_dead_writers_temporaries(folder: str, name: str) -> None:
    """Delete ``.<name>.<this host>.<pid>.*.tmp`` files whose writer process no longer exists
    (a writer killed by SIGKILL or a power cut cannot clean up after itself)."""
    head = f".{name}.{_HOST}."
    try:
        entries = os.listdir(folder)
    except OSError:
        return
    for entry in entries:
        if not (entry.startswith(head) and entry.endswith(".tmp")):
            continue
        pid = entry[len(head):].split(".", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
            continue  # the writer is alive (or another user's process): leave it
        except ProcessLookupError:
            pass
        except OSError:
            continue
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(folder, entry))


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, durable: bool = False) -> Iterator[str]:
    """A temporary path beside ``path`` to write; renamed over ``path`` when the block ends normally.

    On any error (disk full, Ctrl-C) the temporary file is removed and ``path`` keeps its previous
    content: readers see the old file or the new one, never half of one. Parallel writers of one
    path (sweep jobs generating the same cache) each get their own temporary file. ``durable``
    also fsyncs the file and its folder, so the rename survives a power cut (checkpoints).
    The parent folder is created if missing; temporaries of ``path`` left by dead writers on this
    host are removed after a successful write.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=temporary_prefix(path), suffix=".tmp", dir=folder)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; give the usual file mode
        os.close(fd)
        yield tmp
        if durable:
            _fsync(tmp, os.O_RDONLY)
        os.replace(tmp, path)
        if durable:
            _fsync(folder, os.O_RDONLY)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    _remove_dead_writers_temporaries(folder, os.path.basename(path))


def _fsync(path: str, flags: int) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def writable_folder_problem(folder: str, create: bool = False) -> str | None:
    """Why ``folder`` cannot be written, or None.

    The folder, or where it does not exist yet its nearest existing parent (the root included), is
    probed with a temporary file. ``create=False`` leaves the file system as it was (a run folder
    Hydra makes later); ``create=True`` makes the folder first and probes it (the Trainer's
    ``save_dir``).
    """
    path = os.path.abspath(folder)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    if not os.path.isdir(path):
        return f"{path} is a file, not a folder"
    if create:
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as exc:
            return f"{os.path.abspath(folder)} cannot be made ({exc.strerror or exc})"
        path = os.path.abspath(folder)
    probe = os.path.join(path, f".write-test.{os.getpid()}")
    try:
        with open(probe, "wb") as fh:
            fh.write(b"0")
        os.unlink(probe)
    except OSError as exc:
        return f"{path} is not writable ({exc.strerror or exc})"
    return None
