"""DiTing (Zhao et al. 2023): ``DiTing330km_part_{0..27}.hdf5`` + a CSV, 50 Hz, read at 100 Hz.

Layout facts (SeisBench's DiTing converter ``seisbench/data/diting.py`` in forks of SeisBench,
SeisPolarity's ``seispolarity/data/diting.py``, and published readers of the files):

- Waveforms: ``earthquake/<key>`` in ``DiTing330km_part_<part>.hdf5``, shape (n, 3), Z first
  (ZNE), 50 Hz; traces are nominally 180 s (9000 samples).
- CSV (one ``DiTing330km_total.csv``-style file, or one ``DiTing330km_part_<p>.csv`` per part):
  ``part``, ``key``, ``ev_id``, ``evmag``, ``mag_type``, ``p_pick`` (50 Hz sample), ``p_clarity``,
  ``p_motion``, ``s_pick``, ``net``, ``sta_id``, ``dis`` (km), ``st_mag``, ``baz``,
  ``{Z,N,E}_{P,S}_{amplitude,power}_snr``, ``P_residual``, ``S_residual``.
- Keys: the HDF5 names are ``<6-digit event>.<4-digit trace>`` (``000014.0100``); the CSV stores
  them as floats (``14.01``: leading zeros of the event and trailing zeros of the trace lost).
  The CSV text is kept exactly as written (``metadata["key"]``, read with the csv module, never
  through a float) and turned into the HDF5 name by zero-padding both parts (what SeisBench's
  converter does); a key already in HDF5 form is used as it is.
- Labels ``p_motion``: U and D; C (compression) and R (rarefaction) also occur and mean U and D;
  everything else (and an empty cell) is unknown. Clarity ``p_clarity``: I (impulsive), E
  (emergent), anything else K, as codes of ``labels.CLARITY_CODES`` in ``metadata["clarity"]``.

Resampling 50 -> 100 Hz is linear interpolation of just the samples around the window. Each
output sample depends only on the two input samples around it, so nothing appears before the
last quiet 50 Hz sample ahead of the onset and the sign of the first motion is kept. An FFT
resampler (``scipy.signal.resample``) or a zero-phase FIR spreads every sample over the window
(Gibbs ringing): oscillations of both signs appear before the onset and fake a first motion.
"""
from __future__ import annotations

import glob
import logging
import math
import os
import re
from typing import Any, Mapping, Sequence

import numpy as np

from ..labels import CLARITY_CODES, LabelError, UNKNOWN
from ..layouts import diting_hdf5_key
from .base import DataFormatError, Reader, TraceTable
from .seisbench import (BadRows, components_list, map_label_words, missing_column_error, pick_column,
                        read_csv_columns, resolve_label_map, to_float)

log = logging.getLogger(__name__)

DITING_LABEL_MAP = {"U": 0, "C": 0, "D": 1, "R": 1, "*": UNKNOWN}
PART_CSV = re.compile(r"_part_(\d+)\.csv$")


def find_diting_csvs(folder: str) -> list[str]:
    """The metadata CSV(s) of a DiTing folder: one whole-set CSV, else the per-part CSVs."""
    total = sorted(p for p in glob.glob(os.path.join(folder, "*.csv")) if not PART_CSV.search(p))
    if len(total) == 1:
        return total
    parts = sorted(glob.glob(os.path.join(folder, "*_part_*.csv")),
                   key=lambda p: int(PART_CSV.search(p).group(1)) if PART_CSV.search(p) else -1)
    if parts and not total:
        return parts
    if len(total) > 1:
        raise DataFormatError(f"{folder}: several CSV files {[os.path.basename(p) for p in total]}; "
                              f"pass csv_path= to choose one")
    raise DataFormatError(f"{folder}: no DiTing CSV (expected e.g. DiTing330km_total.csv or "
                          f"DiTing330km_part_<p>.csv); pass csv_path=")


