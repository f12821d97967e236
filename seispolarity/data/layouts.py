"""Write small files in the real on-disk layouts (SeisBench, DiTing, SCSN).

For tests and for users' smoke tests: a handful of traces with known content in exactly the
layout a reader expects, so a reader, a label map or a training run can be checked without the
real (tens of GB) data sets. The layouts follow the real files (see docs/data.md section 1):

- SeisBench (INSTANCE, PNW, TXED): ``metadata.csv`` + ``waveforms.hdf5``; traces packed into
  buckets ``data/bucket<k>`` of shape (n, C, L) ("CW" per trace), ``trace_name`` =
  ``bucket<k>$<i>,:<C>,:<L>`` (quoted in the CSV because it holds commas), and a ``data_format``
  group with ``component_order``, ``dimension_order`` and ``sampling_rate`` datasets, as
  SeisBench's ``WaveformDataWriter`` writes them.
- DiTing: ``DiTing330km_part_<p>.hdf5`` files with ``earthquake/<key>`` datasets of shape
  (n, 3), Z first, 50 Hz; keys zero-padded ``000014.0100``; one CSV whose ``key`` column is
  written the way the real CSV has it (a float: ``14.01``, trailing zeros lost).
- SCSN (Ross et al. 2018): one HDF5 with ``X`` (N, 600) float32, ``Y`` (or ``fm``), ``dist``,
  ``evids``, ``mag``, ``snr``, ``sncls`` (bytes ``NET.STA.CHA``).
"""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

__all__ = ["write_seisbench", "write_diting", "write_scsn", "diting_hdf5_key"]


def _as_traces(waveforms: Any) -> list[np.ndarray]:
    """One array per trace, from an (N, ...) array or any sequence of arrays."""
    return [np.asarray(w) for w in waveforms]


def _write_csv(path: Path, rows: Sequence[Mapping[str, Any]], extra_columns: Iterable[str] = (),
               **cells: Any) -> None:
    """Write ``rows`` as a CSV whose columns are every key of every row (first-seen order), then
    ``extra_columns``; a missing or None cell is empty. ``cells`` (column -> callable(row) -> text)
    overrides how a column is written."""
    columns: list[str] = []
    for key in [k for row in rows for k in row] + list(extra_columns):
        if key not in columns:
            columns.append(key)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, quoting=csv.QUOTE_MINIMAL)
        writer.writeheader()
        for row in rows:
            out = {k: ("" if row.get(k) is None else row.get(k, "")) for k in columns}
            out.update({k: write(row) for k, write in cells.items()})
            writer.writerow(out)


def write_seisbench(folder: str | os.PathLike, waveforms: Any, metadata_rows: Sequence[Mapping[str, Any]],
                    component_order: str = "ZNE", sampling_rate: float | None = 100.0,
                    bucket_size: int = 1024, dimension_order: str = "CW", write_data_format: bool = True,
                    dtype: Any = np.float32, extra_columns: Iterable[str] = ()) -> tuple[Path, Path]:
    """Write a SeisBench-format folder; return ``(metadata.csv, waveforms.hdf5)`` paths.

    Args:
        waveforms: N traces, each (C, L_i) ("CW"); traces of different lengths are zero-padded
            inside their bucket, and the trace name's slice (``:L_i``) says the real length.
        metadata_rows: N dicts of metadata columns (e.g. ``trace_P_arrival_sample``,
            ``trace_polarity``, ``source_id``). A ``trace_name`` given here is kept as
            ``trace_name_original`` and replaced by the bucket address, as SeisBench does.
        bucket_size: traces per bucket (``bucket0`` holds the first ``bucket_size`` ...).
        dimension_order: "CW" (SeisBench's default) or "WC" (then buckets are (n, L, C) and the
            trace name's slices follow that order).
        write_data_format: False writes no ``data_format`` group (readers fall back to presets).
    """
    import h5py

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    traces = _as_traces(waveforms)
    if len(traces) != len(metadata_rows):
        raise ValueError(f"{len(traces)} waveforms but {len(metadata_rows)} metadata rows")
    if dimension_order not in ("CW", "WC"):
        raise ValueError(f"dimension_order={dimension_order!r}; expected 'CW' or 'WC'")
    rows = [dict(r) for r in metadata_rows]
    meta_path, wave_path = folder / "metadata.csv", folder / "waveforms.hdf5"
    with h5py.File(wave_path, "w") as f:
        _write_buckets(f.create_group("data"), traces, rows, max(1, int(bucket_size)), dimension_order, dtype)
        if write_data_format:
            fmt = f.create_group("data_format")
            fmt.create_dataset("component_order", data=component_order)
            fmt.create_dataset("dimension_order", data=dimension_order)
            if sampling_rate is not None:
                fmt.create_dataset("sampling_rate", data=float(sampling_rate))
            fmt.create_dataset("measurement", data="velocity")
            fmt.create_dataset("unit", data="counts")
            fmt.create_dataset("instrument_response", data="not restituted")
    _write_csv(meta_path, rows, extra_columns)
    return meta_path, wave_path


