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

    Rows are sorted and grouped into runs of nearby rows; each run is one contiguous hyperslab
    read covering only the columns its windows span, then windows are gathered in numpy. This
    turns a shuffled batch of blocks (or a preload) into a few large reads instead of one read
    per trace. Samples outside the trace are zero.
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
    # A new run where rows are far apart or a run would read too many bytes.
    row_bytes = max(1, (int(dataset.shape[1]) if three_d else 1) * trace_len * 4)
    max_rows = max(1, max_block_bytes // row_bytes)
    breaks = np.flatnonzero(np.diff(srows) > max_gap) + 1
    bounds = np.concatenate([[0], breaks, [n]])
    offsets = np.arange(length)
    for b0, b1 in zip(bounds[:-1], bounds[1:]):
        i = int(b0)
        while i < b1:
            # The chunk spans fewer than max_rows rows of the file.
            j = min(int(b1), int(np.searchsorted(srows, srows[i] + max_rows, side="left")))
            sel = order[i:j]
            lo, hi = int(srows[i]), int(srows[j - 1]) + 1
            first = max(0, int(start[sel].min()))
            last = min(trace_len, int((start[sel] + length).max()))
            if last > first:
                block = dataset[lo:hi, :, first:last] if three_d else dataset[lo:hi, first:last]
                block = np.asarray(block, dtype=np.float32)
                if not three_d:
                    block = block[:, None, :]
                elif channels is not None:
                    block = block[:, channels, :]
                idx = (start[sel] - first)[:, None] + offsets
                valid = (idx >= 0) & (idx < last - first)
                gather = np.clip(idx, 0, last - first - 1)[:, None, :].repeat(num_out, axis=1)
                picked = np.take_along_axis(block[srows[i:j] - lo], gather, axis=2)
                out[sel] = picked * valid[:, None, :]
            i = j
    return out
