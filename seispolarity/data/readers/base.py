"""What every on-disk layout reader provides to ``WaveformDataset``.

A reader knows one layout (flat / SCSN, SeisBench, DiTing). On construction it reads only the
small per-trace tables (labels, P positions, metadata), never the waveforms. ``read_windows``
then reads just the requested windows around P, straight from disk. HDF5 handles are opened
lazily and re-opened after a fork, so a reader survives a fork (or pickling) into worker processes.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Sequence

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

    def select(self, rows: np.ndarray) -> TraceTable:
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
        self._caches: tuple[int, dict[str, dict]] = (self._pid, {})

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

    def _process_cache(self, name: str) -> dict:
        """A dict of this process's own: emptied in a new process (HDF5 objects must not cross a
        fork) and never pickled. Readers keep their opened datasets / groups in it."""
        pid, caches = getattr(self, "_caches", (-1, {}))
        if pid != os.getpid():
            caches = {}
            self._caches = (os.getpid(), caches)
        return caches.setdefault(name, {})

    def close(self) -> None:
        for handle in self._handles.values():
            try:
                handle.close()
            except Exception:  # closing is best effort
                pass
        self._handles = {}
        self._caches = (os.getpid(), {})  # what they held belongs to the closed files

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_handles"] = {}
        state["_caches"] = (-1, {})
        return state

    def __del__(self) -> None:  # pragma: no cover - interpreter shutdown order varies
        try:
            self.close()
        except Exception:  # a half-torn-down interpreter may fail here; nothing to save
            pass

    # -- the one method the dataset calls -------------------------------------------------------
    def read_windows(self, rows: np.ndarray, start: np.ndarray, length: int) -> np.ndarray:
        """Return float32 ``(len(rows), num_channels, length)``.

        ``rows`` index ``self.table`` (any order); ``start`` is each window's first sample at
        ``sampling_rate`` and may be negative or run past the trace end: those samples are zero.
        """
        raise NotImplementedError


# -- shared steps of the readers ---------------------------------------------------------------------
def window_request(rows: Any, start: Any) -> tuple[np.ndarray, np.ndarray]:
    """``read_windows`` arguments as flat int64 arrays; one ``start`` is broadcast to every row."""
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    start = np.asarray(start, dtype=np.int64).reshape(-1)
    if start.size == 1 and rows.size != 1:
        start = np.full(rows.shape, int(start[0]), dtype=np.int64)
    return rows, start


def components_list(components: str | Sequence[str] | None, order: str) -> list[str]:
    """Channel names to return: ``None``, ``""`` or ``"all"`` mean every channel of ``order``."""
    if components is None or components == "" or (isinstance(components, str) and components.lower() == "all"):
        return list(order)
    if isinstance(components, str):
        return list(components.upper())
    return [str(c).upper() for c in components]


def resolve_channels(components: str | Sequence[str] | None, order: str, source: str) -> tuple[list[str], list[int]]:
    """``(component names, channel indices in the file)`` for ``components`` of a file whose channels
    are ``order`` (e.g. "ZNE"); a DataFormatError naming ``source`` when one is not in ``order``."""
    names = components_list(components, order)
    missing = [c for c in names if c not in order]
    if missing:
        raise DataFormatError(f"{source}: components {''.join(names)!r} not all in the component order {order!r} "
                              f"(missing {missing})")
    return names, [order.index(c) for c in names]
