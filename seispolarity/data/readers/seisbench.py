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
- Presets (docs/data.md section 1): INSTANCE ``trace_polarity`` positive/negative/undecidable,
  P ``trace_P_arrival_sample``, ZNE; PNW ``trace_P_polarity`` (same words), ``trace_P_arrival_sample``,
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

Construction is a list of named steps (``SeisBenchReader.__init__``): locate the two files, read
``data_format``, resolve channels, read the index (``metadata.csv``), plan the reads (trace names
to block addresses), resolve labels, resolve P picks, collect metadata, select rows.
"""
from __future__ import annotations

import logging
import math
import os
import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from ..labels import UNKNOWN, label_map_to_json, resolve_label_map
from .bad_rows import BadRows
from .base import DataFormatError, Reader, TraceTable, resolve_channels, window_request
from .csv_columns import (
    label_column_codes,
    missing_column_error,
    pick_column,
    read_csv_columns,
    read_csv_header,
    to_float,
)

log = logging.getLogger(__name__)

POLARITY_WORDS = {"positive": 0, "negative": 1, "undecidable": 2}

#: What differs between SeisBench data sets: the label and P columns (one name, or candidates in
#: order of preference), the channel order assumed when the file does not say it, the label map.
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
OTHER_COLUMNS = ("station_network_code", "station_code", "station_location_code", "station_channels", "split",
                 "trace_sampling_rate_hz", "source_origin_time")


# ---------------------------------------------------------------------------------------------
# metadata cells
# ---------------------------------------------------------------------------------------------
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
    values = []
    for part in (p for p in _SPLIT.split(text) if p):
        try:
            values.append(float(part))
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
    """Distance on a sphere of radius 6371 km between points given in degrees."""
    lat1, lon1, lat2, lon2 = (np.radians(np.asarray(a, dtype=np.float64)) for a in (lat1, lon1, lat2, lon2))
    h = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    return 2 * 6371.0 * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))


# ---------------------------------------------------------------------------------------------
# trace names -> where the samples are
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


#: Why a trace name cannot be read, in the order the checks are reported.
ADDRESS_PROBLEMS = ("trace_name_unparsable", "trace_block_missing", "trace_outside_bucket",
                    "trace_missing_component")


class _BadAddress(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message


@dataclass
class TraceAddresses:
    """Where each trace's samples are in ``waveforms.hdf5``, one entry per metadata row.

    Attributes:
        block_names: the ``data/<name>`` datasets, indexed by ``block``.
        block: (N,) the trace's block; -1 for a row whose name did not resolve.
        row: (N,) the trace's row in its block; -1 for a block that holds one trace alone.
        channel_start, channel_count: (N,) the trace's channels in the block.
        sample_start, length: (N,) the trace's samples in the block.
    """

    block_names: list[str]
    block: np.ndarray
    row: np.ndarray
    channel_start: np.ndarray
    channel_count: np.ndarray
    sample_start: np.ndarray
    length: np.ndarray

    @classmethod
    def empty(cls, n: int) -> TraceAddresses:
        unresolved, zeros = np.full((2, n), -1, dtype=np.int64), np.zeros((4, n), dtype=np.int64)
        return cls([], *unresolved, *zeros)

    def select(self, rows: np.ndarray) -> TraceAddresses:
        return TraceAddresses(self.block_names, self.block[rows], self.row[rows], self.channel_start[rows],
                              self.channel_count[rows], self.sample_start[rows], self.length[rows])


def _axis_ranges(name: str, bname: str, shape: tuple, loc: list) -> list[tuple[int, int]]:
    """``(start, stop)`` of the two per-trace axes that a trace name's slices select."""
    ranges = []
    for s, size in zip((loc + [slice(None)] * 2)[:2], shape[-2:]):
        if not isinstance(s, slice) or s.step not in (None, 1):
            raise _BadAddress("trace_name_unparsable", f"trace_name {name!r}: only plain slices are supported")
        start = 0 if s.start is None else s.start
        stop = size if s.stop is None else s.stop
        if start < 0 or stop > size or stop < start:
            raise _BadAddress("trace_outside_bucket", f"trace_name {name!r} slices {start}:{stop} of an axis of "
                                                      f"length {size} in 'data/{bname}' {shape} (outside its bucket)")
        ranges.append((start, stop))
    return ranges


