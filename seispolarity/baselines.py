"""Classical (non-learnt) polarity pickers, used as reference points for the networks.

One algorithm, the first-break threshold picker, serves three places with their own parameters:
the evaluation baseline (:func:`first_break_polarity`, defaults below), the realism diagnostic
(:func:`first_break`, ``seispolarity.data.realism``) and the label-map sign check
(``seispolarity.data.check_labels.first_motion_sign``: no gap, no tolerance, k = 3).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .data.labels import DOWN, UNKNOWN, UP


def _as_numpy_2d(waveforms: Any) -> np.ndarray:
    if hasattr(waveforms, "detach"):  # torch.Tensor, without importing torch
        waveforms = waveforms.detach().cpu().numpy()
    x = np.asarray(waveforms, dtype=np.float64)
    if x.ndim == 3:
        if x.shape[1] != 1:
            raise ValueError(f"expected (N, L) or (N, 1, L) waveforms, got shape {x.shape}; pass the vertical only")
        x = x[:, 0, :]
    elif x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2:
        raise ValueError(f"expected (N, L) or (N, 1, L) waveforms, got shape {x.shape}")
    return x


def first_break(waveforms: Any, p_index: Any, sampling_rate: float = 100.0, *,
                k: float = 4.0, noise_window: float = 1.0, noise_gap: float = 0.1,
                tolerance: float = 0.05, search_window: float = 0.25) -> dict[str, np.ndarray]:
    """The first break of each trace: the threshold logic of :func:`first_break_polarity`.

    The noise mean and standard deviation are estimated on ``[p - noise_gap - noise_window,
    p - noise_gap)``; the first break is the first sample in ``[p - tolerance, p + search_window]``
    whose departure from that mean exceeds ``k * std`` (any non-zero departure on a flat pre-P window).

    Returns:
        ``onset`` (N,) int64 sample of the first break, -1 where there is none; ``noise_mean`` and
        ``noise_std`` (N,) float64; ``demeaned`` (N, L) float64, the traces minus ``noise_mean``.
    """
    x = _as_numpy_2d(waveforms)
    n, length = x.shape
    if hasattr(p_index, "detach"):
        p_index = p_index.detach().cpu().numpy()
    p = np.asarray(p_index).astype(np.int64)
    p = np.full(n, int(p)) if p.ndim == 0 else p.reshape(-1)
    if len(p) != n:
        raise ValueError(f"p_index has {len(p)} entries for {n} waveforms")
    fs = float(sampling_rate)
    nw = max(2, int(round(noise_window * fs)))
    gap = max(0, int(round(noise_gap * fs)))
    tol = max(0, int(round(tolerance * fs)))
    sw = max(1, int(round(search_window * fs)))

    cols = np.arange(length)[None, :]
    noise_end = np.clip(p - gap, 2, length)[:, None]
    noise_start = np.maximum(noise_end - nw, 0)
    in_noise = (cols >= noise_start) & (cols < noise_end)
    count = in_noise.sum(axis=1)
    mean = np.where(in_noise, x, 0.0).sum(axis=1) / np.maximum(count, 1)
    var = np.where(in_noise, (x - mean[:, None]) ** 2, 0.0).sum(axis=1) / np.maximum(count - 1, 1)
    std = np.sqrt(var)
    # A flat (all-zero) pre-P window: any non-zero sample counts as a break.
    thresh = np.where(std > 0, k * std, np.finfo(np.float64).tiny)

    xc = x - mean[:, None]
    search = (cols >= (p - tol)[:, None]) & (cols <= (p + sw)[:, None])
    hit = search & (np.abs(xc) > thresh[:, None])
    onset = np.where(hit.any(axis=1), np.argmax(hit, axis=1), -1).astype(np.int64)
    return {"onset": onset, "noise_mean": mean, "noise_std": std, "demeaned": xc}


def first_break_polarity(waveforms: Any, p_index: Any, sampling_rate: float = 100.0, *,
                         k: float = 4.0, noise_window: float = 1.0, noise_gap: float = 0.1,
                         tolerance: float = 0.05, search_window: float = 0.25) -> np.ndarray:
    """First-break threshold polarity picker: codes 0 up, 1 down, 2 unknown.

    For each trace: the mean and standard deviation of the noise are estimated on the pre-P window
    ``[p - noise_gap - noise_window, p - noise_gap)``; the trace is demeaned with that mean; the
    first sample in ``[p - tolerance, p + search_window]`` where ``|x| > k * std`` gives the polarity
    (its sign: positive -> 0 up, negative -> 1 down). No crossing in that window -> 2 unknown.
    The break itself (sample, noise level) is :func:`first_break`.

    Args:
        waveforms: (N, L) or (N, 1, L) array or torch tensor (a single (L,) trace is also accepted).
        p_index: (N,) P sample per trace, or one scalar for all.
        sampling_rate: Hz; the window parameters below are in seconds.
        k: threshold in noise standard deviations (default 4).
        noise_window: length of the noise window, s (default 1.0).
        noise_gap: gap between the noise window's end and the pick, s (default 0.1).
        tolerance: how far before the pick the search starts, s (default 0.05, ~ pick jitter).
        search_window: how far after the pick the search ends, s (default 0.25).

    Returns:
        (N,) int64 codes.
    """
    fb = first_break(waveforms, p_index, sampling_rate, k=k, noise_window=noise_window,
                     noise_gap=noise_gap, tolerance=tolerance, search_window=search_window)
    onset, xc = fb["onset"], fb["demeaned"]
    if len(onset) == 0:
        return np.zeros(0, dtype=np.int64)
    value = xc[np.arange(len(onset)), np.maximum(onset, 0)]
    out = np.where(value > 0, UP, DOWN).astype(np.int64)
    return np.where(onset >= 0, out, UNKNOWN).astype(np.int64)


__all__ = ["first_break", "first_break_polarity"]
