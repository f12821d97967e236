"""The one label convention of SeisPolarity and the maps that bring each source to it.

Classes: 0 = up (U, positive, compression), 1 = down (D, negative, dilatation),
2 = unknown (X, K, N, undecidable, noise). Two-class models use 0/1 only.
"""
from __future__ import annotations

import json
import logging
from typing import Any, Mapping

import numpy as np

log = logging.getLogger(__name__)

UP, DOWN, UNKNOWN = 0, 1, 2
CLASS_NAMES = ("up", "down", "unknown")

# Clarity of the onset (DiTing's `p_clarity`, our flat files' `Z`): impulsive, emergent, unknown.
CLARITY_CODES = {"I": 0, "E": 1, "K": 2}


class LabelError(ValueError):
    """A label value that the configured map does not know."""


def normalize_label_map(label_map: Mapping[Any, Any] | str | None) -> dict[str, int] | None:
    """Return a map with string keys and int codes in {0, 1, 2}; accept JSON strings too.

    Keys are compared as strings (after stripping and, for bytes, decoding) so an HDF5 attribute
    ``{"0": 0}`` and a YAML map ``{0: 0}`` mean the same thing.
    """
    if label_map is None:
        return None
    if isinstance(label_map, (str, bytes)):
        label_map = json.loads(label_map)
    out: dict[str, int] = {}
    for key, code in dict(label_map).items():
        code = int(code)
        if code not in (UP, DOWN, UNKNOWN):
            raise LabelError(f"label_map value for {key!r} is {code}; expected 0 (up), 1 (down) or 2 (unknown)")
        out[label_key(key)] = code
    return out


def label_key(value: Any) -> str:
    """The canonical string form of one raw label value (int, float, str or bytes)."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        value = int(value)
    if isinstance(value, np.integer):
        value = int(value)
    return str(value).strip()


#: Cells that mean "no polarity given" in text columns (how CSV converters write a missing value).
MISSING_WORDS = frozenset({"", "nan", "none"})


def apply_label_map(raw: Any, label_map: Mapping[str, int], source: str = "", default: int | None = None, *,
                    ignore_case: bool = False, missing_code: int | None = None) -> np.ndarray:
    """Map raw label values (ints, floats, words, bytes) to codes 0 up / 1 down / 2 unknown.

    Each value is compared by its :func:`label_key` (case-insensitively with ``ignore_case``).
    A value absent from the map gets, in this order: ``missing_code`` if it is a missing cell
    (:data:`MISSING_WORDS`, when ``missing_code`` is given), the map's catch-all key ``"*"`` if it
    has one, ``default`` if given (readers pass ``-1`` to flag the row and decide per row);
    otherwise a LabelError names ``source``, the first row and the value.
    """
    raw = np.asarray(raw)
    if raw.size == 0:
        return np.zeros(0, dtype=np.int64)
    fold = (lambda key: key.lower()) if ignore_case else (lambda key: key)
    lookup = {fold(str(k)): int(v) for k, v in label_map.items()}
    fallback = lookup.pop("*", None)
    uniques, inverse = np.unique(raw, return_inverse=True)
    codes = np.empty(len(uniques), dtype=np.int64)
    for i, value in enumerate(uniques):
        key = fold(label_key(value))
        if key in lookup:
            codes[i] = lookup[key]
        elif missing_code is not None and key.lower() in MISSING_WORDS:
            codes[i] = missing_code
        elif fallback is not None:
            codes[i] = fallback
        elif default is not None:
            codes[i] = default
        else:
            row = int(np.flatnonzero(inverse.reshape(-1) == i)[0])
            where = f"{source}: " if source else ""
            raise LabelError(
                f"{where}label {key!r} at row {row} is not in label_map {dict(label_map)}; "
                f"add it to data.label_map (label_map= in Python; 0 up, 1 down, 2 unknown)")
    return codes[inverse.reshape(-1)].astype(np.int64)


def resolve_label_map(file_map: Any, user_map: Any, preset_map: Mapping[Any, Any], source: str) -> dict[str, int]:
    """The label map in force: one stored in the file > the one the user gave > the preset's.

    A user map that a stored map overrides is logged as a warning (compared case-insensitively).
    """
    user = normalize_label_map(user_map) if user_map is not None else None
    if file_map is not None:
        stored = normalize_label_map(file_map)
        if user is not None and _folded(user) != _folded(stored):
            log.warning("%s: the label_map stored in the file %s overrides the configured %s",
                        source, stored, user)
        return stored
    if user is not None:
        return user
    return normalize_label_map(preset_map)


def _folded(label_map: Mapping[str, int]) -> dict[str, int]:
    return {str(k).strip().lower(): int(v) for k, v in label_map.items()}


def label_map_to_json(label_map: Mapping[str, int]) -> str:
    return json.dumps({str(k): int(v) for k, v in label_map.items()}, sort_keys=True)
