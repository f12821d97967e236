"""One HDF5 file with `X` and labels: our flat layout, SeisPolarity's processed files and SCSN.

Layout (DESIGN.md section 3):
- `X`: (N, L) or (N, C, L) float waveforms.
- labels: `Y` (or `fm` in the SCSN pick files); raw values mapped through a label map.
- P position: per-trace `p_pick` (N,) when present, else the attribute `p_pick`/`p_index`, else the
  preset's fixed index (SCSN: sample 300 of 600).
- optional per-trace metadata: `snr`, `evids`, `mag`/`magnitude`, `dist`/`distance`, clarity `Z`
  (I/E/K), `sncls` (NET.STA.CHA), and anything else 1-D of length N.
- attributes: `sampling_rate`, `label_map` (JSON), `component_order` for 3-D `X`.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Mapping

import numpy as np

from ..labels import CLARITY_CODES, apply_label_map, normalize_label_map
from ..labels import label_key as raw_label_text  # `label_key` is also an argument name below
from .base import DataFormatError, Reader, TraceTable, read_row_windows

log = logging.getLogger(__name__)

IDENTITY_MAP = {"0": 0, "1": 1, "2": 2}

# Per-trace datasets copied into TraceTable.metadata, under our names.
METADATA_KEYS = {
    "evids": "event_id", "event_id": "event_id", "snr": "snr", "mag": "magnitude",
    "magnitude": "magnitude", "dist": "distance", "distance": "distance", "sncls": "station",
    "amplitude": "amplitude", "p_true": "p_true",
}


class FlatReader(Reader):
    """Reads the flat layout; with ``preset="scsn"`` the Ross et al. (2018) SCSN files.

    Args:
        path: the HDF5 file.
        label_map: raw label value -> code; a `label_map` attribute in the file wins over it.
        label_key: the label dataset (default: `Y`, or `fm` when `Y` is absent).
        p_index: fixed P sample when the file has no `p_pick` (SCSN: 300).
        components: channel names to keep for 3-D `X` (e.g. "Z" or "ZNE"), by `component_order`.
        sampling_rate: used when the file has no `sampling_rate` attribute.
        on_bad_row: "error" (default) or "skip" for P picks outside the trace.
    """

    names = ("flat", "synthetic", "scsn")
    presets: dict[str, dict[str, Any]] = {
        "flat": {},
        "synthetic": {},
        "scsn": {"p_index": 300, "label_map": IDENTITY_MAP, "sampling_rate": 100.0},
    }

    def __init__(self, path, preset: str = "flat", label_map: Mapping | str | None = None,
                 label_key: str | None = None, p_index: int | None = None, components: str | None = "Z",
                 component_order: str | None = None, sampling_rate: float | None = None,
                 on_bad_row: str = "error") -> None:
        super().__init__(path)
        if os.path.isdir(self.path):
            raise DataFormatError(f"{self.path}: is a folder; expected one HDF5 file with X and Y")
        defaults = self.presets.get(preset.lower(), {})
        f = self._h5()
        if "X" not in f:
            raise DataFormatError(f"{self.path}: no dataset 'X' (found keys: {sorted(f.keys())}); "
                                  f"expected the waveforms as X (N, L) or (N, C, L)")
        x = f["X"]
        if x.ndim not in (2, 3):
            raise DataFormatError(f"{self.path}: 'X' has shape {x.shape}; expected (N, L) or (N, C, L)")
        if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
            raise DataFormatError(f"{self.path}: 'X' has dtype {x.dtype}; expected real numbers (integer or float)")
        n, trace_len = int(x.shape[0]), int(x.shape[-1])
        if n == 0:
            raise DataFormatError(f"{self.path}: 'X' holds no traces")
        if trace_len == 0:
            raise DataFormatError(f"{self.path}: 'X' has shape {x.shape}: traces of 0 samples")

        key = label_key or ("Y" if "Y" in f else "fm" if "fm" in f else None)
        if key is None or key not in f:
            raise DataFormatError(f"{self.path}: no label dataset {label_key or 'Y'!r} (or 'fm'); "
                                  f"found keys {sorted(f.keys())}")
        raw = f[key][()]
        if raw.ndim != 1 or len(raw) != n:
            raise DataFormatError(f"{self.path}: '{key}' has shape {raw.shape}; expected ({n},) to match X")

        try:
            file_map = normalize_label_map(f.attrs.get("label_map"))
        except (ValueError, TypeError) as exc:
            raise DataFormatError(f"{self.path}: attribute 'label_map' is not a valid label map ({exc}); expected "
                                  f"JSON like {{\"U\": 0, \"D\": 1, \"X\": 2}}") from None
        chosen = file_map or normalize_label_map(label_map) \
            or normalize_label_map(defaults.get("label_map")) or IDENTITY_MAP
        if on_bad_row not in ("error", "skip"):
            raise ValueError(f"on_bad_row={on_bad_row!r}; expected 'error' or 'skip'")
        # With on_bad_row="skip" a label outside the map becomes -1 and its row is skipped below.
        labels = apply_label_map(raw, chosen, source=f"{self.path}:{key}",
                                 default=-1 if on_bad_row == "skip" else None)

        self.channels: list[int] | None = None
        num_channels = 1
        if x.ndim == 3:
            order = component_order or _attr_str(f.attrs.get("component_order")) or "ZNE"
            if components:
                missing = [c for c in components if c not in order]
                if missing:
                    raise DataFormatError(f"{self.path}: components {components!r} not in component order {order!r}")
                self.channels = [order.index(c) for c in components]
                num_channels = len(self.channels)
            else:
                num_channels = int(x.shape[1])

        has_pick = "p_pick" in f
        if has_pick:
            if not np.issubdtype(f["p_pick"].dtype, np.number):
                raise DataFormatError(f"{self.path}: 'p_pick' has dtype {f['p_pick'].dtype}; expected sample numbers")
            p = np.asarray(f["p_pick"][()], dtype=np.float64)
            if p.shape != (n,):
                raise DataFormatError(f"{self.path}: 'p_pick' has shape {p.shape}; expected ({n},)")
        else:
            fixed = p_index if p_index is not None else f.attrs.get("p_pick", f.attrs.get("p_index"))
            if fixed is None:
                fixed = defaults.get("p_index")
            if fixed is None:
                raise DataFormatError(f"{self.path}: no 'p_pick' dataset and no fixed P index; set p_index")
            p = np.full(n, float(fixed))
        self.sampling_rate = float(f.attrs.get("sampling_rate", sampling_rate or defaults.get("sampling_rate", 100.0)))
        if not (np.isfinite(self.sampling_rate) and self.sampling_rate > 0):
            raise DataFormatError(f"{self.path}: sampling_rate {self.sampling_rate}; expected a positive number of Hz")

        metadata: dict[str, np.ndarray] = {}
        for src, dst in METADATA_KEYS.items():
            if src in f and dst not in metadata and f[src].shape[:1] == (n,) and f[src].ndim == 1:
                metadata[dst] = f[src][()]
        if "Z" in f and f["Z"].shape == (n,):
            clarity = f["Z"][()]
            metadata["clarity"] = apply_label_map(clarity, CLARITY_CODES, source=f"{self.path}:Z", default=2)

        bad = ~np.isfinite(p) | (p < 0) | (p >= trace_len)
        keep = np.ones(n, dtype=bool)
        self.skipped: dict[str, int] = {}
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            if on_bad_row != "skip":
                raise DataFormatError(f"{self.path}: P pick {p[row]} at row {row} is outside the trace "
                                      f"(0..{trace_len - 1}); fix it or set on_bad_row=skip")
            keep &= ~bad
            self.skipped["p_pick_outside_trace"] = int(bad.sum())
            log.warning("%s: skipped %d rows whose P pick is outside the trace (0..%d), first at row %d: %s",
                        self.path, int(bad.sum()), trace_len - 1, row, p[row])
        unmapped = labels < 0
        if unmapped.any():  # only with on_bad_row="skip"
            row = int(np.flatnonzero(unmapped)[0])
            keep &= ~unmapped
            self.skipped["unknown_label"] = int(unmapped.sum())
            log.warning("%s: skipped %d rows whose label is not in label_map %s, first at row %d: %r",
                        self.path, int(unmapped.sum()), chosen, row, raw_label_text(raw[row]))
        self._file_rows = np.flatnonzero(keep)
        self.table = TraceTable(
            labels=labels[keep], p_index=np.round(p[keep]).astype(np.int64),
            trace_length=np.full(int(keep.sum()), trace_len, dtype=np.int64),
            sampling_rate=self.sampling_rate, num_channels=num_channels,
            metadata={k: v[keep] for k, v in metadata.items()}, has_pick=has_pick, label_map=chosen)
        # Hold no HDF5 handle after reading the tables: the first read opens one in whichever
        # process does it (a handle inherited over a fork is never used).
        self.close()

    def read_windows(self, rows: np.ndarray, start: np.ndarray, length: int) -> np.ndarray:
        return read_row_windows(self._h5()["X"], self._file_rows[np.asarray(rows)], start, length, self.channels)


def _attr_str(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode()
    return str(value)
