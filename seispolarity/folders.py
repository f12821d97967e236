"""Whether a folder can be written, asked before anything starts rather than after an epoch.

One probe for both places that ask: the Trainer (its ``save_dir``, before the first step) and the
runner's ``CheckOutputDir`` callback (the run or sweep folder, before Hydra makes it). Imports
nothing of the package, so every layer can use it.
"""
from __future__ import annotations

import os

__all__ = ["writable_folder_problem"]


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
