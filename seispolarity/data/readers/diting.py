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

Construction is a list of named steps (``DiTingReader.__init__``): resolve channels, read the
index (the CSVs), resolve the part files, resolve labels, trace lengths (probed or nominal),
resolve P picks, collect metadata, select rows.
"""
from __future__ import annotations

import glob
import logging
import math
import os
import re
from typing import Mapping, Sequence

import numpy as np

from ..labels import CLARITY_CODES, UNKNOWN, resolve_label_map
from ..layouts import diting_hdf5_key
from .bad_rows import BadRows
from .base import DataFormatError, Reader, TraceTable, resolve_channels, window_request
from .csv_columns import label_column_codes, missing_column_error, pick_column, read_csv_columns, to_float

log = logging.getLogger(__name__)

DITING_LABEL_MAP = {"U": 0, "C": 0, "D": 1, "R": 1, "*": UNKNOWN}
PART_CSV = re.compile(r"_part_(\d+)\.csv$")
#: Columns read from the CSV when present (the explicit column options are added to these).
INDEX_COLUMNS = ("part", "key", "p_pick", "p_motion", "p_motion_processed", "p_clarity", "p_clarity_processed",
                 "ev_id", "evmag", "mag", "dis", "net", "sta_id", "sta", "Z_P_amplitude_snr",
                 "N_P_amplitude_snr", "E_P_amplitude_snr")


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
        self.folder = self.path if os.path.isdir(self.path) else os.path.dirname(self.path)
        self.hdf5_pattern = hdf5_pattern
        self.source_rate, self.target_rate = float(source_rate), float(target_rate)
        if self.source_rate <= 0 or self.target_rate <= 0:
            raise ValueError(f"source_rate and target_rate must be > 0, got {source_rate}, {target_rate}")
        self.ratio = self.target_rate / self.source_rate
        self.component_order = str(component_order).upper()
        self.components, self._channels = resolve_channels(components, self.component_order, self.folder)
        columns, n = self._read_index(csv_path, label_column, clarity_column, event_column, snr_column)
        bad = BadRows(n, self._source, on_bad_row)
        keys, parts = self._resolve_parts(columns, bad)
        labels = self._resolve_labels(columns, label_map, keys, bad)
        if probe_lengths is None:
            probe_lengths = n <= 200_000
        self.probed = bool(probe_lengths)
        source_length = self._trace_lengths(parts, keys, bad, int(nominal_length))
        p_index = self._resolve_picks(columns, keys, source_length, bad)
        metadata = self._collect_metadata(columns, keys, parts, event_column, clarity_column, snr_column)
        self._select_rows(bad, labels, p_index, source_length, parts, metadata)

    # -- construction steps, in order -------------------------------------------------------------
    def _read_index(self, csv_path, label_column, clarity_column, event_column,
                    snr_column) -> tuple[dict[str, list[str]], int]:
        """The CSV(s) as columns of strings, one after the other; a per-part CSV's rows get its part.
        Sets ``csv_paths``, ``label_column`` and where each row comes from (for messages)."""
        csvs = [os.fspath(csv_path)] if csv_path else find_diting_csvs(self.folder)
        wanted = [*INDEX_COLUMNS, *(c for c in (label_column, clarity_column, event_column, snr_column) if c)]
        columns: dict[str, list[str]] = {}
        self._file_of: list[str] = []
        self._row_in_file: list[int] = []
        for path_csv in csvs:
            if not os.path.isfile(path_csv):
                raise FileNotFoundError(f"{path_csv}: no such file")
            header, part_columns, n_part = read_csv_columns(path_csv, wanted)
            per_part = PART_CSV.search(path_csv)
            self.label_column = label_column or pick_column(header, ("p_motion", "p_motion_processed")) or "p_motion"
            required = [("key", "trace key"), ("p_pick", "P pick at 50 Hz"), (self.label_column, "polarity")]
            if not per_part:
                required.append(("part", "part file number"))
            for column, what in required:
                if column not in header:
                    option = "label_column" if column == self.label_column else None
                    raise missing_column_error(path_csv, column, header, what, option)
            if "part" not in part_columns:
                part_columns["part"] = [per_part.group(1)] * n_part
            for k, v in part_columns.items():
                columns.setdefault(k, []).extend(v)
            self._file_of.extend([path_csv] * n_part)
            self._row_in_file.extend(range(n_part))
        n = len(self._file_of)
        if n == 0:
            raise DataFormatError(f"{csvs[0]}: no rows")
        self.csv_paths = csvs
        self._source = csvs[0] if len(csvs) == 1 else f"{self.folder} (DiTing CSVs)"
        return columns, n

    def _where(self, row: int) -> str:
        """The CSV and row of an index row, for messages (empty with one CSV: BadRows names it)."""
        return "" if len(self.csv_paths) == 1 else f"{self._file_of[row]} row {self._row_in_file[row]}: "

    def _resolve_parts(self, columns, bad: BadRows) -> tuple[list[str], np.ndarray]:
        """``(keys as written in the CSV, part numbers)``; sets ``_h5key`` (HDF5 dataset names);
        flags parts that are not numbers and part files that do not exist."""
        keys = [k.strip() for k in columns["key"]]
        self._h5key = [diting_hdf5_key(k) for k in keys]
        part_cells = columns["part"]
        part_float = to_float(part_cells)
        bad.flag("part_missing", ~np.isfinite(part_float),
                 lambda r: f"{self._where(r)}part {part_cells[r]!r} (key {keys[r]!r}) is not a number")
        parts = np.where(np.isfinite(part_float), np.nan_to_num(part_float), -1).astype(np.int64)
        part_files = {int(p): self._part_path(int(p)) for p in np.unique(parts[bad.keep])}
        no_file = np.array([not os.path.isfile(part_files.get(int(p), "")) for p in parts]) & bad.keep
        bad.flag("part_file_missing", no_file,
                 lambda r: f"{self._where(r)}key {keys[r]!r}: part file {part_files.get(int(parts[r]))} does not exist")
        return keys, parts

    def _resolve_labels(self, columns, label_map, keys: list[str], bad: BadRows) -> np.ndarray:
        """``p_motion`` words -> codes through the map in force (argument > DiTing's)."""
        self.label_map = resolve_label_map(None, label_map, DITING_LABEL_MAP, self._source)
        return label_column_codes(columns[self.label_column], self.label_map, self.label_column, bad,
                                  where=self._where, which=lambda r: f" (key {keys[r]!r})")

    def _trace_lengths(self, parts: np.ndarray, keys: list[str], bad: BadRows, nominal_length: int) -> np.ndarray:
        """Samples per trace at ``source_rate``: probed from the HDF5 shapes (flags missing keys and
        traces without the component), else ``nominal_length``."""
        lengths = np.full(len(parts), nominal_length, dtype=np.int64)
        if not self.probed:
            return lengths
        need = max(self._channels) + 1
        reason = np.zeros(len(parts), dtype=np.int8)  # 1 key missing, 2 component missing
        problem: dict[int, str] = {}
        for p in np.unique(parts[bad.keep]):
            path = self._part_path(int(p))
            group = self._h5(path).get("earthquake")
            rows = np.flatnonzero(bad.keep & (parts == p))
            if group is None:
                reason[rows] = 1
                problem[int(rows[0])] = f"{path} has no group 'earthquake'"
                continue
            for r in rows:
                obj = self._find_trace(group, keys, int(r))
                if obj is None or not hasattr(obj, "shape"):
                    reason[r] = 1
                    problem[int(r)] = (f"key {keys[r]!r} (HDF5 name {self._h5key[r]!r}) not found in "
                                       f"{path}/earthquake")
                elif len(obj.shape) != 2 or obj.shape[1] < need:
                    reason[r] = 2
                    problem[int(r)] = (f"earthquake/{self._h5key[r]} in {path} has shape {obj.shape}; expected "
                                       f"(samples, >= {need} components)")
                else:
                    lengths[r] = obj.shape[0]
        bad.flag("key_missing", reason == 1, lambda r: self._where(r) + problem.get(r, "key not found"))
        bad.flag("trace_missing_component", reason == 2, lambda r: self._where(r) + problem.get(r, "bad shape"))
        return lengths

    def _find_trace(self, group, keys: list[str], row: int):
        """The dataset of a row: by its zero-padded HDF5 name, else by the key exactly as written
        (then remembered as its name)."""
        obj = group.get(self._h5key[row])
        if obj is None and keys[row] != self._h5key[row]:
            obj = group.get(keys[row])
            if obj is not None:
                self._h5key[row] = keys[row]
        return obj

    def _resolve_picks(self, columns, keys: list[str], source_length: np.ndarray, bad: BadRows) -> np.ndarray:
        """P samples at ``target_rate``; flags picks that are not numbers or lie outside the trace."""
        p_cells = columns["p_pick"]
        p_source = to_float(p_cells)  # at source_rate
        bad.flag("p_pick_missing", ~np.isfinite(p_source),
                 lambda r: f"{self._where(r)}P pick {p_cells[r]!r} (key {keys[r]!r}) is not a number")
        outside = np.isfinite(p_source) & ((p_source < 0) | (p_source > source_length - 1))
        bad.flag("p_pick_outside_trace", outside,
                 lambda r: f"{self._where(r)}P pick {p_cells[r]!r} (key {keys[r]!r}) is outside the trace "
                           f"(0..{int(source_length[r]) - 1} at {self.source_rate:g} Hz)")
        return np.round(np.nan_to_num(p_source) * self.ratio).astype(np.int64)

    def _collect_metadata(self, columns, keys: list[str], parts: np.ndarray, event_column: str | None,
                          clarity_column: str | None, snr_column: str | None) -> dict[str, np.ndarray]:
        """``TraceTable.metadata`` from the columns present (see the class docstring)."""
        n = len(keys)
        meta: dict[str, np.ndarray] = {"part": parts.copy(), "key": np.asarray(keys, dtype=object)}
        event_column = event_column or ("ev_id" if "ev_id" in columns else None)
        events = [v.strip() for v in columns[event_column]] if event_column in columns else [""] * n
        meta["event_id"] = np.asarray(
            [e if e and e.lower() not in ("nan", "none") else f"{parts[i]}:{self._h5key[i].split('.')[0]}"
             for i, e in enumerate(events)], dtype=object)
        present = list(columns)
        clarity_column = clarity_column or pick_column(present, ("p_clarity", "p_clarity_processed"))
        if clarity_column in columns:
            meta["clarity"] = np.asarray([CLARITY_CODES.get(c.strip().upper(), CLARITY_CODES["K"])
                                          for c in columns[clarity_column]], dtype=np.int64)
        for name, candidates in (("magnitude", ("evmag", "mag", "source_magnitude")),
                                 ("distance", ("dis", "distance"))):
            column = pick_column(present, candidates)
            if column:
                meta[name] = to_float(columns[column])
        snr_column = snr_column or pick_column(present, (f"{self.components[0]}_P_amplitude_snr", "Z_P_amplitude_snr"))
        if snr_column in columns:
            amplitude_ratio = to_float(columns[snr_column])
            positive = amplitude_ratio > 0
            with np.errstate(divide="ignore", invalid="ignore"):
                meta["snr"] = np.where(positive, 20.0 * np.log10(np.where(positive, amplitude_ratio, 1.0)), np.nan)
        station_column = pick_column(present, ("sta_id", "sta", "station"))
        if station_column:
            nets = columns.get("net", [""] * n)
            meta["station"] = np.asarray([f"{a}.{b}" if a else b for a, b in zip(nets, columns[station_column])],
                                         dtype=object)
        return meta

    def _select_rows(self, bad: BadRows, labels: np.ndarray, p_index: np.ndarray, source_length: np.ndarray,
                     parts: np.ndarray, metadata: dict[str, np.ndarray]) -> None:
        """Keep the good rows: ``self.table``, ``self.source_rows`` (index row of each table row),
        ``self.skipped`` and what reading needs (part, HDF5 name, length at ``source_rate``)."""
        self.skipped = bad.skipped
        keep = bad.kept_rows()
        self.source_rows = keep
        self._part = parts[keep]
        self._h5key = np.asarray(self._h5key, dtype=object)[keep]
        self._source_length = source_length[keep]
        trace_length = (np.floor((source_length - 1) * self.ratio + 1e-9) + 1).astype(np.int64)
        self.table = TraceTable(
            labels=labels[keep], p_index=p_index[keep], trace_length=trace_length[keep],
            sampling_rate=self.target_rate, num_channels=len(self._channels),
            metadata={k: v[keep] for k, v in metadata.items()}, has_pick=True, label_map=dict(self.label_map))
        log.info("%s: %d DiTing traces (components %s, %g -> %g Hz)%s", self.folder, len(keep),
                 "".join(self.components), self.source_rate, self.target_rate,
                 f", skipped {self.skipped}" if self.skipped else "")

    def _part_path(self, part: int) -> str:
        return os.path.join(self.folder, self.hdf5_pattern.format(part=int(part)))

    # -- reading ----------------------------------------------------------------------------------
    def _group(self, part: int):
        cache = self._process_cache("groups")
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
        """Windows at ``target_rate``: reads only the source-rate samples under each window and
        interpolates linearly (no energy before the onset; see the module docstring)."""
        rows, start = window_request(rows, start)
        length = int(length)
        out = np.zeros((len(rows), len(self._channels), length), dtype=np.float32)
        if len(rows) == 0:
            return out
        order = np.lexsort((self._h5key[rows].astype(str), self._part[rows]))
        steps = np.arange(length, dtype=np.float64)
        for q in order:
            # position of each output sample in source-rate samples
            self._resample_into(out[q], int(rows[q]), (start[q] + steps) / self.ratio)
        return out

    def _resample_into(self, out: np.ndarray, row: int, pos: np.ndarray) -> None:
        """Fill ``out`` (C, length) with the trace of ``row`` linearly interpolated at ``pos``
        (source-rate sample positions); positions outside the trace stay zero."""
        lo_ch, hi_ch = min(self._channels), max(self._channels) + 1
        n_source = int(self._source_length[row])
        inside = (pos >= 0) & (pos <= n_source - 1 + 1e-9)
        if not inside.any():
            return
        lo = int(math.floor(pos[inside][0] + 1e-9))
        hi = min(n_source, int(math.ceil(pos[inside][-1] - 1e-9)) + 1)
        ds = self._dataset(row)
        real_n = int(ds.shape[0])
        if real_n != n_source:  # lengths not probed: the real end decides
            inside &= pos <= real_n - 1 + 1e-9
            hi = min(hi, real_n)
            if not inside.any() or hi <= lo:
                return
        x = np.asarray(ds[lo:hi, lo_ch:hi_ch], dtype=np.float64)[:, [c - lo_ch for c in self._channels]]  # (m, C)
        p = pos[inside] - lo
        i0 = np.clip(np.floor(p + 1e-9).astype(np.int64), 0, len(x) - 1)
        i1 = np.minimum(i0 + 1, len(x) - 1)
        frac = np.clip(p - i0, 0.0, 1.0)[:, None]
        out[:, inside] = (x[i0] * (1.0 - frac) + x[i1] * frac).T.astype(np.float32)
