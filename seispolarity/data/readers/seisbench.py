"""The SeisBench format: ``metadata.csv`` + ``waveforms.hdf5`` (INSTANCE, PNW, TXED, and any other).

Layout facts (SeisBench ``docs/pages/data/data_format.rst`` and ``seisbench/data/base.py``):

- ``metadata.csv``: one row per trace; ``trace_name`` addresses the waveform. With trace blocks
  ("buckets", what SeisBench's writer makes) it reads ``bucket3$12,:3,:12000``: block
  ``data/bucket3``, then a numpy slice (row 12 of the block, its first 3 channels and first
  12000 samples; blocks are zero-padded to their longest trace). The commas make the CSV quote
  the field, so the file is read with the ``csv`` module, never by splitting lines. A name
  without ``$`` is a dataset ``data/<name>`` of its own.
- ``waveforms.hdf5``: group ``data`` with the blocks and group ``data_format`` with the datasets
  ``component_order`` (e.g. ``ZNE``; PNW ``ENZ``), ``dimension_order`` (``CW``: channels, then
  samples, per trace) and ``sampling_rate``. This reader takes the channel order from the file;
  the preset's order is only a fallback for files without ``data_format``.
- Presets (DESIGN.md section 3): INSTANCE ``trace_polarity`` positive/negative/undecidable, P
  ``trace_P_arrival_sample``, ZNE; PNW ``trace_P_polarity`` (same words), ``trace_P_arrival_sample``,
  ENZ; TXED ``trace_polarity`` U/D (anything else unknown), ``trace_p_arrival_sample``, ZNE.
  INSTANCE is addressed by ``trace_name``, never ``trace_name_original``.

Labels: words are compared case-insensitively (after stripping). An empty cell (or ``nan`` /
``none``, how converters write a missing value) means "no polarity given" and becomes unknown (2).
A word that is not in the map is an error (or a skipped row with ``on_bad_row="skip"``) unless
the map has the catch-all key ``"*"``; the TXED preset has ``"*": 2`` because TXED labels only
U and D. Precedence of maps: a ``label_map`` attribute of ``waveforms.hdf5`` > ``label_map`` given
here > the preset's.

Metadata exposed in ``TraceTable.metadata`` when the columns exist:
``event_id`` (``source_id``, else ``event_id``, else origin time + epicentre; cells without one
get a unique ``row<i>`` id so they never merge into one giant event), ``snr`` (dB: the vertical
component's value, see :func:`parse_snr`), ``magnitude`` (``source_magnitude`` or PNW's
preferred magnitude), ``distance`` (km: ``path_ep_distance_km`` / ``source_distance_km``, else
the great-circle distance from the source and station coordinates), ``station``
(``NET.STA``), ``split`` (SeisBench's own split column) and ``trace_name``.
"""
from __future__ import annotations

import csv
import difflib
import logging
import math
import os
import re
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..labels import LabelError, UNKNOWN, label_map_to_json, normalize_label_map
from .base import DataFormatError, Reader, TraceTable

log = logging.getLogger(__name__)

POLARITY_WORDS = {"positive": 0, "negative": 1, "undecidable": 2}

PRESETS: dict[str, dict[str, Any]] = {
    "instance": {"label_column": "trace_polarity", "p_column": "trace_P_arrival_sample",
                 "component_order": "ZNE", "label_map": POLARITY_WORDS},
    "pnw": {"label_column": "trace_P_polarity", "p_column": "trace_P_arrival_sample",
            "component_order": "ENZ", "label_map": POLARITY_WORDS},
    "txed": {"label_column": "trace_polarity", "p_column": "trace_p_arrival_sample",
             "component_order": "ZNE", "label_map": {"U": 0, "D": 1, "*": UNKNOWN}},
    # Any other SeisBench data set: the columns are guessed from the usual names.
    "seisbench": {"label_column": ("trace_polarity", "trace_P_polarity", "trace_p_polarity"),
                  "p_column": ("trace_P_arrival_sample", "trace_p_arrival_sample"),
                  "component_order": "ZNE",
                  "label_map": {**POLARITY_WORDS, "U": 0, "D": 1, "up": 0, "down": 1}},
}