class DiTingReader(Reader):
    """Reads DiTing: part HDF5 files + CSV; windows returned at ``target_rate`` (100 Hz).

    Args:
        path: the folder holding ``DiTing330km_part_<p>.hdf5`` and the CSV.
        csv_path: the CSV (default: the folder's single non-part CSV, else all ``*_part_<p>.csv``).
        label_map: ``p_motion`` word -> code, case-insensitive; ``"*"`` catches every other word.
            Default ``{"U": 0, "C": 0, "D": 1, "R": 1, "*": 2}``.
        components: channels to return from ZNE ("Z" default, "ZNE"/"all").
        target_rate: Hz of the returned windows (P index and trace length are expressed at it).
        source_rate: Hz of the files (50).
        on_bad_row: "error" (default) or "skip" (dropped, counted in ``self.skipped``, logged).
            Bad rows: a missing part file or key, a trace without the component, a missing P
            pick or one outside the trace, an unknown label word (only with a map without "*").
        hdf5_pattern: file name of a part, ``"DiTing330km_part_{part}.hdf5"``.
        probe_lengths: read each trace's length from its HDF5 dataset (exact; checks keys and P
            picks against the real length). Default: only when the CSV has <= 200 000 rows; else
            ``nominal_length`` is assumed and windows are still zero-padded at the real end.
        nominal_length: trace length at ``source_rate`` when not probed (180 s x 50 Hz = 9000).
        label_column / clarity_column / event_column / snr_column: CSV columns (defaults
            ``p_motion``, ``p_clarity``, ``ev_id``, ``Z_P_amplitude_snr``).

    ``metadata``: ``event_id`` (``ev_id``; a row without one gets ``<part>:<event part of key>``),
    ``magnitude`` (``evmag``), ``distance`` (``dis``, km), ``snr`` (dB: 20 log10 of
    ``Z_P_amplitude_snr``, an amplitude ratio, beside the power ratio ``Z_P_power_snr``),
    ``station`` (``net.sta_id``), ``clarity`` (CLARITY_CODES), ``part``, ``key`` (CSV text).
    """

    names = ("diting",)

    def __init__(self, path, csv_path: str | os.PathLike | None = None, label_map: Mapping | str | None = None,
                 components: str | Sequence[str] | None = "Z", target_rate: float = 100.0,
                 on_bad_row: str = "error", source_rate: float = 50.0,
                 hdf5_pattern: str = "DiTing330km_part_{part}.hdf5", probe_lengths: bool | None = None,
                 nominal_length: int = 9000, label_column: str | None = None, clarity_column: str | None = None,
                 event_column: str | None = None, snr_column: str | None = None,
                 component_order: str = "ZNE") -> None:
        super().__init__(path)
        folder = self.path if os.path.isdir(self.path) else os.path.dirname(self.path)
        self.folder = folder
        self.hdf5_pattern = hdf5_pattern
        self.source_rate, self.target_rate = float(source_rate), float(target_rate)
        if self.source_rate <= 0 or self.target_rate <= 0:
            raise ValueError(f"source_rate and target_rate must be > 0, got {source_rate}, {target_rate}")
        self.ratio = self.target_rate / self.source_rate
        self.component_order = str(component_order).upper()
        self.components = components_list(components, self.component_order)
        missing = [c for c in self.components if c not in self.component_order]
        if missing:
            raise DataFormatError(f"{folder}: components {''.join(self.components)!r} not all in DiTing's "
                                  f"component order {self.component_order!r}")
        self._channels = [self.component_order.index(c) for c in self.components]

        csvs = [os.fspath(csv_path)] if csv_path else find_diting_csvs(folder)
        label_col = label_column
        cols: dict[str, list[str]] = {}
        file_of: list[str] = []
        row_in_file: list[int] = []
        for path_csv in csvs:
            if not os.path.isfile(path_csv):
                raise FileNotFoundError(f"{path_csv}: no such file")
            header, part_cols, n_part = read_csv_columns(
                path_csv, self._wanted(label_column, clarity_column, event_column, snr_column))
            per_part = PART_CSV.search(path_csv)
            required = [("key", "trace key"), ("p_pick", "P pick at 50 Hz")]
            label_col = label_column or pick_column(header, ("p_motion", "p_motion_processed")) or "p_motion"
            required.append((label_col, "polarity"))
            if not per_part:
                required.append(("part", "part file number"))
            for col, what in required:
                if col not in header:
                    raise missing_column_error(path_csv, col, header, what)
            if "part" not in part_cols:
                part_cols["part"] = [per_part.group(1)] * n_part
            for k, v in part_cols.items():
                cols.setdefault(k, []).extend(v)
            file_of.extend([path_csv] * n_part)
            row_in_file.extend(range(n_part))
        n = len(file_of)
        if n == 0:
            raise DataFormatError(f"{csvs[0]}: no rows")
        self.csv_paths = csvs
        self.label_column = label_col
        source = csvs[0] if len(csvs) == 1 else f"{folder} (DiTing CSVs)"
        bad = BadRows(n, source, on_bad_row)
        where = (lambda r: "") if len(csvs) == 1 else (lambda r: f"{file_of[r]} row {row_in_file[r]}: ")

        keys = [k.strip() for k in cols["key"]]
        h5keys = [diting_hdf5_key(k) for k in keys]
        part_f = to_float(cols["part"])
        bad.flag("part_missing", ~np.isfinite(part_f),
                 lambda r: f"{where(r)}part {cols['part'][r]!r} (key {keys[r]!r}) is not a number")
        parts = np.where(np.isfinite(part_f), np.nan_to_num(part_f), -1).astype(np.int64)
        part_files: dict[int, str] = {}
        for p in np.unique(parts[bad.keep]):
            part_files[int(p)] = os.path.join(folder, hdf5_pattern.format(part=int(p)))
        no_file = np.array([not os.path.isfile(part_files.get(int(p), "")) for p in parts]) & bad.keep
        bad.flag("part_file_missing", no_file,
                 lambda r: f"{where(r)}key {keys[r]!r}: part file {part_files.get(int(parts[r]))} does not exist")

        # -- labels and clarity -----------------------------------------------------------------
        self.label_map = resolve_label_map(None, label_map, DITING_LABEL_MAP, source)
        words = cols[label_col]
        codes, unknown = map_label_words(words, self.label_map)
        bad.flag("unknown_label", unknown,
                 lambda r: f"{where(r)}label {words[r]!r} in column {label_col!r} (key {keys[r]!r}) is not in "
                           f"label_map {self.label_map}; add it (0 up, 1 down, 2 unknown; '*' for any other)",
                 error_cls=LabelError)

        # -- trace lengths (probed or nominal) ----------------------------------------------------
        if probe_lengths is None:
            probe_lengths = n <= 200_000
        length50 = np.full(n, int(nominal_length), dtype=np.int64)
        if probe_lengths:
            self._probe(parts, keys, h5keys, length50, bad, where)
        self.probed = bool(probe_lengths)

        # -- P picks ----------------------------------------------------------------------------
        p_raw = cols["p_pick"]
        p50 = to_float(p_raw)
        bad.flag("p_pick_missing", ~np.isfinite(p50),
                 lambda r: f"{where(r)}P pick {p_raw[r]!r} (key {keys[r]!r}) is not a number")
        outside = np.isfinite(p50) & ((p50 < 0) | (p50 > length50 - 1))
        bad.flag("p_pick_outside_trace", outside,
                 lambda r: f"{where(r)}P pick {p_raw[r]!r} (key {keys[r]!r}) is outside the trace "
                           f"(0..{int(length50[r]) - 1} at {self.source_rate:g} Hz)")
        p_index = np.round(np.nan_to_num(p50) * self.ratio).astype(np.int64)
        trace_length = (np.floor((length50 - 1) * self.ratio + 1e-9) + 1).astype(np.int64)

        # -- metadata ---------------------------------------------------------------------------
        meta: dict[str, np.ndarray] = {
            "part": parts.copy(),
            "key": np.asarray(keys, dtype=object),
        }
        event_col = event_column or ("ev_id" if "ev_id" in cols else None)
        if event_col and event_col in cols:
            ev = [v.strip() for v in cols[event_col]]
        else:
            ev = [""] * n
        meta["event_id"] = np.asarray(
            [e if e and e.lower() not in ("nan", "none") else f"{parts[i]}:{h5keys[i].split('.')[0]}"
             for i, e in enumerate(ev)], dtype=object)
        clarity_col = clarity_column or pick_column(list(cols), ("p_clarity", "p_clarity_processed"))
        if clarity_col and clarity_col in cols:
            meta["clarity"] = np.asarray(
                [CLARITY_CODES.get(c.strip().upper(), CLARITY_CODES["K"]) for c in cols[clarity_col]], dtype=np.int64)
        for name, candidates in (("magnitude", ("evmag", "mag", "source_magnitude")),
                                 ("distance", ("dis", "distance"))):
            col = pick_column(list(cols), candidates)
            if col:
                meta[name] = to_float(cols[col])
        snr_col = snr_column or pick_column(list(cols), (f"{self.components[0]}_P_amplitude_snr", "Z_P_amplitude_snr"))
        if snr_col and snr_col in cols:
            ratio = to_float(cols[snr_col])
            with np.errstate(divide="ignore", invalid="ignore"):
                meta["snr"] = np.where(ratio > 0, 20.0 * np.log10(np.where(ratio > 0, ratio, 1.0)), np.nan)
        sta_col = pick_column(list(cols), ("sta_id", "sta", "station"))
        if sta_col:
            nets = cols.get("net", [""] * n)
            meta["station"] = np.asarray([f"{a}.{b}" if a else b for a, b in zip(nets, cols[sta_col])], dtype=object)

        keep = np.flatnonzero(bad.keep)
        self.skipped = bad.skipped
        if len(keep) == 0:
            raise DataFormatError(f"{source}: every row was skipped ({self.skipped})")
        self.source_rows = keep
        self._part = parts[keep]
        self._h5key = np.asarray(h5keys, dtype=object)[keep]
        self._len50 = length50[keep]
        self.table = TraceTable(
            labels=codes[keep], p_index=p_index[keep], trace_length=trace_length[keep],
            sampling_rate=self.target_rate, num_channels=len(self._channels),
            metadata={k: v[keep] for k, v in meta.items()}, has_pick=True, label_map=dict(self.label_map))
        log.info("%s: %d DiTing traces (components %s, %g -> %g Hz)%s", folder, len(keep),
                 "".join(self.components), self.source_rate, self.target_rate,
                 f", skipped {self.skipped}" if self.skipped else "")

    @staticmethod
    def _wanted(*explicit: str | None) -> list[str]:
        base = ["part", "key", "p_pick", "p_motion", "p_motion_processed", "p_clarity", "p_clarity_processed",
                "ev_id", "evmag", "mag", "dis", "net", "sta_id", "sta", "Z_P_amplitude_snr",
                "N_P_amplitude_snr", "E_P_amplitude_snr"]
        return base + [c for c in explicit if c]

    def _part_path(self, part: int) -> str:
        return os.path.join(self.folder, self.hdf5_pattern.format(part=int(part)))

    def _probe(self, parts, keys, h5keys, length50, bad: BadRows, where) -> None:
        """Exact lengths from the HDF5 shapes; flags missing keys and traces lacking the component."""
        need = max(self._channels) + 1
        reason = np.zeros(len(parts), dtype=np.int8)
        problem: dict[int, str] = {}
        for p in np.unique(parts[bad.keep]):
            path = self._part_path(int(p))
            group = self._h5(path).get("earthquake")
            rows = np.flatnonzero(bad.keep & (parts == p))
            if group is None:
                reason[rows] = 1
                for r in rows[:1]:
                    problem[int(r)] = f"{path} has no group 'earthquake'"
                continue
            for r in rows:
                obj = group.get(h5keys[r])
                if obj is None and keys[r] != h5keys[r]:
                    obj = group.get(keys[r])
                    if obj is not None:
                        h5keys[r] = keys[r]
                if obj is None or not hasattr(obj, "shape"):
                    reason[r] = 1
                    problem[int(r)] = f"key {keys[r]!r} (HDF5 name {h5keys[r]!r}) not found in {path}/earthquake"
                elif len(obj.shape) != 2 or obj.shape[1] < need:
                    reason[r] = 2
                    problem[int(r)] = (f"earthquake/{h5keys[r]} in {path} has shape {obj.shape}; expected "
                                       f"(samples, >= {need} components)")
                else:
                    length50[r] = obj.shape[0]
        bad.flag("key_missing", reason == 1, lambda r: where(r) + problem.get(r, "key not found"))
        bad.flag("trace_missing_component", reason == 2, lambda r: where(r) + problem.get(r, "bad shape"))

    # -- reading ----------------------------------------------------------------------------------
    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state["_groups"] = (-1, {})
        return state

    def _group(self, part: int):
        pid, cache = getattr(self, "_groups", (-1, {}))
        if pid != os.getpid():
            cache = {}
            self._groups = (os.getpid(), cache)
        if part not in cache:
            path = self._part_path(part)
            cache[part] = (path, self._h5(path).get("earthquake"))
        return cache[part]

    def _dataset(self, row: int):
        path, group = self._group(int(self._part[row]))
        name = self._h5key[row]
        ds = group.get(name) if group is not None else None
        if ds is None:
            raw = str(self.table.metadata["key"][row])
            ds = group.get(raw) if group is not None else None
            if ds is None:
                raise DataFormatError(f"{path}: no dataset earthquake/{name} (CSV key {raw!r}, table row {row})")
        return ds

    def read_windows(self, rows: np.ndarray, start: np.ndarray, length: int) -> np.ndarray:
        """Windows at ``target_rate``: reads only the 50 Hz samples under each window and
        interpolates linearly (no energy before the onset; see the module docstring)."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        start = np.asarray(start, dtype=np.int64).reshape(-1)
        if start.size == 1 and rows.size != 1:
            start = np.full(rows.shape, int(start[0]), dtype=np.int64)
        length = int(length)
        out = np.zeros((len(rows), len(self._channels), length), dtype=np.float32)
        if len(rows) == 0:
            return out
        lo_ch, hi_ch = min(self._channels), max(self._channels) + 1
        pick = [c - lo_ch for c in self._channels]
        order = np.lexsort((self._h5key[rows].astype(str), self._part[rows]))
        steps = np.arange(length, dtype=np.float64)
        for q in order:
            r = rows[q]
            n50 = int(self._len50[r])
            pos = (start[q] + steps) / self.ratio  # position of each output sample in 50 Hz samples
            inside = (pos >= 0) & (pos <= n50 - 1 + 1e-9)
            if not inside.any():
                continue
            lo = int(math.floor(pos[inside][0] + 1e-9))
            hi = min(n50, int(math.ceil(pos[inside][-1] - 1e-9)) + 1)
            ds = self._dataset(r)
            real_n = int(ds.shape[0])
            if real_n != n50:  # lengths not probed: the real end decides
                inside &= pos <= real_n - 1 + 1e-9
                hi = min(hi, real_n)
                if not inside.any() or hi <= lo:
                    continue
            x = np.asarray(ds[lo:hi, lo_ch:hi_ch], dtype=np.float64)[:, pick]  # (m, C)
            p = pos[inside] - lo
            i0 = np.clip(np.floor(p + 1e-9).astype(np.int64), 0, len(x) - 1)
            i1 = np.minimum(i0 + 1, len(x) - 1)
            frac = np.clip(p - i0, 0.0, 1.0)[:, None]
            out[q][:, inside] = (x[i0] * (1.0 - frac) + x[i1] * frac).T.astype(np.float32)
        return out