def locate_trace(name: str, shape_of, channels_first: bool) -> tuple[str, int, tuple[int, int], tuple[int, int]]:
    """``(block, row in block or -1, (channel start, stop), (sample start, stop))`` of one trace
    name; ``shape_of(block)`` is the block's shape or None. Raises _BadAddress."""
    try:
        bname, loc = split_trace_name(name)
    except ValueError:
        raise _BadAddress("trace_name_unparsable",
                          f"trace_name {name!r} does not parse as 'bucket$index,:channels,:samples'") from None
    shape = shape_of(bname)
    if shape is None:
        raise _BadAddress("trace_block_missing", f"trace_name {name!r}: no dataset 'data/{bname}'")
    if len(shape) not in (2, 3):
        raise _BadAddress("trace_name_unparsable", f"trace_name {name!r}: 'data/{bname}' has shape {shape}")
    loc = list(loc)
    row = -1
    if len(shape) == 3:
        if not loc or not isinstance(loc[0], int):
            raise _BadAddress("trace_name_unparsable", f"trace_name {name!r} gives no row of block {bname} {shape}")
        row = loc.pop(0)
        if not 0 <= row < shape[0]:
            raise _BadAddress("trace_outside_bucket", f"trace_name {name!r} points at row {row} of 'data/{bname}', "
                                                      f"which holds {shape[0]} traces (outside its bucket)")
    ranges = _axis_ranges(name, bname, shape, loc)
    channels, samples = ranges if channels_first else ranges[::-1]
    return bname, row, channels, samples