MISSING_WORDS = {"", "nan", "none"}
EVENT_COLUMNS = ("source_id", "event_id")
MAGNITUDE_COLUMNS = ("source_magnitude", "source_magnitude_preferred", "preferred_source_magnitude")
DISTANCE_COLUMNS = ("path_ep_distance_km", "source_distance_km", "path_hyp_distance_km")
COORD_COLUMNS = ("source_latitude_deg", "source_longitude_deg", "station_latitude_deg", "station_longitude_deg")


# ---------------------------------------------------------------------------------------------
# helpers shared with the DiTing reader
# ---------------------------------------------------------------------------------------------
def read_csv_columns(path: str, wanted: Iterable[str]) -> tuple[list[str], dict[str, list[str]], int]:
    """Read the named columns of a CSV (quoted fields allowed) as lists of strings.

    Returns ``(header, columns, n_rows)``; columns absent from the header are left out.
    """
    csv.field_size_limit(1 << 28)
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise DataFormatError(f"{path}: empty file; expected a CSV header line") from None
        index = {name: i for i, name in enumerate(header)}
        names = [w for w in dict.fromkeys(wanted) if w in index]
        ids = [index[w] for w in names]
        width = len(header)
        records = []
        for rec in reader:
            if not rec or (len(rec) == 1 and not rec[0].strip()):
                continue  # blank line
            if len(rec) < width:
                rec = rec + [""] * (width - len(rec))
            records.append([rec[i] for i in ids])
    columns = {name: [] for name in names}
    if records:
        for name, values in zip(names, zip(*records)):
            columns[name] = list(values)
    return header, columns, len(records)


def missing_column_error(path: str, column: str, header: Sequence[str], what: str) -> DataFormatError:
    close = difflib.get_close_matches(column, header, n=3, cutoff=0.6)
    hint = f"; similar: {close}" if close else ""
    return DataFormatError(f"{path}: no column {column!r} ({what}){hint}; {len(header)} columns in the header "
                           f"(set the column name option to use another)")


def pick_column(header: Sequence[str], candidates: str | Sequence[str] | None) -> str | None:
    if candidates is None:
        return None
    if isinstance(candidates, str):
        candidates = (candidates,)
    for name in candidates:
        if name in header:
            return name
    return None


def lower_label_map(label_map: Mapping[str, int]) -> dict[str, int]:
    return {str(k).strip().lower(): int(v) for k, v in label_map.items()}


def map_label_words(words: Sequence[str], label_map: Mapping[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """Map label words case-insensitively; return ``(codes, unknown_mask)``.

    Missing cells (empty, ``nan``, ``none``) -> UNKNOWN. Words absent from the map -> the map's
    ``"*"`` code if it has one, else flagged in ``unknown_mask`` (code left at -1).
    """
    lmap = lower_label_map(label_map)
    fallback = lmap.get("*")
    arr = np.asarray([str(w).strip().lower() for w in words], dtype=object)
    codes = np.full(len(arr), -1, dtype=np.int64)
    if len(arr) == 0:
        return codes, np.zeros(0, dtype=bool)
    uniques, inverse = np.unique(arr.astype(str), return_inverse=True)
    ucodes = np.full(len(uniques), -1, dtype=np.int64)
    for i, word in enumerate(uniques):
        if word in lmap and word != "*":
            ucodes[i] = lmap[word]
        elif word in MISSING_WORDS:
            ucodes[i] = UNKNOWN
        elif fallback is not None:
            ucodes[i] = fallback
    codes = ucodes[inverse.reshape(-1)]
    return codes, codes < 0


def to_float(values: Sequence[str]) -> np.ndarray:
    out = np.full(len(values), np.nan, dtype=np.float64)
    for i, v in enumerate(values):
        try:
            out[i] = float(v)
        except (TypeError, ValueError):
            pass
    return out


_SPLIT = re.compile(r"[\s,|;]+")


def parse_snr(cell: str, component_order: str | None = None, component: str = "Z") -> float:
    """One SNR value (dB) from a metadata cell.

    Cells hold a number (``12.3``), or one value per component: STEAD/INSTANCE-style
    ``"[12.3 10.1 9.8]"``, PNW ``"6.135|3.065|11.766"``. For per-component cells the value of
    ``component`` (the vertical) is taken when the cell has one value per channel of
    ``component_order``; otherwise the mean of the finite values. ``nan`` if nothing parses.
    """
    text = str(cell).strip().strip("[]()")
    if not text:
        return math.nan
    parts = [p for p in _SPLIT.split(text) if p]
    values = []
    for p in parts:
        try:
            values.append(float(p))
        except ValueError:
            values.append(math.nan)
    if not values:
        return math.nan
    if len(values) == 1:
        return values[0]
    if component_order and len(values) == len(component_order) and component in component_order:
        return values[component_order.index(component)]
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def great_circle_km(lat1, lon1, lat2, lon2) -> np.ndarray:
    lat1, lon1, lat2, lon2 = (np.radians(np.asarray(a, dtype=np.float64)) for a in (lat1, lon1, lat2, lon2))
    h = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    return 2 * 6371.0 * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))


