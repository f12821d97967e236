"""What every on-disk layout reader provides to ``WaveformDataset``.

A reader knows one layout (flat / SCSN, SeisBench, DiTing). On construction it reads only the
small per-trace tables (labels, P positions, metadata), never the waveforms. ``read_windows``
then reads just the requested windows around P, straight from disk. HDF5 handles are opened
lazily and re-opened after a fork, so a reader can be pickled into DataLoader workers.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class DataFormatError(ValueError):
    """A file that does not match its layout: names the file, key or row and what was expected."""


@dataclass
class TraceTable:
    """The per-trace facts a reader knows before reading any waveform.

    Attributes:
        labels: (N,) int64 codes 0 up / 1 down / 2 unknown, already mapped.
        p_index: (N,) int64, P sample in the trace at ``sampling_rate``.
        trace_length: (N,) int64, trace length in samples at ``sampling_rate``.
        sampling_rate: Hz of what ``read_windows`` returns.
        num_channels: channels ``read_windows`` returns (after component selection).
        metadata: (N,) arrays: ``event_id`` (for grouped splits), ``snr``, ``magnitude``,
            ``distance``, ``clarity`` (int codes, see labels.CLARITY_CODES), ``station`` ... as present.
        has_pick: whether P positions are real per-trace picks (a P-pick mask can be learnt)
            rather than a fixed index of the layout.
        label_map: the map that produced ``labels`` (stored in checkpoints for reproducibility).
    """

    labels: np.ndarray
    p_index: np.ndarray
    trace_length: np.ndarray
    sampling_rate: float
    num_channels: int
    metadata: dict[str, np.ndarray] = field(default_factory=dict)
    has_pick: bool = False
    label_map: dict[str, int] | None = None

    def __len__(self) -> int:
        return int(len(self.labels))

    def select(self, rows: np.ndarray) -> "TraceTable":
        """The table restricted to ``rows`` (used for filters)."""
        return TraceTable(
            labels=self.labels[rows], p_index=self.p_index[rows], trace_length=self.trace_length[rows],
            sampling_rate=self.sampling_rate, num_channels=self.num_channels,
            metadata={k: v[rows] for k, v in self.metadata.items()}, has_pick=self.has_pick,
            label_map=self.label_map)


class Reader:
    """Base class of the layout readers. Subclasses set ``self.table`` in ``__init__``."""

    #: The preset name(s) handled, e.g. ("scsn",).
    names: tuple[str, ...] = ()
    table: TraceTable

    def __init__(self, path: str | os.PathLike, **options: Any) -> None:
        self.path = os.fspath(path)
        if not os.path.exists(self.path):
            raise FileNotFoundError(f"{self.path}: no such file or directory")
        self._handles: dict[str, Any] = {}
        self._pid = os.getpid()

    # -- lazy HDF5 handles, safe across fork ---------------------------------------------------
    def _h5(self, path: str | None = None):
        import h5py

        path = path or self.path
        if self._pid != os.getpid():
            self._handles = {}
            self._pid = os.getpid()
        handle = self._handles.get(path)
        if handle is None:
            try:
                handle = h5py.File(path, "r")
            except OSError as exc:
                raise DataFormatError(f"{path}: cannot open as HDF5 ({exc})") from None
            self._handles[path] = handle
        return handle

    def close(self) -> None:
        for handle in self._handles.values():
            try:
                handle.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass
        self._handles = {}

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_handles"] = {}
        return state

    def __del__(self) -> None:  # pragma: no cover - interpreter shutdown order varies
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass

    # -- the one method the dataset calls -------------------------------------------------------
    def read_windows(self, rows: np.ndarray, start: np.ndarray, length: int) -> np.ndarray:
        """Return float32 ``(len(rows), num_channels, length)``.

        ``rows`` index ``self.table`` (any order); ``start`` is each window's first sample at
        ``sampling_rate`` and may be negative or run past the trace end: those samples are zero.
        """
        raise NotImplementedError


def read_row_windows(dataset, rows: np.ndarray, start: np.ndarray, length: int,
                     channels: list[int] | None = None, max_gap: int = 32,
                     max_block_bytes: int = 64 << 20) -> np.ndarray:
    """Read one window per row from an HDF5 dataset shaped ``(N, L)`` or ``(N, C, L)``.

    Rows are sorted and grouped into runs of nearby rows (one contiguous hyperslab each); the runs
    are read together, in one HDF5 call on the union of their hyperslabs over the columns their
    windows span (each call below ``max_block_bytes``), then windows are taken in numpy. A
    shuffled batch of blocks (or a preload) is thus one read instead of one read per trace or per
    block. Samples outside the trace are zero.
    """
    rows = np.asarray(rows, dtype=np.int64)
    start = np.asarray(start, dtype=np.int64)
    n = len(rows)
    three_d = dataset.ndim == 3
    trace_len = int(dataset.shape[-1])
    if three_d:
        num_out = len(channels) if channels is not None else int(dataset.shape[1])
    else:
        num_out = 1
    out = np.zeros((n, num_out, length), dtype=np.float32)
    if n == 0:
        return out
    order = np.argsort(rows, kind="stable")
    srows = rows[order]
    sstart = start[order]
    # Runs of nearby rows (gaps up to max_gap are read through), none spanning max_rows rows or more.
    file_channels = int(dataset.shape[1]) if three_d else 1
    row_bytes = max(1, file_channels * trace_len * 4)
    max_rows = max(1, max_block_bytes // row_bytes)
    breaks = np.flatnonzero(np.diff(srows) > max_gap) + 1
    bounds = np.concatenate([[0], breaks, [n]])
    pieces = []  # (i, j): srows[i:j] is one contiguous hyperslab of rows srows[i] .. srows[j - 1]
    for b0, b1 in zip(bounds[:-1], bounds[1:]):
        i = int(b0)
        while i < b1:
            j = min(int(b1), int(np.searchsorted(srows, srows[i] + max_rows, side="left")))
            pieces.append((i, j))
            i = j
    # Reads: consecutive pieces together (one HDF5 call with the union of their hyperslabs, over
    # the columns they span), each below max_block_bytes and of at most 256 pieces (HDF5 merges a
    # union of hyperslabs in time quadratic in their number: a shuffled batch of blocks has ~16).
    p = 0
    while p < len(pieces):
        q, nrows = p, 0
        while q < len(pieces):
            span = int(srows[pieces[q][1] - 1] - srows[pieces[q][0]]) + 1
            if q > p and ((nrows + span) * row_bytes > max_block_bytes or q - p >= 256):
                break
            nrows += span
            q += 1
        i0, i1 = pieces[p][0], pieces[q - 1][1]
        first = max(0, int(sstart[i0:i1].min()))
        last = min(trace_len, int(sstart[i0:i1].max()) + length)
        if last > first:
            block = _read_union(dataset, srows, pieces[p:q], first, last, nrows, three_d, file_channels)
            if channels is not None and three_d:
                block = block[:, channels, :]
            # The block's row of each window: rows of earlier pieces come first.
            offsets = np.zeros(i1 - i0, dtype=np.int64)
            base = 0
            for i, j in pieces[p:q]:
                offsets[i - i0:j - i0] = base - srows[i]
                base += int(srows[j - 1] - srows[i]) + 1
            brow = srows[i0:i1] + offsets
            rel = sstart[i0:i1] - first
            pad_lo = max(0, -int(rel.min()))
            pad_hi = max(0, int(rel.max()) + length - (last - first))
            if pad_lo or pad_hi:  # samples outside the trace are zero
                block = np.pad(block, ((0, 0), (0, 0), (pad_lo, pad_hi)))
            windows = np.lib.stride_tricks.sliding_window_view(block, length, axis=2)
            out[order[i0:i1]] = windows[brow, :, rel + pad_lo]
        p = q
    return out


def _read_union(dataset, srows: np.ndarray, pieces: list[tuple[int, int]], first: int, last: int, nrows: int,
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
        block = np.empty((nrows, file_channels, last - first) if three_d else (nrows, last - first), dtype=np.float32)
        dataset.id.read(h5s.create_simple(block.shape), fspace, block)  # HDF5 converts to float32
    else:  # any array-like
        parts = [np.asarray(dataset[lo:hi, :, first:last] if three_d else dataset[lo:hi, first:last], dtype=np.float32)
                 for lo, hi in spans]
        block = np.concatenate(parts) if len(parts) > 1 else parts[0]
    return block if three_d else block[:, None, :]
