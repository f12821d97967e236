"""Command-line adjustments made before Hydra parses ``sys.argv`` (run folder choice)."""
from __future__ import annotations

import os
from pathlib import Path


def _value(argv: list[str], key: str) -> str | None:
    for arg in argv:
        if arg.startswith(key + "="):
            return arg.split("=", 1)[1]
    return None


def prepare_argv(argv: list[str]) -> list[str]:
    """Resuming ``ckpt_path=<run>/checkpoints/last.ckpt`` (train=true) continues in ``<run>``."""
    args = list(argv)
    multirun = "-m" in args or "--multirun" in args
    ckpt = _value(args[1:], "ckpt_path")
    if ckpt and not multirun and _value(args[1:], "hydra.run.dir") is None and _value(args[1:], "train") not in ("false", "False"):
        run_dir = Path(ckpt).resolve().parent.parent
        if Path(ckpt).resolve().parent.name == "checkpoints" and (run_dir / ".hydra").is_dir():
            args.append(f"hydra.run.dir={run_dir}")
    return args
