"""Rows a reader cannot use: raise on the first one, or drop them and say how many and why.

Every reader checks its index row by row (trace address, P pick, label word ...). With
``on_bad_row="error"`` (the default) the first bad row raises, naming the file, the row and the
value; with ``on_bad_row="skip"`` bad rows are dropped, counted by reason in ``skipped`` (the
reader's ``.skipped``, which ``WaveformDataset.dropped`` starts from) and logged once per reason.
"""
from __future__ import annotations

import logging
from typing import Callable

import numpy as np

from .base import DataFormatError

log = logging.getLogger(__name__)

ON_BAD_ROW = ("error", "skip")
#: How to skip bad rows, in the runner's and predict's words and in Python's.
SKIP_HINT = "set data.on_bad_row=skip (on_bad_row='skip' in Python)"


class BadRows:
    """Collects per-row problems of a table of ``n`` rows; ``keep`` marks the rows still usable.

    Args:
        n: rows in the index.
        source: the file named in messages.
        on_bad_row: "error" or "skip".
        hint: the advice that ends an error message.
        name_row: start each error message with ``row <i>: `` (off when the description
            already names the row).
    """

    def __init__(self, n: int, source: str, on_bad_row: str,
                 hint: str = f"fix the file or {SKIP_HINT}", name_row: bool = True) -> None:
        if on_bad_row not in ON_BAD_ROW:
            raise ValueError(f"on_bad_row={on_bad_row!r}; expected 'error' or 'skip'")
        self.n, self.source, self.mode = n, source, on_bad_row
        self.hint, self.name_row = hint, name_row
        self.keep = np.ones(n, dtype=bool)
        self.skipped: dict[str, int] = {}

    def flag(self, reason: str, mask: np.ndarray, describe: Callable[[int], str],
             error_cls: type[Exception] = DataFormatError, value: Callable[[int], str] | None = None) -> None:
        """Rows in ``mask`` (still kept) are bad for ``reason``.

        ``describe(row) -> str`` explains one offending row and ``value(row)`` (default:
        ``describe``) is what the skip log shows of it; both are called for the first row only.
        """
        mask = np.asarray(mask, dtype=bool) & self.keep
        if not mask.any():
            return
        row = int(np.flatnonzero(mask)[0])
        if self.mode == "error":
            where = f"row {row}: " if self.name_row else ""
            raise error_cls(f"{self.source}: {where}{describe(row)}; {self.hint}")
        count = int(mask.sum())
        self.skipped[reason] = self.skipped.get(reason, 0) + count
        self.keep &= ~mask
        log.warning("%s: skipped %d rows (%s), first at row %d: %s", self.source, count, reason, row,
                    (value or describe)(row))

    def kept_rows(self) -> np.ndarray:
        """The rows left; a DataFormatError when every row was skipped."""
        keep = np.flatnonzero(self.keep)
        if len(keep) == 0:
            raise DataFormatError(f"{self.source}: every row was skipped ({self.skipped})")
        return keep
