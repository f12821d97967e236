"""Ready-made data sets: the embedded synthetic default, generated once and cached on disk."""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Mapping

from .dataset import WaveformDataset


def synthetic_path(cache_dir: str | os.PathLike, num_traces: int, seed: int,
                   knobs: Mapping[str, Any] | None = None) -> str:
    """Where the synthetic set for (N, seed, knobs) is cached: one file per distinct request."""
    digest = hashlib.sha1(json.dumps(dict(knobs or {}), sort_keys=True, default=str).encode()).hexdigest()[:8]
    return os.path.join(os.fspath(cache_dir), f"synthetic_n{num_traces}_seed{seed}_{digest}.hdf5")


def synthetic_dataset(cache_dir: str = "data/cache", num_traces: int = 20000, seed: int = 0,
                      knobs: Mapping[str, Any] | None = None, **dataset_kwargs: Any) -> WaveformDataset:
    """The synthetic data set (DESIGN.md section 4): generated on first use, then read from cache.

    ``knobs`` are fields of ``seispolarity.data.synthetic.SyntheticConfig``; the remaining keyword
    arguments go to ``WaveformDataset`` (preload, window_length, normalize, ...).
    """
    from .synthetic import ensure_synthetic

    knobs = dict(knobs or {})
    max_traces = dataset_kwargs.get("max_traces")
    if max_traces is not None and 0 < int(max_traces) < num_traces:
        num_traces = int(max_traces)  # generate only what is used (`debug=fast` sets max_traces)
    path = synthetic_path(cache_dir, num_traces, seed, knobs)
    ensure_synthetic(path, num_traces=num_traces, seed=seed, **knobs)
    return WaveformDataset(path, name="synthetic", **dataset_kwargs)