# ---------------------------------------------------------------------------------------------
# the reader
# ---------------------------------------------------------------------------------------------
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
        self.preset = (preset or "seisbench").lower()
        if self.preset not in PRESETS:
            raise ValueError(f"preset={preset!r}; expected one of {sorted(PRESETS)}")
        self._locate_files(metadata_path, waveforms_path)
        data_format = self._read_data_format()
        self._resolve_channels(data_format, components, component_order)
        columns, n = self._read_index(label_column, p_column, event_column, snr_column)
        bad = BadRows(n, self.metadata_path, on_bad_row)
        self.sampling_rate = self._resolve_sampling_rate(data_format, columns, sampling_rate)
        self._plan_reads(columns["trace_name"], bad)
        labels = self._resolve_labels(columns, label_map, bad)
        p_index = self._resolve_picks(columns, bad)
        metadata = self._collect_metadata(columns, n)
        self._select_rows(bad, labels, p_index, metadata)

    # -- construction steps, in order -------------------------------------------------------------
    def _locate_files(self, metadata_path, waveforms_path) -> None:
        folder = self.path if os.path.isdir(self.path) else os.path.dirname(self.path)
        self.metadata_path = os.fspath(metadata_path) if metadata_path else os.path.join(folder, "metadata.csv")
        self.waveforms_path = os.fspath(waveforms_path) if waveforms_path else os.path.join(folder, "waveforms.hdf5")
        for p, what in ((self.metadata_path, "metadata.csv"), (self.waveforms_path, "waveforms.hdf5")):
            if not os.path.isfile(p):
                raise FileNotFoundError(f"{p}: no such file (a SeisBench folder holds {what}; "
                                        f"or pass metadata_path= / waveforms_path=)")

    def _read_data_format(self) -> dict[str, Any]:
        """The ``data_format`` group of waveforms.hdf5 as strings / numbers (empty if absent)."""
        handle = self._h5(self.waveforms_path)
        if "data" not in handle:
            raise DataFormatError(f"{self.waveforms_path}: no group 'data' (found {sorted(handle.keys())}); "
                                  f"not a SeisBench waveforms file")
        data_format: dict[str, Any] = {}
        for key in handle["data_format"].keys() if "data_format" in handle else ():
            value = handle["data_format"][key][()]
            if isinstance(value, bytes):
                value = value.decode()
            elif isinstance(value, np.ndarray):
                value = "".join(v.decode() if isinstance(v, bytes) else str(v) for v in value.ravel())
            data_format[key] = value
        return data_format

    def _resolve_channels(self, data_format: Mapping[str, Any], components, component_order: str | None) -> None:
        """Channel order (argument > file > preset), dimension order, and the channels to return."""
        file_order = data_format.get("component_order")
        if component_order:
            order = str(component_order).upper()
            if file_order and str(file_order).upper() != order:
                log.warning("%s: component_order=%s overrides the file's data_format/component_order %s",
                            self.waveforms_path, order, file_order)
        elif file_order:
            order = str(file_order).upper()
        else:
            order = PRESETS[self.preset]["component_order"]
            log.warning("%s: no data_format/component_order; assuming the %s preset's %s",
                        self.waveforms_path, self.preset, order)
        self.component_order = order
        self.dimension_order = str(data_format.get("dimension_order", "CW")).upper()
        if self.dimension_order not in ("CW", "WC"):
            raise DataFormatError(f"{self.waveforms_path}: data_format/dimension_order is "
                                  f"{self.dimension_order!r}; this reader handles 'CW' and 'WC'")
        self.components, self._channels = resolve_channels(components, order, self.waveforms_path)

    def _read_index(self, label_column, p_column, event_column, snr_column) -> tuple[dict[str, list[str]], int]:
        """Choose the columns (argument > preset's candidates) and read them from metadata.csv."""
        preset = PRESETS[self.preset]
        header = read_csv_header(self.metadata_path)
        self.label_column = label_column or pick_column(header, preset["label_column"])
        self.p_column = p_column or pick_column(header, preset["p_column"])
        for chosen, default, what, option in (
                (self.label_column, preset["label_column"], "polarity labels", "label_column"),
                (self.p_column, preset["p_column"], "P arrival sample", "p_column"),
                ("trace_name", "trace_name", "waveform address", None)):
            name = chosen or (default if isinstance(default, str) else default[0])
            if name not in header:
                raise missing_column_error(self.metadata_path, name, header, what, option)
        for given, what, option in ((event_column, "event id", "event_column"), (snr_column, "SNR", "snr_column")):
            if given and given not in header:
                raise missing_column_error(self.metadata_path, given, header, what, option)
        self._event_column = event_column or pick_column(header, EVENT_COLUMNS)
        self._snr_column = snr_column or pick_column(
            header, [f"trace_{self.components[0]}_snr_db", "trace_Z_snr_db", "trace_snr_db"])
        self._magnitude_column = pick_column(header, MAGNITUDE_COLUMNS)
        self._distance_column = pick_column(header, DISTANCE_COLUMNS)
        wanted = ["trace_name", self.label_column, self.p_column, self._event_column, self._snr_column,
                  self._magnitude_column, self._distance_column, *OTHER_COLUMNS, *COORD_COLUMNS]
        _, columns, n = read_csv_columns(self.metadata_path, [w for w in wanted if w])
        if n == 0:
            raise DataFormatError(f"{self.metadata_path}: no rows")
        return columns, n

    def _resolve_sampling_rate(self, data_format, columns, sampling_rate: float | None) -> float:
        """Hz: the file's data_format > one rate shared by every row of the metadata > the argument."""
        rate = data_format.get("sampling_rate")
        if rate is None and "trace_sampling_rate_hz" in columns:
            rates = to_float(columns["trace_sampling_rate_hz"])
            finite = np.unique(rates[np.isfinite(rates)])
            if len(finite) > 1:
                raise DataFormatError(f"{self.metadata_path}: traces at several sampling rates {finite[:5]}; "
                                      f"this reader does not resample SeisBench data")
            rate = float(finite[0]) if len(finite) else None
        if rate is None:
            rate = sampling_rate if sampling_rate is not None else 100.0
            log.warning("%s: no sampling rate in data_format or metadata; using %s Hz", self.path, rate)
        return float(rate)

    def _plan_reads(self, names: Sequence[str], bad: BadRows) -> None:
        """Trace names -> ``self._address`` (block, row, channel and sample ranges); flags the rows
        whose name does not resolve, one reason after the other (see ADDRESS_PROBLEMS)."""
        data = self._h5(self.waveforms_path)["data"]
        shapes: dict[str, tuple | None] = {}

        def shape_of(bname: str) -> tuple | None:
            if bname not in shapes:
                obj = data.get(bname)
                shapes[bname] = tuple(obj.shape) if obj is not None and hasattr(obj, "shape") else None
            return shapes[bname]

        address = TraceAddresses.empty(len(names))
        block_ids: dict[str, int] = {}
        reason = np.full(len(names), "", dtype=object)
        problem: list[str] = [""] * len(names)
        need = max(self._channels) + 1
        for i, name in enumerate(names):
            try:
                bname, row, (ca, cb), (wa, wb) = locate_trace(name, shape_of, self.dimension_order == "CW")
                if cb - ca < need:
                    raise _BadAddress("trace_missing_component", f"trace_name {name!r} has {cb - ca} channels; "
                                      f"component {''.join(self.components)!r} of {self.component_order!r} "
                                      f"needs {need}")
            except _BadAddress as why:
                reason[i], problem[i] = why.reason, why.message
                if why.reason == "trace_block_missing":
                    problem[i] += f" in {self.waveforms_path}"
                continue
            if bname not in block_ids:
                block_ids[bname] = len(address.block_names)
                address.block_names.append(bname)
            address.block[i], address.row[i] = block_ids[bname], row
            address.channel_start[i], address.channel_count[i] = ca, cb - ca
            address.sample_start[i], address.length[i] = wa, wb - wa
        for why in ADDRESS_PROBLEMS:
            bad.flag(why, reason == why, lambda r: problem[r])
        self._address = address

    def _resolve_labels(self, columns, label_map, bad: BadRows) -> np.ndarray:
        """Label words -> codes through the map in force (file attribute > argument > preset)."""
        file_map = self._h5(self.waveforms_path).attrs.get("label_map")
        self.label_map = resolve_label_map(file_map, label_map, PRESETS[self.preset]["label_map"],
                                           self.metadata_path)
        return label_column_codes(columns[self.label_column], self.label_map, self.label_column, bad)

    def _resolve_picks(self, columns, bad: BadRows) -> np.ndarray:
        """P samples; flags cells that are not numbers and picks outside the trace."""
        names, p_raw = columns["trace_name"], columns[self.p_column]
        p_float = to_float(p_raw)
        bad.flag("p_pick_missing", ~np.isfinite(p_float),
                 lambda r: f"P pick {p_raw[r]!r} in column {self.p_column!r} (trace_name {names[r]!r}) is not a number")
        p_index = np.where(np.isfinite(p_float), np.round(np.nan_to_num(p_float)), -1).astype(np.int64)
        length = self._address.length
        outside = (p_index < 0) | (p_index >= length)
        bad.flag("p_pick_outside_trace", outside & np.isfinite(p_float),
                 lambda r: f"P pick {p_raw[r]!r} (trace_name {names[r]!r}) is outside the trace "
                           f"(0..{int(length[r]) - 1})")
        return p_index

    def _collect_metadata(self, columns: dict[str, list[str]], n: int) -> dict[str, np.ndarray]:
        """``TraceTable.metadata`` from the columns present (see the module docstring)."""
        meta: dict[str, np.ndarray] = {"trace_name": np.asarray(columns["trace_name"], dtype=object)}
        events = self._event_ids(columns, n)
        if events is not None:
            meta["event_id"] = events
        if self._snr_column:
            vertical = self.components[0] if "Z" not in self.components else "Z"
            meta["snr"] = np.array([parse_snr(c, self.component_order, vertical) for c in columns[self._snr_column]],
                                   dtype=np.float64)
        if self._magnitude_column:
            meta["magnitude"] = to_float(columns[self._magnitude_column])
        if self._distance_column:
            meta["distance"] = to_float(columns[self._distance_column])
        elif all(c in columns for c in COORD_COLUMNS):
            meta["distance"] = great_circle_km(*(to_float(columns[c]) for c in COORD_COLUMNS))
        if "station_code" in columns:
            meta["station"] = np.asarray(self._station_ids(columns, n), dtype=object)
        if "split" in columns:
            meta["split"] = np.asarray(columns["split"], dtype=object)
        return meta

    def _station_ids(self, columns: dict[str, list[str]], n: int) -> list[str]:
        """``NET.STA``, or the SEED id ``NET.STA.LOC.CHA`` of the channel read (``station_channels``, e.g.
        HH, plus the vertical's letter) where the file gives the channels: what SKHASH matches on."""
        nets = columns.get("station_network_code", [""] * n)
        channels = columns.get("station_channels", [""] * n)
        locations = columns.get("station_location_code", [""] * n)
        letter = "Z" if "Z" in self.components else self.components[0]
        out = []
        for net, sta, loc, cha in zip(nets, columns["station_code"], locations, channels):
            net, sta, loc, cha = (str(v).strip() for v in (net, sta, loc, cha))
            loc = "" if loc.lower() in MISSING_WORDS else loc
            if cha and cha.lower() not in MISSING_WORDS:
                out.append(f"{net}.{sta}.{loc}.{cha[:2]}{letter}")
            else:
                out.append(f"{net}.{sta}" if net else sta)
        return out

    def _event_ids(self, columns: dict[str, list[str]], n: int) -> np.ndarray | None:
        """Event id per row: the event column, else origin time + epicentre; a row without one gets
        a unique ``row<i>`` so that it never merges into one giant event."""
        if self._event_column:
            values = [v.strip() for v in columns[self._event_column]]
        elif "source_origin_time" in columns:
            lat = columns.get("source_latitude_deg", [""] * n)
            lon = columns.get("source_longitude_deg", [""] * n)
            values = [f"{t.strip()}@{a.strip()},{b.strip()}" if t.strip() else ""
                      for t, a, b in zip(columns["source_origin_time"], lat, lon)]
        else:
            return None
        return np.asarray([v if v and v.lower() not in MISSING_WORDS else f"row{i}" for i, v in enumerate(values)],
                          dtype=object)

    def _select_rows(self, bad: BadRows, labels: np.ndarray, p_index: np.ndarray,
                     metadata: dict[str, np.ndarray]) -> None:
        """Keep the good rows: ``self.table``, ``self.source_rows`` (row of metadata.csv of each
        table row) and ``self.skipped``."""
        self.skipped = bad.skipped
        keep = bad.kept_rows()
        self.source_rows = keep
        self._address = self._address.select(keep)
        self.table = TraceTable(
            labels=labels[keep], p_index=p_index[keep], trace_length=self._address.length.copy(),
            sampling_rate=self.sampling_rate, num_channels=len(self._channels),
            metadata={k: v[keep] for k, v in metadata.items()}, has_pick=True,
            label_map=dict(self.label_map))
        log.info("%s: %d traces (%s preset, components %s of %s, %s Hz)%s", self.path, len(keep), self.preset,
                 "".join(self.components), self.component_order, self.sampling_rate,
                 f", skipped {self.skipped}" if self.skipped else "")

    # -- reading ----------------------------------------------------------------------------------
    def _dataset(self, block_id: int):
        cache = self._process_cache("blocks")
        ds = cache.get(block_id)
        if ds is None:
            ds = self._h5(self.waveforms_path)["data"][self._address.block_names[block_id]]
            cache[block_id] = ds
        return ds

    def read_windows(self, rows: np.ndarray, start: np.ndarray, length: int) -> np.ndarray:
        """Windows ``(len(rows), C, length)`` float32; samples outside the trace are zero.

        Reads only each window (``block[i, channels, a:b]``), in (block, row) order; consecutive
        rows of a block whose windows overlap are read as one small hyperslab.
        """
        rows, start = window_request(rows, start)
        length = int(length)
        out = np.zeros((len(rows), len(self._channels), length), dtype=np.float32)
        if len(rows) == 0:
            return out
        a = np.maximum(start, 0)  # the samples of each window inside its trace: a .. b - 1
        b = np.minimum(start + length, self._address.length[rows])
        for run, lo, hi in self._read_runs(rows, a, b, length):
            chunk = self._read_run(rows[run[0]], len(run), lo, hi)
            for m, q in enumerate(run):
                out[q, :, a[q] - start[q]: b[q] - start[q]] = chunk[m, :, a[q] - lo: b[q] - lo]
        return out

    def _read_runs(self, rows: np.ndarray, a: np.ndarray, b: np.ndarray, length: int):
        """Yield ``(positions, lo, hi)``: runs of requests, in (block, row, start) order, that are
        consecutive rows of one block with the same channel and sample offsets and windows within
        ``2 * length`` samples of each other; ``lo:hi`` spans their windows."""
        address = self._address
        blocks, index = address.block[rows], address.row[rows]
        c0, w0 = address.channel_start[rows], address.sample_start[rows]
        valid = np.flatnonzero(b > a)
        order = valid[np.lexsort((a[valid], index[valid], blocks[valid]))]
        k, n = 0, len(order)
        while k < n:
            first = order[k]
            lo, hi = a[first], b[first]
            j = k + 1
            while (j < n and index[first] >= 0 and blocks[order[j]] == blocks[first]
                   and index[order[j]] == index[order[j - 1]] + 1
                   and c0[order[j]] == c0[first] and w0[order[j]] == w0[first]
                   and max(hi, b[order[j]]) - min(lo, a[order[j]]) <= 2 * length):
                lo, hi = min(lo, a[order[j]]), max(hi, b[order[j]])
                j += 1
            yield order[k:j], int(lo), int(hi)
            k = j

    def _read_run(self, table_row: int, count: int, lo: int, hi: int) -> np.ndarray:
        """Samples ``lo:hi`` of the requested channels of ``count`` consecutive traces of one block,
        starting at ``table_row``'s: float32 ``(count, C, hi - lo)``."""
        address = self._address
        lo_ch, hi_ch = min(self._channels), max(self._channels) + 1
        ds = self._dataset(int(address.block[table_row]))
        c_lo, c_hi = int(address.channel_start[table_row]) + lo_ch, int(address.channel_start[table_row]) + hi_ch
        s_lo, s_hi = int(address.sample_start[table_row] + lo), int(address.sample_start[table_row] + hi)
        i0 = int(address.row[table_row])
        if self.dimension_order == "CW":
            chunk = ds[i0:i0 + count, c_lo:c_hi, s_lo:s_hi] if i0 >= 0 else ds[c_lo:c_hi, s_lo:s_hi][None]
        else:
            chunk = (ds[i0:i0 + count, s_lo:s_hi, c_lo:c_hi].transpose(0, 2, 1) if i0 >= 0
                     else ds[s_lo:s_hi, c_lo:c_hi].T[None])
        return np.asarray(chunk, dtype=np.float32)[:, [c - lo_ch for c in self._channels], :]

    def describe(self) -> str:
        return (f"SeisBench {self.preset}: {len(self.table)} traces, components {''.join(self.components)} of "
                f"{self.component_order}, labels from {self.label_column!r}, P from {self.p_column!r}, "
                f"label_map {label_map_to_json(self.label_map)}")
