"""One HDF5 file with `X` and labels: our flat layout, SeisPolarity's processed files and SCSN.

Layout (docs/data.md section 1):
- `X`: (N, L) or (N, C, L) float waveforms.
- labels: `Y` (or `fm` in the SCSN pick files); raw values mapped through a label map.
- P position: per-trace `p_pick` (N,) when present, else the attribute `p_pick`/`p_index`, else the
  preset's fixed index (SCSN: sample 300 of 600).
- optional per-trace metadata: `snr`, `evids`, `mag`/`magnitude`, `dist`/`distance`, clarity `Z`
  (I/E/K), `sncls` (NET.STA.CHA), and anything else 1-D of length N.
- attributes: `sampling_rate`, `label_map` (JSON), `component_order` for 3-D `X`.

Construction is a list of named steps (``FlatReader.__init__``): check the waveforms, read the
labels, resolve labels, resolve channels, resolve P picks, the sampling rate, collect metadata,
select rows. Reads are planned by :func:`~seispolarity.data.readers.hdf5_rows.read_row_windows`.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Mapping

import numpy as np

from ..labels import CLARITY_CODES, apply_label_map, normalize_label_map, resolve_label_map
from ..labels import label_key as raw_label_text  # `label_key` is also an argument name below
from .bad_rows import SKIP_HINT, BadRows
from .base import DataFormatError, Reader, TraceTable, components_list, resolve_channels
from .hdf5_rows import read_row_windows

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
        on_bad_row: "error" (default) or "skip" for P picks outside the trace and labels outside
            the map.
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
        n, trace_len = self._check_waveforms()
        raw, key = self._read_labels(label_key, n)
        bad = BadRows(n, self.path, on_bad_row, hint=f"fix it or {SKIP_HINT}", name_row=False)
        labels = self._resolve_labels(raw, key, label_map, defaults, bad)
        self._resolve_channels(components, component_order)
        p, self.has_pick = self._resolve_picks(n, p_index, defaults)
        self.sampling_rate = self._resolve_sampling_rate(sampling_rate, defaults)
        metadata = self._collect_metadata(n)
        self._select_rows(bad, labels, raw, p, trace_len, metadata)
        # Hold no HDF5 handle after reading the tables: the first read opens one in whichever
        # process does it (a handle inherited over a fork is never used).
        self.close()

    # -- construction steps, in order -------------------------------------------------------------
    def _check_waveforms(self) -> tuple[int, int]:
        """``(traces, samples per trace)`` of `X`, after checking its shape and dtype."""
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
        return n, trace_len

    def _read_labels(self, label_key: str | None, n: int) -> tuple[np.ndarray, str]:
        """The raw label values (one per trace) and the dataset they came from."""
        f = self._h5()
        key = label_key or ("Y" if "Y" in f else "fm" if "fm" in f else None)
        if key is None or key not in f:
            raise DataFormatError(f"{self.path}: no label dataset {label_key or 'Y'!r} (or 'fm'); "
                                  f"found keys {sorted(f.keys())}")
        raw = f[key][()]
        if raw.ndim != 1 or len(raw) != n:
            raise DataFormatError(f"{self.path}: '{key}' has shape {raw.shape}; expected ({n},) to match X")
        return raw, key

    def _resolve_labels(self, raw: np.ndarray, key: str, label_map, defaults: Mapping[str, Any],
                        bad: BadRows) -> np.ndarray:
        """Raw values -> codes through the map in force (file attribute > argument > preset >
        identity). A value outside the map raises, or with on_bad_row="skip" drops its row."""
        try:
            file_map = normalize_label_map(self._h5().attrs.get("label_map"))
        except (ValueError, TypeError) as exc:
            raise DataFormatError(f"{self.path}: attribute 'label_map' is not a valid label map ({exc}); expected "
                                  f"JSON like {{\"U\": 0, \"D\": 1, \"X\": 2}}") from None
        self.label_map = resolve_label_map(file_map or None, normalize_label_map(label_map) or None,
                                           defaults.get("label_map") or IDENTITY_MAP, self.path)
        labels = apply_label_map(raw, self.label_map, source=f"{self.path}:{key}",
                                 default=-1 if bad.mode == "skip" else None)
        return labels

    def _resolve_channels(self, components: str | None, component_order: str | None) -> None:
        """``self.channels`` (None: every channel) and ``self.num_channels``."""
        x = self._h5()["X"]
        self.channels: list[int] | None = None
        self.num_channels = 1
        if x.ndim == 3:
            order = component_order or _attr_str(self._h5().attrs.get("component_order")) or "ZNE"
            if components:
                _, self.channels = resolve_channels(components, order, self.path)
                self.num_channels = len(self.channels)
            else:
                self.num_channels = int(x.shape[1])
        elif len(components_list(components, "Z")) > 1:  # "all" is the one channel there is; "ZNE" is not
            raise DataFormatError(f"{self.path}: X {tuple(x.shape)} holds one channel per trace; components="
                                  f"{components!r} asks for {len(components_list(components, 'Z'))}")

    def _resolve_picks(self, n: int, p_index: int | None, defaults: Mapping[str, Any]) -> tuple[np.ndarray, bool]:
        """``(P sample per trace as float, whether they are per-trace picks)``: the `p_pick`
        dataset, else one fixed index (argument > file attribute > preset)."""
        f = self._h5()
        if "p_pick" in f:
            if not np.issubdtype(f["p_pick"].dtype, np.number):
                raise DataFormatError(f"{self.path}: 'p_pick' has dtype {f['p_pick'].dtype}; expected sample numbers")
            p = np.asarray(f["p_pick"][()], dtype=np.float64)
            if p.shape != (n,):
                raise DataFormatError(f"{self.path}: 'p_pick' has shape {p.shape}; expected ({n},)")
            return p, True
        fixed = p_index if p_index is not None else f.attrs.get("p_pick", f.attrs.get("p_index"))
        if fixed is None:
            fixed = defaults.get("p_index")
        if fixed is None:
            raise DataFormatError(f"{self.path}: no 'p_pick' dataset and no fixed P index; "
                                  f"set data.p_index=<sample> (p_index= in Python), or read an SCSN file as "
                                  f"SCSN (data=scsn; name=scsn for predict and in Python)")
        return np.full(n, float(fixed)), False

    def _resolve_sampling_rate(self, sampling_rate: float | None, defaults: Mapping[str, Any]) -> float:
        """Hz: the file's attribute > the argument > the preset's > 100."""
        rate = float(self._h5().attrs.get("sampling_rate", sampling_rate or defaults.get("sampling_rate", 100.0)))
        if not (np.isfinite(rate) and rate > 0):
            raise DataFormatError(f"{self.path}: sampling_rate {rate}; expected a positive number of Hz")
        return rate

    def _collect_metadata(self, n: int) -> dict[str, np.ndarray]:
        """The 1-D per-trace datasets of METADATA_KEYS, under our names, and clarity `Z`."""
        f = self._h5()
        metadata: dict[str, np.ndarray] = {}
        for src, dst in METADATA_KEYS.items():
            if src in f and dst not in metadata and f[src].shape[:1] == (n,) and f[src].ndim == 1:
                metadata[dst] = f[src][()]
        if "Z" in f and f["Z"].shape == (n,):
            metadata["clarity"] = apply_label_map(f["Z"][()], CLARITY_CODES, source=f"{self.path}:Z", default=2)
        return metadata

    def _select_rows(self, bad: BadRows, labels: np.ndarray, raw: np.ndarray, p: np.ndarray, trace_len: int,
                     metadata: dict[str, np.ndarray]) -> None:
        """Drop (or refuse) rows whose P pick is outside the trace or whose label is outside the map;
        ``self.table``, ``self.skipped`` and the file row of each table row."""
        bad.flag("p_pick_outside_trace", ~np.isfinite(p) | (p < 0) | (p >= trace_len),
                 lambda r: f"P pick {p[r]} at row {r} is outside the trace (0..{trace_len - 1})",
                 value=lambda r: f"{p[r]}")
        bad.flag("unknown_label", labels < 0,  # only with on_bad_row="skip": else mapping raised
                 lambda r: f"label {raw_label_text(raw[r])!r} at row {r} is not in label_map {self.label_map}",
                 value=lambda r: repr(raw_label_text(raw[r])))
        self.skipped = bad.skipped
        keep = np.flatnonzero(bad.keep)
        self._file_rows = keep
        self.table = TraceTable(
            labels=labels[keep], p_index=np.round(p[keep]).astype(np.int64),
            trace_length=np.full(len(keep), trace_len, dtype=np.int64),
            sampling_rate=self.sampling_rate, num_channels=self.num_channels,
            metadata={k: v[keep] for k, v in metadata.items()}, has_pick=self.has_pick, label_map=self.label_map)

    def read_windows(self, rows: np.ndarray, start: np.ndarray, length: int) -> np.ndarray:
        return read_row_windows(self._h5()["X"], self._file_rows[np.asarray(rows)], start, length, self.channels)


def _attr_str(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode()
    return str(value)