def _write_buckets(data, traces: list[np.ndarray], rows: list[dict[str, Any]], bucket_size: int,
                   dimension_order: str, dtype: Any) -> None:
    """Traces into ``data/bucket<k>`` blocks, zero-padded to the longest; each row gets its
    ``trace_name`` (``bucket<k>$<i>,:<C>,:<L>``, slices in ``dimension_order``)."""
    for b, first in enumerate(range(0, len(traces), bucket_size)):
        chunk = traces[first:first + bucket_size]
        block = np.zeros((len(chunk), max(t.shape[0] for t in chunk), max(t.shape[1] for t in chunk)), dtype=dtype)
        for i, t in enumerate(chunk):
            block[i, : t.shape[0], : t.shape[1]] = t
            row = rows[first + i]
            if "trace_name" in row:
                row["trace_name_original"] = row.pop("trace_name")
            dims = t.shape if dimension_order == "CW" else t.shape[::-1]
            row["trace_name"] = f"bucket{b}${i},:{dims[0]},:{dims[1]}"
        if dimension_order == "WC":
            block = np.ascontiguousarray(block.transpose(0, 2, 1))
        data.create_dataset(f"bucket{b}", data=block)


def diting_hdf5_key(key: Any) -> str:
    """The HDF5 dataset name of a DiTing CSV key: ``"14.01"`` -> ``"000014.0100"``.

    The real CSV stores keys as floats (the event part loses its leading zeros, the trace part
    its trailing zeros); the HDF5 names are ``<6-digit event>.<4-digit trace>``. Idempotent on
    names already in that form.
    """
    text = str(key).strip()
    if "." not in text:
        return text
    head, tail = text.split(".", 1)
    if not (head.isdigit() and tail.isdigit()) or len(tail) > 4:
        return text
    return head.rjust(6, "0") + "." + tail.ljust(4, "0")


def write_diting(folder: str | os.PathLike, waveforms: Any, rows: Sequence[Mapping[str, Any]],
                 csv_name: str = "DiTing330km_total.csv", csv_key_format: str = "float",
                 hdf5_pattern: str = "DiTing330km_part_{part}.hdf5", dtype: Any = np.float32,
                 part: int | None = None) -> Path:
    """Write DiTing-layout files into ``folder``; return the CSV path.

    Args:
        waveforms: N traces, each (n_i, 3) at 50 Hz with Z first (DiTing's layout).
        rows: N dicts with at least ``part``, ``key`` (the HDF5 name, e.g. ``"000014.0100"``),
            ``p_pick`` (50 Hz sample), ``p_motion``, ``p_clarity``; further columns (``ev_id``,
            ``evmag``, ``dis``, ``net``, ``sta_id``, ``Z_P_amplitude_snr`` ...) are written as given.
        csv_key_format: "float" writes the key as the real CSV has it (``14.01``); "exact" writes
            the HDF5 name unchanged.
        part: the part of rows without a ``part`` entry (for per-part CSVs
            ``DiTing330km_part_<p>.csv``, which then have no ``part`` column).
    """
    import h5py

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    traces = _as_traces(waveforms)
    if len(traces) != len(rows):
        raise ValueError(f"{len(traces)} waveforms but {len(rows)} rows")
    by_part: dict[int, list[int]] = {}
    for i, row in enumerate(rows):
        by_part.setdefault(int(row["part"] if "part" in row else part), []).append(i)
    for part, idx in by_part.items():
        with h5py.File(folder / hdf5_pattern.format(part=part), "a") as f:
            group = f.require_group("earthquake")
            for i in idx:
                name = diting_hdf5_key(rows[i]["key"])
                if name in group:
                    del group[name]
                group.create_dataset(name, data=np.asarray(traces[i], dtype=dtype))
    csv_path = folder / csv_name
    if csv_key_format == "float":
        _write_csv(csv_path, rows, key=lambda row: repr(float(diting_hdf5_key(row["key"]))))
    else:
        _write_csv(csv_path, rows)
    return csv_path


def write_scsn(path: str | os.PathLike, X: np.ndarray, Y: np.ndarray, dist: np.ndarray | None = None,
               evids: np.ndarray | None = None, mag: np.ndarray | None = None, snr: np.ndarray | None = None,
               sncls: Sequence[bytes | str] | None = None, label_key: str = "Y") -> Path:
    """Write an SCSN (Ross et al. 2018) style file: ``X`` (N, 600) float32 with P at 300, labels
    under ``label_key`` ("Y" for the polarity files, "fm" for the pick files), and the per-trace
    ``dist``, ``evids``, ``mag``, ``snr``, ``sncls`` (defaults: plausible placeholders)."""
    import h5py

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    X = np.asarray(X, dtype=np.float32)
    n = len(X)
    if sncls is None:
        sncls = [f"CI.S{i % 100:03d}.HHZ" for i in range(n)]
    sncls_b = np.array([s if isinstance(s, bytes) else str(s).encode("ascii") for s in sncls])
    with h5py.File(path, "w") as f:
        f.create_dataset("X", data=X)
        f.create_dataset(label_key, data=np.asarray(Y).astype(np.int64))
        f.create_dataset("dist", data=np.asarray(dist if dist is not None else np.full(n, 50.0), dtype=np.float64))
        f.create_dataset("evids", data=np.asarray(evids if evids is not None else np.arange(n) // 3, dtype=np.int64))
        f.create_dataset("mag", data=np.asarray(mag if mag is not None else np.full(n, 2.0), dtype=np.float64))
        f.create_dataset("snr", data=np.asarray(snr if snr is not None else np.full(n, 20.0), dtype=np.float64))
        f.create_dataset("sncls", data=sncls_b)
    return path
