"""Plain Python values from numpy and bytes, where only plain values will do.

Checkpoints are loaded with ``torch.load(weights_only=True)``, which refuses numpy types; CSV
cells and JSON want ``int``/``float``/``str``, not ``np.int64`` or ``b"CI.ABC"``.
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["to_plain"]


def to_plain(value: Any) -> Any:
    """``value`` with numpy scalars as Python scalars, arrays and tuples as lists, bytes decoded
    (UTF-8, undecodable bytes replaced) and mapping keys as strings, recursively; anything else
    unchanged."""
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, bytes):  # before np.generic: np.bytes_ is both
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value
