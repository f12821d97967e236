"""Layout readers by name. ``make_reader("scsn", path)`` returns a Reader whose ``.table`` is ready.

Modules: ``base`` (the Reader interface, TraceTable, shared steps), one module per layout
(``flat``, ``seisbench``, ``diting``), and the pieces they share: ``csv_columns`` (metadata CSVs
read by column), ``bad_rows`` (error-or-skip per row), ``hdf5_rows`` (windows from a dataset of
traces stored one per row). Adding a reader: docs/architecture.md.
"""
from __future__ import annotations

from functools import partial
from typing import Any, Callable

from .base import DataFormatError, Reader, TraceTable
from .diting import DiTingReader
from .flat import FlatReader
from .hdf5_rows import read_row_windows
from .seisbench import SeisBenchReader

#: name (lower case) -> callable(path, **options) -> Reader
READERS: dict[str, Callable[..., Reader]] = {
    "flat": partial(FlatReader, preset="flat"),
    "synthetic": partial(FlatReader, preset="synthetic"),
    "scsn": partial(FlatReader, preset="scsn"),
    "instance": partial(SeisBenchReader, preset="instance"),
    "pnw": partial(SeisBenchReader, preset="pnw"),
    "txed": partial(SeisBenchReader, preset="txed"),
    "seisbench": partial(SeisBenchReader, preset="seisbench"),
    "diting": DiTingReader,
}


def make_reader(name: str, path, **options: Any) -> Reader:
    key = str(name).lower()
    if key not in READERS:
        raise ValueError(f"unknown data set name {name!r}; choose one of {sorted(READERS)}")
    return READERS[key](path, **options)


__all__ = ["READERS", "make_reader", "Reader", "TraceTable", "DataFormatError", "FlatReader", "SeisBenchReader",
           "DiTingReader", "read_row_windows"]
