"""The one label convention of SeisPolarity and the maps that bring each source to it.

Classes: 0 = up (U, positive, compression), 1 = down (D, negative, dilatation),
2 = unknown (X, K, N, undecidable, noise). Two-class models use 0/1 only.
"""
from __future__ import annotations

import json
from typing import Any, Mapping

import numpy as np

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


def apply_label_map(raw: np.ndarray, label_map: Mapping[str, int], source: str = "",
                    default: int | None = None) -> np.ndarray:
    """Map raw label values to codes; an unknown value raises a LabelError naming source, row and value.

    ``default`` (e.g. UNKNOWN) is used for values absent from the map instead of raising.
    """
    raw = np.asarray(raw)
    uniques, inverse = np.unique(raw, return_inverse=True)
    codes = np.empty(len(uniques), dtype=np.int64)
    for i, value in enumerate(uniques):
        key = label_key(value)
        if key in label_map:
            codes[i] = label_map[key]
        elif default is not None:
            codes[i] = default
        else:
            row = int(np.flatnonzero(inverse == i)[0])
            where = f"{source}: " if source else ""
            raise LabelError(
                f"{where}label {key!r} at row {row} is not in label_map {dict(label_map)}; "
                f"add it to label_map (0 up, 1 down, 2 unknown)")
    return codes[inverse.reshape(-1)].astype(np.int64)


def label_map_to_json(label_map: Mapping[str, int]) -> str:
    return json.dumps({str(k): int(v) for k, v in label_map.items()}, sort_keys=True)