class BadRows:
    """Collects per-row problems; raises on the first (``on_bad_row="error"``) or drops and counts."""

    def __init__(self, n: int, source: str, on_bad_row: str) -> None:
        if on_bad_row not in ("error", "skip"):
            raise ValueError(f"on_bad_row={on_bad_row!r}; expected 'error' or 'skip'")
        self.n, self.source, self.mode = n, source, on_bad_row
        self.keep = np.ones(n, dtype=bool)
        self.skipped: dict[str, int] = {}

    def flag(self, reason: str, mask: np.ndarray, describe, error_cls=DataFormatError) -> None:
        """``describe(row) -> str`` explains one offending row (called for the first one only)."""
        mask = np.asarray(mask, dtype=bool) & self.keep
        if not mask.any():
            return
        row = int(np.flatnonzero(mask)[0])
        if self.mode == "error":
            raise error_cls(f"{self.source}: row {row}: {describe(row)}; fix the file or pass on_bad_row='skip'")
        count = int(mask.sum())
        self.skipped[reason] = self.skipped.get(reason, 0) + count
        self.keep &= ~mask
        log.warning("%s: skipped %d rows (%s), first at row %d: %s", self.source, count, reason, row, describe(row))


def resolve_label_map(file_map: Any, user_map: Any, preset_map: Mapping[str, int], source: str) -> dict[str, int]:
    """File attribute > user map > preset map (DESIGN.md section 2)."""
    user = normalize_label_map(user_map) if user_map is not None else None
    if file_map is not None:
        stored = normalize_label_map(file_map)
        if user is not None and lower_label_map(user) != lower_label_map(stored):
            log.warning("%s: the label_map stored in the file %s overrides the configured %s",
                        source, stored, user)
        return stored
    if user is not None:
        return user
    return dict(preset_map)


def components_list(components: str | Sequence[str] | None, order: str) -> list[str]:
    if components is None or components == "" or (isinstance(components, str) and components.lower() == "all"):
        return list(order)
    if isinstance(components, str):
        return list(components.upper())
    return [str(c).upper() for c in components]


# ---------------------------------------------------------------------------------------------
# trace names
# ---------------------------------------------------------------------------------------------
def _int_or_none(text: str) -> int | None:
    text = text.strip()
    return None if text == "" else int(text)


def parse_location(location: str) -> tuple:
    """``"12,:3,:12000"`` -> ``(12, slice(None, 3), slice(None, 12000))`` (numpy slice syntax)."""
    out: list = []
    for part in location.replace(" ", "").split(","):
        pieces = part.split(":")
        if len(pieces) == 1:
            out.append(_int_or_none(pieces[0]))
        elif len(pieces) in (2, 3):
            out.append(slice(*[_int_or_none(p) for p in pieces]))
        else:
            raise ValueError(f"bad slice {part!r}")
    return tuple(out)


