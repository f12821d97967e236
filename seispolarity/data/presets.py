"""Ready-made data sets: the embedded synthetic default, generated once and cached on disk."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
from typing import Any, Iterator, Mapping

from .dataset import WaveformDataset


def synthetic_path(cache_dir: str | os.PathLike, num_traces: int, seed: int,
                   knobs: Mapping[str, Any] | None = None) -> str:
    """Where the synthetic set for (N, seed, knobs) is cached: one file per distinct request."""
    digest = hashlib.sha1(json.dumps(dict(knobs or {}), sort_keys=True, default=str).encode()).hexdigest()[:8]
    return os.path.join(os.fspath(cache_dir), f"synthetic_n{num_traces}_seed{seed}_{digest}.hdf5")


def synthetic_dataset(cache_dir: str = "data/cache", num_traces: int = 20000, seed: int = 0,
                      knobs: Mapping[str, Any] | None = None, **dataset_kwargs: Any) -> WaveformDataset:
    """The synthetic data set (docs/sim2real.md: the recipe and its knobs; docs/runner.md: the
    ``data=synthetic`` option and its cache): generated on first use, then read from cache.

    ``knobs`` are fields of ``seispolarity.data.synthetic.SyntheticConfig``; the remaining keyword
    arguments go to ``WaveformDataset`` (preload, window_length, normalize, ...).
    """
    from .synthetic import ensure_synthetic

    knobs = dict(knobs or {})
    max_traces = dataset_kwargs.get("max_traces")
    if max_traces is not None and 0 < int(max_traces) < num_traces:
        num_traces = int(max_traces)  # generate only what is used (`debug=fast` sets max_traces)
    path = synthetic_path(cache_dir, num_traces, seed, knobs)
    with generation_progress(num_traces, delay=1.0 if os.path.isfile(path) else 0.0):
        ensure_synthetic(path, num_traces=num_traces, seed=seed, **knobs)
    return WaveformDataset(path, name="synthetic", **dataset_kwargs)


@contextlib.contextmanager
def generation_progress(num_traces: int, delay: float = 0.0) -> Iterator[None]:
    """A progress bar (on a terminal) while the synthetic set is generated: the generator
    synthesises its traces chunk by chunk (``synthetic._synthesise_chunk(cfg, par, rows, ...)``);
    each chunk done advances the bar. A cached file shows nothing (``delay``: the bar appears only
    if regenerating it takes that long)."""
    from ..console import bar, logs_above_bars
    from . import synthetic

    original = getattr(synthetic, "_synthesise_chunk", None)
    progress = bar(int(num_traces), "generating synthetic traces", unit="trace", delay=delay) if original else None
    if progress is None:
        yield
        return

    def counted(*args, **kwargs):
        out = original(*args, **kwargs)
        rows = next((a for a in args if isinstance(a, slice)), None)
        progress.update(len(range(*rows.indices(int(num_traces)))) if rows is not None else 0)
        return out

    synthetic._synthesise_chunk = counted
    try:
        with logs_above_bars():  # the generator's log lines print above the bar
            yield
    finally:
        synthetic._synthesise_chunk = original
        progress.close()
