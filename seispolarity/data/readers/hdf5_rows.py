"""Windows from an HDF5 dataset of traces stored one per row, ``(N, L)`` or ``(N, C, L)``.

The flat / SCSN layout keeps every trace in one such dataset (``X``). Reading a batch one trace
at a time costs one HDF5 call per trace; :func:`read_row_windows` instead plans the reads:

1. sort the rows and cut them into *pieces*, runs of nearby rows (gaps up to ``max_gap`` rows are
   read through) that are each one contiguous hyperslab below ``max_block_bytes``;
2. group consecutive pieces into *reads*, each one HDF5 call on the union of its pieces'
   hyperslabs over the columns their windows span (below ``max_block_bytes`` and 256 pieces:
   HDF5 merges a union of hyperslabs in time quadratic in their number);
3. take each window out of its read's block in numpy, zero outside the trace.

A shuffled batch of blocks (or a preload) is thus one read instead of one read per trace.
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["read_row_windows"]

MAX_PIECES_PER_READ = 256


def read_row_windows(dataset: Any, rows: np.ndarray, start: np.ndarray, length: int,
                     channels: list[int] | None = None, max_gap: int = 32,
                     max_block_bytes: int = 64 << 20) -> np.ndarray:
    """One window per row of ``dataset``: float32 ``(len(rows), channels, length)``.

    Args:
        dataset: an h5py Dataset (or any array-like) shaped ``(N, L)`` or ``(N, C, L)``.
        rows: the rows to read, any order, repeats allowed.
        start: each window's first sample; it may be negative or run past the trace (zeros there).
        length: samples per window.
        channels: channels to return of a 3-D dataset (default: all).
    """
    rows = np.asarray(rows, dtype=np.int64)
    start = np.asarray(start, dtype=np.int64)
    three_d = dataset.ndim == 3
    file_channels = int(dataset.shape[1]) if three_d else 1
    num_out = len(channels) if (three_d and channels is not None) else file_channels
    out = np.zeros((len(rows), num_out, length), dtype=np.float32)
    if len(rows) == 0:
        return out
    order = np.argsort(rows, kind="stable")
    srows, sstart = rows[order], start[order]
    row_bytes = max(1, file_channels * int(dataset.shape[-1]) * 4)
    pieces = _row_pieces(srows, max_gap, max(1, max_block_bytes // row_bytes))
    for group in _read_groups(srows, pieces, row_bytes, max_block_bytes):
        i0, i1 = group[0][0], group[-1][1]
        windows = _group_windows(dataset, srows, sstart, group, length, three_d, file_channels, channels)
        if windows is not None:
            out[order[i0:i1]] = windows
    return out


def _row_pieces(srows: np.ndarray, max_gap: int, max_rows: int) -> list[tuple[int, int]]:
    """Runs ``(i, j)`` of sorted rows: ``srows[i:j]`` lie in one contiguous hyperslab of rows
    ``srows[i] .. srows[j - 1]``, with gaps of at most ``max_gap`` rows and spanning fewer than
    ``max_rows`` rows."""
    breaks = np.flatnonzero(np.diff(srows) > max_gap) + 1
    bounds = np.concatenate([[0], breaks, [len(srows)]])
    pieces = []
    for b0, b1 in zip(bounds[:-1], bounds[1:]):
        i = int(b0)
        while i < b1:
            j = min(int(b1), int(np.searchsorted(srows, srows[i] + max_rows, side="left")))
            pieces.append((i, j))
            i = j
    return pieces


def _read_groups(srows: np.ndarray, pieces: list[tuple[int, int]], row_bytes: int,
                 max_block_bytes: int) -> list[list[tuple[int, int]]]:
    """Consecutive pieces read together: each group's rows below ``max_block_bytes``, at most
    ``MAX_PIECES_PER_READ`` pieces (a group always holds at least one piece)."""
    groups, current, nrows = [], [], 0
    for i, j in pieces:
        span = int(srows[j - 1] - srows[i]) + 1
        if current and ((nrows + span) * row_bytes > max_block_bytes or len(current) >= MAX_PIECES_PER_READ):
            groups.append(current)
            current, nrows = [], 0
        current.append((i, j))
        nrows += span
    if current:
        groups.append(current)
    return groups


def _group_windows(dataset: Any, srows: np.ndarray, sstart: np.ndarray, group: list[tuple[int, int]],
                   length: int, three_d: bool, file_channels: int, channels: list[int] | None) -> np.ndarray | None:
    """The windows of one read group, ``(rows of the group, C, length)``; None when none of them
    overlaps the trace (they stay zero)."""
    i0, i1 = group[0][0], group[-1][1]
    trace_len = int(dataset.shape[-1])
    first = max(0, int(sstart[i0:i1].min()))
    last = min(trace_len, int(sstart[i0:i1].max()) + length)
    if last <= first:
        return None
    nrows = sum(int(srows[j - 1] - srows[i]) + 1 for i, j in group)
    block = _read_union(dataset, srows, group, first, last, nrows, three_d, file_channels)
    if channels is not None and three_d:
        block = block[:, channels, :]
    # The block's row of each window: the rows of earlier pieces come first.
    offsets = np.zeros(i1 - i0, dtype=np.int64)
    base = 0
    for i, j in group:
        offsets[i - i0:j - i0] = base - srows[i]
        base += int(srows[j - 1] - srows[i]) + 1
    block_row = srows[i0:i1] + offsets
    rel = sstart[i0:i1] - first
    pad_lo = max(0, -int(rel.min()))
    pad_hi = max(0, int(rel.max()) + length - (last - first))
    if pad_lo or pad_hi:  # samples outside the trace are zero
        block = np.pad(block, ((0, 0), (0, 0), (pad_lo, pad_hi)))
    windows = np.lib.stride_tricks.sliding_window_view(block, length, axis=2)
    return windows[block_row, :, rel + pad_lo]


def _read_union(dataset: Any, srows: np.ndarray, pieces: list[tuple[int, int]], first: int, last: int, nrows: int,
                three_d: bool, file_channels: int) -> np.ndarray:
    """Rows ``srows[i] .. srows[j - 1]`` of every piece ``(i, j)``, columns ``first:last``, stacked in
    file order as float32 ``(nrows, channels, last - first)``: one H5Dread of the union of hyperslabs."""
    spans = [(int(srows[i]), int(srows[j - 1]) + 1) for i, j in pieces]
    if hasattr(dataset, "id") and hasattr(dataset.id, "get_space"):  # an h5py Dataset
        from h5py import h5s

        fspace = dataset.id.get_space()
        fspace.select_none()
        for lo, hi in spans:
            if three_d:
                fspace.select_hyperslab((lo, 0, first), (hi - lo, file_channels, last - first), op=h5s.SELECT_OR)
            else:
                fspace.select_hyperslab((lo, first), (hi - lo, last - first), op=h5s.SELECT_OR)
        shape = (nrows, file_channels, last - first) if three_d else (nrows, last - first)
        block = np.empty(shape, dtype=np.float32)
        dataset.id.read(h5s.create_simple(block.shape), fspace, block)  # HDF5 converts to float32
    else:  # any array-like
        parts = [np.asarray(dataset[lo:hi, :, first:last] if three_d else dataset[lo:hi, first:last], dtype=np.float32)
                 for lo, hi in spans]
        block = np.concatenate(parts) if len(parts) > 1 else parts[0]
    return block if three_d else block[:, None, :]