def split_trace_name(name: str) -> tuple[str, tuple]:
    """``"bucket3$12,:3,:12000"`` -> ``("bucket3", (12, slice(None, 3), slice(None, 12000)))``."""
    if "$" in name:
        block, location = name.split("$", 1)
        return block, parse_location(location)
    return name, ()


class SeisBenchReader(Reader):
    """Reads a SeisBench-format folder (``metadata.csv`` + ``waveforms.hdf5``).

    Args:
        path: the folder holding ``metadata.csv`` and ``waveforms.hdf5`` (or pass the two files as
            ``metadata_path`` / ``waveforms_path``; ``path`` may then be either file's folder).
        preset: "instance", "pnw", "txed" or "seisbench"/None (generic: usual column names).
        label_map: raw label word -> code (0 up, 1 down, 2 unknown); case-insensitive; a ``"*"``
            key catches every other word. Default: the preset's.
        label_column: the polarity column (default: the preset's).
        p_column: the P arrival sample column (default: the preset's).
        components: channels to return, e.g. "Z" (default) or "ZNE" / "all".
        component_order: overrides the file's ``data_format/component_order`` (a warning is
            logged when they differ); the preset's order is used only when the file has none.
        event_column: column grouping traces by event (default ``source_id``, then ``event_id``).
        snr_column: column for ``metadata["snr"]`` (default ``trace_<Z>_snr_db``, then
            ``trace_snr_db``).
        sampling_rate: used only when neither the file nor the metadata say it.
        on_bad_row: "error" (default: the first bad row raises, naming file, row and value) or
            "skip" (bad rows are dropped, counted in ``self.skipped`` and logged). Bad rows: a
            trace name that does not parse, names a missing block or points outside its block,
            a trace without the requested component, a missing or non-numeric P pick or one
            outside the trace, an unknown label word.
    """

    names = ("instance", "pnw", "txed", "seisbench")

    def __init__(self, path, preset: str | None = None, label_map: Mapping | str | None = None,
                 label_column: str | None = None, p_column: str | None = None,
                 components: str | Sequence[str] | None = "Z", component_order: str | None = None,
                 event_column: str | None = None, snr_column: str | None = None,
                 sampling_rate: float | None = None, on_bad_row: str = "error",
                 metadata_path: str | os.PathLike | None = None,
                 waveforms_path: str | os.PathLike | None = None) -> None:
        super().__init__(path)
        preset_key = (preset or "seisbench").lower()
        if preset_key not in PRESETS:
            raise ValueError(f"preset={preset!r}; expected one of {sorted(PRESETS)}")
        self.preset = preset_key
        cfg = PRESETS[preset_key]
        folder = self.path if os.path.isdir(self.path) else os.path.dirname(self.path)
        self.metadata_path = os.fspath(metadata_path) if metadata_path else os.path.join(folder, "metadata.csv")
        self.waveforms_path = os.fspath(waveforms_path) if waveforms_path else os.path.join(folder, "waveforms.hdf5")
        for p, what in ((self.metadata_path, "metadata.csv"), (self.waveforms_path, "waveforms.hdf5")):
            if not os.path.isfile(p):
                raise FileNotFoundError(f"{p}: no such file (a SeisBench folder holds {what}; "
                                        f"or pass metadata_path= / waveforms_path=)")
        self._ds_cache: tuple[int, dict[int, Any]] = (os.getpid(), {})

        # -- data_format -----------------------------------------------------------------------
        f = self._h5(self.waveforms_path)
        if "data" not in f:
            raise DataFormatError(f"{self.waveforms_path}: no group 'data' (found {sorted(f.keys())}); "
                                  f"not a SeisBench waveforms file")
        fmt = {}
        if "data_format" in f:
            for key in f["data_format"].keys():
                value = f["data_format"][key][()]
                if isinstance(value, bytes):
                    value = value.decode()
                elif isinstance(value, np.ndarray):
                    value = "".join(v.decode() if isinstance(v, bytes) else str(v) for v in value.ravel())
                fmt[key] = value
        file_order = fmt.get("component_order")
        if component_order:
            order = str(component_order).upper()
            if file_order and str(file_order).upper() != order:
                log.warning("%s: component_order=%s overrides the file's data_format/component_order %s",
                            self.waveforms_path, order, file_order)
        elif file_order:
            order = str(file_order).upper()
        else:
            order = cfg["component_order"]
            log.warning("%s: no data_format/component_order; assuming the %s preset's %s",
                        self.waveforms_path, preset_key, order)
        self.component_order = order
        self.dimension_order = str(fmt.get("dimension_order", "CW")).upper()
        if self.dimension_order not in ("CW", "WC"):
            raise DataFormatError(f"{self.waveforms_path}: data_format/dimension_order is "
                                  f"{self.dimension_order!r}; this reader handles 'CW' and 'WC'")
        self.components = components_list(components, order)
        missing = [c for c in self.components if c not in order]
        if missing:
            raise DataFormatError(f"{self.waveforms_path}: components {''.join(self.components)!r} not all in "
                                  f"the component order {order!r} (missing {missing})")
        self._channels = [order.index(c) for c in self.components]

        # -- metadata.csv ----------------------------------------------------------------------
        with open(self.metadata_path, newline="", encoding="utf-8-sig") as fh:
            header = [h.strip() for h in next(csv.reader(fh), [])]
        if not header:
            raise DataFormatError(f"{self.metadata_path}: empty file; expected a CSV header")
        label_col = label_column or pick_column(header, cfg["label_column"])
        p_col = p_column or pick_column(header, cfg["p_column"])
        first = lambda c: c if isinstance(c, str) else c[0]  # noqa: E731
        for col, default, what in ((label_col, cfg["label_column"], "polarity labels"),
                                   (p_col, cfg["p_column"], "P arrival sample"),
                                   ("trace_name", "trace_name", "waveform address")):
            name = col or first(default)
            if name not in header:
                raise missing_column_error(self.metadata_path, name, header, what)
        event_col = event_column or pick_column(header, EVENT_COLUMNS)
        if event_column and event_column not in header:
            raise missing_column_error(self.metadata_path, event_column, header, "event id")
        if snr_column and snr_column not in header:
            raise missing_column_error(self.metadata_path, snr_column, header, "SNR")
        snr_col = snr_column or pick_column(
            header, [f"trace_{self.components[0]}_snr_db", "trace_Z_snr_db", "trace_snr_db"])
        mag_col = pick_column(header, MAGNITUDE_COLUMNS)
        dist_col = pick_column(header, DISTANCE_COLUMNS)
        wanted = ["trace_name", label_col, p_col, event_col, snr_col, mag_col, dist_col,
                  "station_network_code", "station_code", "split", "trace_sampling_rate_hz",
                  "source_origin_time", *COORD_COLUMNS]
        header, cols, n = read_csv_columns(self.metadata_path, [w for w in wanted if w])
        if n == 0:
            raise DataFormatError(f"{self.metadata_path}: no rows")
        self.label_column, self.p_column = label_col, p_col
        bad = BadRows(n, self.metadata_path, on_bad_row)
        names = cols["trace_name"]

        # -- sampling rate ---------------------------------------------------------------------
        rate = fmt.get("sampling_rate")
        if rate is None and "trace_sampling_rate_hz" in cols:
            rates = to_float(cols["trace_sampling_rate_hz"])
            finite = np.unique(rates[np.isfinite(rates)])
            if len(finite) > 1:
                raise DataFormatError(f"{self.metadata_path}: traces at several sampling rates {finite[:5]}; "
                                      f"this reader does not resample SeisBench data")
            rate = float(finite[0]) if len(finite) else None
        if rate is None:
            rate = sampling_rate if sampling_rate is not None else 100.0
            log.warning("%s: no sampling rate in data_format or metadata; using %s Hz", self.path, rate)
        self.sampling_rate = float(rate)

        # -- trace names -> block, index, channel and sample ranges ----------------------------
        self._resolve_trace_names(names, bad, f)

        # -- labels ----------------------------------------------------------------------------
        file_map = f.attrs.get("label_map")
        self.label_map = resolve_label_map(file_map, label_map, cfg["label_map"], self.metadata_path)
        words = cols[label_col]
        codes, unknown = map_label_words(words, self.label_map)
        bad.flag("unknown_label", unknown,
                 lambda r: f"label {words[r]!r} in column {label_col!r} is not in label_map "
                           f"{self.label_map}; add it to label_map (0 up, 1 down, 2 unknown; '*' for any other)",
                 error_cls=LabelError)

        # -- P picks ---------------------------------------------------------------------------
        p_raw = cols[p_col]
        p_float = to_float(p_raw)
        bad.flag("p_pick_missing", ~np.isfinite(p_float),
                 lambda r: f"P pick {p_raw[r]!r} in column {p_col!r} (trace_name {names[r]!r}) is not a number")
        p_index = np.where(np.isfinite(p_float), np.round(np.nan_to_num(p_float)), -1).astype(np.int64)
        outside = (p_index < 0) | (p_index >= self._wlen)
        bad.flag("p_pick_outside_trace", outside & np.isfinite(p_float),
                 lambda r: f"P pick {p_raw[r]!r} (trace_name {names[r]!r}) is outside the trace "
                           f"(0..{int(self._wlen[r]) - 1})")

        # -- metadata --------------------------------------------------------------------------
        meta: dict[str, np.ndarray] = {"trace_name": np.asarray(names, dtype=object)}
        events = self._event_ids(cols, event_col, n)
        if events is not None:
            meta["event_id"] = events
        if snr_col:
            zc = self.components[0] if "Z" not in self.components else "Z"
            meta["snr"] = np.array([parse_snr(c, order, zc) for c in cols[snr_col]], dtype=np.float64)
        if mag_col:
            meta["magnitude"] = to_float(cols[mag_col])
        if dist_col:
            meta["distance"] = to_float(cols[dist_col])
        elif all(c in cols for c in COORD_COLUMNS):
            meta["distance"] = great_circle_km(*(to_float(cols[c]) for c in COORD_COLUMNS))
        if "station_code" in cols:
            nets = cols.get("station_network_code", [""] * n)
            meta["station"] = np.asarray([f"{a}.{b}" if a else b for a, b in zip(nets, cols["station_code"])],
                                         dtype=object)
        if "split" in cols:
            meta["split"] = np.asarray(cols["split"], dtype=object)

        keep = np.flatnonzero(bad.keep)
        self.skipped = bad.skipped
        if len(keep) == 0:
            raise DataFormatError(f"{self.metadata_path}: every row was skipped ({self.skipped})")
        self.source_rows = keep  # row of metadata.csv for each table row
        for name in ("_block", "_index", "_c0", "_nch", "_w0", "_wlen"):
            setattr(self, name, getattr(self, name)[keep])
        self.table = TraceTable(
            labels=codes[keep], p_index=p_index[keep], trace_length=self._wlen.copy(),
            sampling_rate=self.sampling_rate, num_channels=len(self._channels),
            metadata={k: v[keep] for k, v in meta.items()}, has_pick=True,
            label_map=dict(self.label_map))
        log.info("%s: %d traces (%s preset, components %s of %s, %s Hz)%s", self.path, len(keep), preset_key,
                 "".join(self.components), order, self.sampling_rate,
                 f", skipped {self.skipped}" if self.skipped else "")

    # -- construction helpers ----------------------------------------------------------------------
    def _resolve_trace_names(self, names: Sequence[str], bad: BadRows, f) -> None:
        n = len(names)
        block = np.full(n, -1, dtype=np.int64)
        index = np.full(n, -1, dtype=np.int64)
        c0 = np.zeros(n, dtype=np.int64)
        nch = np.zeros(n, dtype=np.int64)
        w0 = np.zeros(n, dtype=np.int64)
        wlen = np.zeros(n, dtype=np.int64)
        problem: list[str | None] = [None] * n
        reason = np.zeros(n, dtype=np.int8)  # 1 unparsable, 2 missing block, 3 outside, 4 component
        self._block_names: list[str] = []
        block_ids: dict[str, int] = {}
        shapes: dict[str, tuple | None] = {}
        data = f["data"]
        cw = self.dimension_order == "CW"
        need = max(self._channels) + 1
        for i, name in enumerate(names):
            try:
                bname, loc = split_trace_name(name)
            except ValueError:
                reason[i], problem[i] = 1, f"trace_name {name!r} does not parse as 'bucket$index,:channels,:samples'"
                continue
            if bname not in shapes:
                obj = data.get(bname)
                shapes[bname] = tuple(obj.shape) if obj is not None and hasattr(obj, "shape") else None
            shape = shapes[bname]
            if shape is None:
                reason[i], problem[i] = 2, f"trace_name {name!r}: no dataset 'data/{bname}' in {self.waveforms_path}"
                continue
            if len(shape) not in (2, 3):
                reason[i], problem[i] = 1, f"trace_name {name!r}: 'data/{bname}' has shape {shape}"
                continue
            loc = list(loc)
            idx = -1
            if len(shape) == 3:
                if not loc or not isinstance(loc[0], int):
                    reason[i], problem[i] = 1, f"trace_name {name!r} gives no row of block {bname} {shape}"
                    continue
                idx = loc.pop(0)
                if not 0 <= idx < shape[0]:
                    reason[i], problem[i] = 3, (f"trace_name {name!r} points at row {idx} of 'data/{bname}', "
                                                f"which holds {shape[0]} traces (outside its bucket)")
                    continue
            dims = shape[-2:]
            loc = (loc + [slice(None)] * 2)[:2]
            ranges = []
            for s, size in zip(loc, dims):
                if not isinstance(s, slice) or s.step not in (None, 1):
                    ranges = None
                    break
                start = 0 if s.start is None else s.start
                stop = size if s.stop is None else s.stop
                if start < 0 or stop > size or stop < start:
                    ranges = (start, stop, size)
                    break
                ranges.append((start, stop))
            if ranges is None:
                reason[i], problem[i] = 1, f"trace_name {name!r}: only plain slices are supported"
                continue
            if isinstance(ranges, tuple):
                reason[i], problem[i] = 3, (f"trace_name {name!r} slices {ranges[0]}:{ranges[1]} of an axis of "
                                            f"length {ranges[2]} in 'data/{bname}' {shape} (outside its bucket)")
                continue
            (ca, cb), (wa, wb) = ranges if cw else ranges[::-1]
            if cb - ca < need:
                reason[i], problem[i] = 4, (f"trace_name {name!r} has {cb - ca} channels; component "
                                            f"{''.join(self.components)!r} of {self.component_order!r} needs {need}")
                continue
            if bname not in block_ids:
                block_ids[bname] = len(self._block_names)
                self._block_names.append(bname)
            block[i], index[i], c0[i], nch[i], w0[i], wlen[i] = block_ids[bname], idx, ca, cb - ca, wa, wb - wa
        labels = {1: "trace_name_unparsable", 2: "trace_block_missing", 3: "trace_outside_bucket",
                  4: "trace_missing_component"}
        for code, why in labels.items():
            bad.flag(why, reason == code, lambda r: problem[r])
        self._block, self._index, self._c0, self._nch, self._w0, self._wlen = block, index, c0, nch, w0, wlen

    def _event_ids(self, cols: dict[str, list[str]], event_col: str | None, n: int) -> np.ndarray | None:
        if event_col:
            values = [v.strip() for v in cols[event_col]]
        elif "source_origin_time" in cols:
            lat = cols.get("source_latitude_deg", [""] * n)
            lon = cols.get("source_longitude_deg", [""] * n)
            values = [f"{t.strip()}@{a.strip()},{b.strip()}" if t.strip() else ""
                      for t, a, b in zip(cols["source_origin_time"], lat, lon)]
        else:
            return None
        return np.asarray([v if v and v.lower() not in MISSING_WORDS else f"row{i}" for i, v in enumerate(values)],
                          dtype=object)

    # -- reading ----------------------------------------------------------------------------------
    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state["_ds_cache"] = (-1, {})
        return state

    def _dataset(self, block_id: int):
        pid, cache = self._ds_cache
        if pid != os.getpid():
            cache = {}
            self._ds_cache = (os.getpid(), cache)
        ds = cache.get(block_id)
        if ds is None:
            ds = self._h5(self.waveforms_path)["data"][self._block_names[block_id]]
            cache[block_id] = ds
        return ds

    def read_windows(self, rows: np.ndarray, start: np.ndarray, length: int) -> np.ndarray:
        """Windows ``(len(rows), C, length)`` float32; samples outside the trace are zero.

        Reads only each window (``block[i, channels, a:b]``), in (block, row) order; consecutive
        rows of a block whose windows overlap are read as one small hyperslab.
        """
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        start = np.asarray(start, dtype=np.int64).reshape(-1)
        if start.size == 1 and rows.size != 1:
            start = np.full(rows.shape, int(start[0]), dtype=np.int64)
        length = int(length)
        n = len(rows)
        out = np.zeros((n, len(self._channels), length), dtype=np.float32)
        if n == 0:
            return out
        lo_ch, hi_ch = min(self._channels), max(self._channels) + 1
        pick = [c - lo_ch for c in self._channels]
        a = np.maximum(start, 0)
        b = np.minimum(start + length, self._wlen[rows])
        blocks, index = self._block[rows], self._index[rows]
        valid = np.flatnonzero(b > a)
        order = valid[np.lexsort((a[valid], index[valid], blocks[valid]))]
        cw = self.dimension_order == "CW"
        k, n = 0, len(order)
        while k < n:
            first = order[k]
            # Extend a run of consecutive rows of one bucket whose windows overlap (one read).
            j = k + 1
            ra, rb = a[first], b[first]
            while (j < n and index[first] >= 0 and blocks[order[j]] == blocks[first]
                   and index[order[j]] == index[order[j - 1]] + 1
                   and self._c0[rows[order[j]]] == self._c0[rows[first]]
                   and self._w0[rows[order[j]]] == self._w0[rows[first]]
                   and max(rb, b[order[j]]) - min(ra, a[order[j]]) <= 2 * length):
                ra, rb = min(ra, a[order[j]]), max(rb, b[order[j]])
                j += 1
            run = order[k:j]
            k = j
            r0 = rows[first]
            ds = self._dataset(int(blocks[first]))
            c_lo, c_hi = int(self._c0[r0]) + lo_ch, int(self._c0[r0]) + hi_ch
            s_lo, s_hi = int(self._w0[r0] + ra), int(self._w0[r0] + rb)
            i0 = int(index[first])
            if i0 >= 0:
                i1 = i0 + len(run)
                chunk = ds[i0:i1, c_lo:c_hi, s_lo:s_hi] if cw else ds[i0:i1, s_lo:s_hi, c_lo:c_hi].transpose(0, 2, 1)
            else:
                chunk = (ds[c_lo:c_hi, s_lo:s_hi] if cw else ds[s_lo:s_hi, c_lo:c_hi].T)[None]
            chunk = np.asarray(chunk, dtype=np.float32)[:, pick, :]
            for m, q in enumerate(run):
                out[q, :, a[q] - start[q]: b[q] - start[q]] = chunk[m, :, a[q] - ra: b[q] - ra]
        return out

    def describe(self) -> str:
        return (f"SeisBench {self.preset}: {len(self.table)} traces, components {''.join(self.components)} of "
                f"{self.component_order}, labels from {self.label_column!r}, P from {self.p_column!r}, "
                f"label_map {label_map_to_json(self.label_map)}")
