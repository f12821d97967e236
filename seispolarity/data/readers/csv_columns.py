"""Reading a metadata CSV by column: what the SeisBench and DiTing readers share.

The CSVs are read with the ``csv`` module (fields may be quoted and hold commas, as SeisBench's
``trace_name`` does), only the columns a reader asks for, as lists of strings; numbers are parsed
afterwards with :func:`to_float`, so a bad cell becomes NaN and the reader decides what to do
with its row (see :class:`~seispolarity.data.readers.bad_rows.BadRows`).
"""
from __future__ import annotations

import csv
import difflib
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from ..labels import UNKNOWN, LabelError, apply_label_map
from .bad_rows import BadRows
from .base import DataFormatError

__all__ = ["read_csv_header", "read_csv_columns", "pick_column", "missing_column_error", "to_float",
           "label_column_codes"]


def read_csv_header(path: str) -> list[str]:
    """The column names of a CSV (its first line, stripped); a DataFormatError when it has none."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        header = [h.strip() for h in next(csv.reader(fh), [])]
    if not header:
        raise DataFormatError(f"{path}: empty file; expected a CSV header")
    return header


def read_csv_columns(path: str, wanted: Iterable[str]) -> tuple[list[str], dict[str, list[str]], int]:
    """Read the named columns of a CSV (quoted fields allowed) as lists of strings.

    Returns ``(header, columns, n_rows)``; columns absent from the header are left out, blank
    lines are skipped and short records are padded with empty cells.
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
    columns: dict[str, list[str]] = {name: [] for name in names}
    if records:
        for name, values in zip(names, zip(*records)):
            columns[name] = list(values)
    return header, columns, len(records)


def pick_column(header: Sequence[str], candidates: str | Sequence[str] | None) -> str | None:
    """The first of ``candidates`` (one name or several, in order of preference) in ``header``."""
    if candidates is None:
        return None
    if isinstance(candidates, str):
        candidates = (candidates,)
    for name in candidates:
        if name in header:
            return name
    return None


def missing_column_error(path: str, column: str, header: Sequence[str], what: str,
                         option: str | None = None) -> DataFormatError:
    """The error for a required column that the header lacks, with the closest names as a hint and
    the reader option (``label_column``, ...) that names another column, where there is one."""
    close = difflib.get_close_matches(column, header, n=3, cutoff=0.6)
    hint = f"; similar: {close}" if close else ""
    fix = f" (set data.{option}=<column>, {option}= in Python, to use another)" if option else ""
    return DataFormatError(f"{path}: no column {column!r} ({what}){hint}; {len(header)} columns in the header{fix}")


def to_float(values: Sequence[str]) -> np.ndarray:
    """Cells as float64; a cell that is not a number is NaN."""
    out = np.full(len(values), np.nan, dtype=np.float64)
    for i, v in enumerate(values):
        try:
            out[i] = float(v)
        except (TypeError, ValueError):
            pass
    return out


def label_column_codes(words: Sequence[str], label_map: Mapping[str, int], column: str, bad: BadRows,
                       where: Callable[[int], str] = lambda row: "",
                       which: Callable[[int], str] = lambda row: "") -> np.ndarray:
    """Codes of a column of label words: compared case-insensitively, an empty / ``nan`` / ``none``
    cell is unknown, ``"*"`` catches the rest; a word outside the map is a bad row
    (``unknown_label``, a LabelError naming ``where(row)`` (file) and ``which(row)`` (trace))."""
    codes = apply_label_map(words, label_map, default=-1, ignore_case=True, missing_code=UNKNOWN)
    bad.flag("unknown_label", codes < 0,
             lambda r: f"{where(r)}label {words[r]!r} in column {column!r}{which(r)} is not in label_map "
                       f"{dict(label_map)}; add it to data.label_map (label_map= in Python; 0 up, 1 down, "
                       f"2 unknown; '*' for any other)",
             error_cls=LabelError)
    return codes
