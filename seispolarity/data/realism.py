"""Realism diagnostic: the waveform statistics that decide first motions, per data set, side by side.

    python -m seispolarity.data realism A.hdf5 B.hdf5 [name=<reader>] [max_traces=N] [json=true]

Every statistic is computed per trace on the vertical channel with the P index known, on the
traces labelled up or down (see :func:`waveform_stats` for the definitions). :func:`summarise`
gives the median and quartiles; :func:`distance` compares two sets, statistic by statistic,
with the two-sample Kolmogorov-Smirnov statistic (the largest gap between the two empirical
CDFs: 0 = same distribution, 1 = no overlap; for the 0/1 agreement it is the gap between the
two shares).
"""
from __future__ import annotations

import json
import os
import sys
from itertools import combinations
from typing import Any, Mapping, Sequence

import numpy as np

from ..baselines import first_break
from ..cli_args import parse_option, split_option
from .labels import DOWN, UP

__all__ = ["STATISTICS", "waveform_stats", "summarise", "distance", "ks_statistic", "file_stats", "detect_layout",
           "format_table", "main"]

#: statistic -> one-line definition (printed by the command, kept in the JSON output).
STATISTICS = {
    "snr_db": "20 log10(peak |x| in the 1 s after P / std of the first-break noise window)",
    "first_half_cycle_ratio": "peak |x| from the first break to the next zero crossing / peak |x| "
                              "from min(break, P) to P + 0.5 s",
    "mean_0.2s_agrees": "sign of the mean of the 0.2 s after P equals the label's first motion (1/0)",
    "dominant_freq_hz": "peak of the amplitude spectrum of the Hann-tapered 1 s after P (>= 1 Hz)",
    "rise_time_s": "time from the first break to the peak |x| of the first half-cycle",
    "noise_slope": "log-log slope of the pre-P noise amplitude spectrum, 1-20 Hz (white 0, red < 0)",
    "coda_buildup_db": "20 log10(RMS of P + 0.5..1.5 s / RMS of P + 0..0.5 s)",
}

NOISE_SECONDS = 2.0   # pre-P window of the noise spectrum (shorter when the traces hold less)
NOISE_GAP = 0.1       # as the first-break noise window: stop 0.1 s before P
POST_SECONDS = 1.5    # the longest window after P (coda build-up)


def _gather(x: np.ndarray, start: np.ndarray, length: int) -> np.ndarray:
    """``x[i, start[i] : start[i] + length]`` for every row (indices clipped to the trace)."""
    idx = np.clip(start[:, None] + np.arange(length), 0, x.shape[1] - 1)
    return np.take_along_axis(x, idx, axis=1)


def _ratio_db(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        out = 20 * np.log10(num / den)
    return np.where((num > 0) & (den > 0), out, np.nan)


def _first_half_cycle(xc: np.ndarray, p: np.ndarray, onset: np.ndarray, fs: float,
                      tol: int) -> tuple[np.ndarray, np.ndarray]:
    """First half-cycle ratio and rise time (NaN where no first break was found)."""
    nh = max(1, int(round(0.5 * fs)))
    seg = _gather(xc, p - tol, tol + nh)           # P sits at column `tol`
    cols = np.arange(tol + nh)[None, :]
    o = np.where(onset >= 0, onset - (p - tol), tol)[:, None]
    window = cols >= np.minimum(o, tol)
    sign = np.sign(np.take_along_axis(seg, o, axis=1))
    crossed = (cols > o) & (sign * seg <= 0)
    end = np.where(crossed.any(axis=1), np.argmax(crossed, axis=1), tol + nh)[:, None]
    half = (cols >= o) & (cols < end)
    mag = np.abs(seg)
    peak = np.where(half, mag, -1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = peak.max(axis=1) / np.where(window, mag, 0.0).max(axis=1)
    rise = (np.argmax(peak, axis=1) - o[:, 0]) / fs
    found = onset >= 0
    return np.where(found, ratio, np.nan), np.where(found, rise, np.nan)


def _dominant_frequency(seg: np.ndarray, fs: float, pad: int = 4) -> np.ndarray:
    """Frequency of the amplitude-spectrum peak of each Hann-tapered row, at or above 1 / window."""
    n = seg.shape[1]
    w = np.hanning(n)
    y = w * (seg - (seg * w).sum(axis=1, keepdims=True) / w.sum())
    spec = np.abs(np.fft.rfft(y, n=pad * n, axis=1))
    freqs = np.fft.rfftfreq(pad * n, 1.0 / fs)
    spec[:, freqs < fs / n] = -1.0
    out = freqs[np.argmax(spec, axis=1)]
    return np.where(np.abs(y).max(axis=1) > 0, out, np.nan)


def _spectral_slope(seg: np.ndarray, fs: float, band: tuple[float, float] = (1.0, 20.0)) -> np.ndarray:
    """Least-squares slope of log10 amplitude on log10 frequency over ``band`` (linear trend removed)."""
    n = seg.shape[1]
    t = np.arange(n) - (n - 1) / 2
    trend = (seg * t).sum(axis=1, keepdims=True) / (t * t).sum() * t
    y = (seg - seg.mean(axis=1, keepdims=True) - trend) * np.hanning(n)
    freqs = np.fft.rfftfreq(n, 1.0 / fs)
    use = (freqs >= band[0]) & (freqs <= min(band[1], 0.8 * fs / 2))
    if use.sum() < 3:
        return np.full(len(seg), np.nan)
    amp = np.abs(np.fft.rfft(y, axis=1))[:, use]
    with np.errstate(divide="ignore"):
        log_a = np.log10(amp)
    lf = np.log10(freqs[use]) - np.log10(freqs[use]).mean()
    slope = ((log_a - log_a.mean(axis=1, keepdims=True)) * lf).sum(axis=1) / (lf * lf).sum()
    return np.where(np.isfinite(slope), slope, np.nan)


def _rms(seg: np.ndarray) -> np.ndarray:
    return np.sqrt((seg * seg).mean(axis=1))


def waveform_stats(waveforms: np.ndarray, p_index: np.ndarray | int, labels: np.ndarray | None,
                   sampling_rate: float = 100.0) -> dict[str, np.ndarray]:
    """Per-trace statistics that decide first motions (one float per trace, NaN where undefined).

    The first break is :func:`seispolarity.baselines.first_break` with its defaults (noise mean
    and std on the 1 s ending 0.1 s before P; first sample from P - 0.05 s to P + 0.25 s departing
    from the noise mean by more than 4 std); traces are demeaned with that noise mean. The
    statistics are defined in :data:`STATISTICS`; ``first_half_cycle_ratio`` and ``rise_time_s``
    are NaN where no break is found, ``mean_0.2s_agrees`` where the label is neither up nor down.

    Args:
        waveforms: ``(N, L)`` vertical-channel traces (or ``(N, 1, L)``).
        p_index: P sample per trace ``(N,)``, or one int; every trace needs 0.6 s before P and
            1.5 s after it (the noise spectrum uses up to 2 s ending 0.1 s before P).
        labels: ``(N,)`` codes (0 up, 1 down, 2 unknown), or None.
        sampling_rate: Hz.
    """
    fs = float(sampling_rate)
    fb = first_break(waveforms, p_index, fs)
    xc, onset, std = fb["demeaned"], fb["onset"], fb["noise_std"]
    n, length = xc.shape
    p = np.broadcast_to(np.asarray(p_index, dtype=np.int64).reshape(-1), (n,))
    gap = int(round(NOISE_GAP * fs))
    n_noise = min(int(round(NOISE_SECONDS * fs)), int(p.min(initial=length)) - gap)
    n_post = int(round(POST_SECONDS * fs))
    if n and (n_noise < int(round(0.5 * fs)) or int(p.max()) + n_post > length):
        raise ValueError(f"waveform_stats needs {0.5 + NOISE_GAP:g} s before P and {POST_SECONDS:g} s after it; "
                         f"got P at samples {int(p.min())}..{int(p.max())} of {length} at {fs:g} Hz")
    n1, n05, n02 = (int(round(s * fs)) for s in (1.0, 0.5, 0.2))

    ratio, rise = _first_half_cycle(xc, p, onset, fs, tol=int(round(0.05 * fs)))
    post = _gather(xc, p, n_post)
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = np.where(std > 0, _ratio_db(np.abs(post[:, :n1]).max(axis=1), std), np.nan)
    mean_sign = np.sign(post[:, :n02].mean(axis=1))
    agrees = np.full(n, np.nan)
    if labels is not None:
        lab = np.asarray(labels).reshape(-1)
        agrees[lab == UP] = mean_sign[lab == UP] > 0
        agrees[lab == DOWN] = mean_sign[lab == DOWN] < 0
    noise = _gather(xc, p - gap - n_noise, n_noise)
    return {
        "snr_db": snr,
        "first_half_cycle_ratio": ratio,
        "mean_0.2s_agrees": agrees,
        "dominant_freq_hz": _dominant_frequency(post[:, :n1], fs),
        "rise_time_s": rise,
        "noise_slope": np.where(std > 0, _spectral_slope(noise, fs), np.nan),
        "coda_buildup_db": _ratio_db(_rms(post[:, n05:]), _rms(post[:, :n05])),
    }


def summarise(stats: Mapping[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Per statistic: ``n`` (finite values), ``median``, ``q25``, ``q75``, ``mean``; plus ``share_below_0.5``
    for the first half-cycle ratio (the mean of ``mean_0.2s_agrees`` is the share that agrees)."""
    out: dict[str, dict[str, float]] = {}
    for key, values in stats.items():
        v = np.asarray(values, dtype=np.float64)
        v = v[np.isfinite(v)]
        row = {"n": int(len(v))}
        if len(v):
            q25, med, q75 = np.percentile(v, [25, 50, 75])
            row.update(median=float(med), q25=float(q25), q75=float(q75), mean=float(v.mean()))
        else:
            row.update(median=np.nan, q25=np.nan, q75=np.nan, mean=np.nan)
        if key == "first_half_cycle_ratio":
            row["share_below_0.5"] = float((v < 0.5).mean()) if len(v) else np.nan
        out[key] = row
    return out


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: max |F_a - F_b| over the pooled values (NaN dropped)."""
    a = np.sort(np.asarray(a, dtype=np.float64)[np.isfinite(a)])
    b = np.sort(np.asarray(b, dtype=np.float64)[np.isfinite(b)])
    if not len(a) or not len(b):
        return float("nan")
    pooled = np.concatenate([a, b])
    fa = np.searchsorted(a, pooled, side="right") / len(a)
    fb = np.searchsorted(b, pooled, side="right") / len(b)
    return float(np.abs(fa - fb).max())


def distance(stats_a: Mapping[str, np.ndarray], stats_b: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Per statistic both sets have: the two-sample KS statistic of their distributions (0..1)."""
    return {key: ks_statistic(stats_a[key], stats_b[key]) for key in stats_a if key in stats_b}


# -- files ----------------------------------------------------------------------------------------
def detect_layout(path: str) -> str:
    """The reader name for ``path``: a SeisBench or DiTing folder, a flat file (per-trace ``p_pick``
    or a P index attribute) or an SCSN file (``X`` of (N, 600), P at 300). Raises ValueError naming
    the file and what was expected when it is none of these."""
    if os.path.isdir(path):
        names = os.listdir(path)
        if any("_part_" in n and n.endswith((".hdf5", ".h5")) for n in names):
            return "diting"
        if "metadata.csv" in names:
            return "seisbench"
        raise ValueError(f"{path}: a folder with neither metadata.csv (SeisBench) nor DiTing part files")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file or directory")
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if "X" not in f:
                raise ValueError(f"{path}: no dataset 'X' (found {sorted(f.keys())}); expected a flat or SCSN "
                                 f"HDF5 file with X and Y, or a SeisBench/DiTing folder")
            if "p_pick" in f or "p_pick" in f.attrs or "p_index" in f.attrs:
                return "flat"
            if f["X"].ndim == 2 and f["X"].shape[1] == 600:
                return "scsn"
    except OSError as exc:
        raise ValueError(f"{path}: cannot open as HDF5 ({exc})") from None
    raise ValueError(f"{path}: cannot tell where P is (no p_pick, no p_pick/p_index attribute, traces not "
                     f"SCSN's 600 samples); give name=<reader> and p_index=<sample>")


def file_stats(path: str, name: str | None = None, max_traces: int | None = 20000, seed: int = 0,
               batch: int = 8192, **reader_options: Any) -> dict[str, Any]:
    """:func:`waveform_stats` of the up/down traces of one file or folder (any reader; ``name=None``
    detects the layout). At most ``max_traces`` traces, a seeded random sample, read in batches;
    traces with less than 0.6 s before P or 1.5 s after it are skipped (counted)."""
    from .readers import make_reader

    name = name or detect_layout(path)
    reader = make_reader(name, path, **reader_options)
    table = reader.table
    fs = float(table.sampling_rate)
    room = table.trace_length - table.p_index
    updown = (table.labels == UP) | (table.labels == DOWN)
    fits = (table.p_index >= round((0.5 + NOISE_GAP) * fs)) & (room >= round(POST_SECONDS * fs))
    rows = np.flatnonzero(updown & fits)
    if not len(rows):
        raise ValueError(f"{path}: no traces labelled up or down with {0.5 + NOISE_GAP:g} s before P and "
                         f"{POST_SECONDS:g} s after it ({int(updown.sum())} up/down traces in all)")
    if max_traces and len(rows) > max_traces:
        rows = np.sort(np.random.default_rng(seed).choice(rows, size=int(max_traces), replace=False))
    pre = int(min(round((NOISE_SECONDS + NOISE_GAP) * fs), table.p_index[rows].min()))
    post = int(min(round(2.0 * fs), room[rows].min()))
    parts = []
    for a in range(0, len(rows), batch):
        r = rows[a:a + batch]
        x = reader.read_windows(r, table.p_index[r] - pre, pre + post)[:, 0, :]
        parts.append(waveform_stats(x, pre, table.labels[r], fs))
    reader.close()
    stats = {k: np.concatenate([s[k] for s in parts]) for k in parts[0]}
    return {"path": path, "name": name, "sampling_rate": fs, "traces": int(len(rows)),
            "skipped_near_edge": int((updown & ~fits).sum()),
            "up": int((table.labels[rows] == UP).sum()), "down": int((table.labels[rows] == DOWN).sum()),
            "stats": stats}


def _fmt(v: float, digits: int) -> str:
    return "nan" if not np.isfinite(v) else f"{v:.{digits}f}"


def _rows(summary: Mapping[str, Mapping[str, float]]) -> list[tuple[str, str]]:
    """(row label, cell) pairs of one file's column."""
    digits = {"snr_db": 1, "dominant_freq_hz": 1, "coda_buildup_db": 1, "rise_time_s": 3}
    rows = []
    for key in STATISTICS:
        row, d = summary[key], digits.get(key, 2)
        if key == "mean_0.2s_agrees":
            rows.append((f"{key} (share)", _fmt(row["mean"], 2)))
            continue
        rows.append((key, f"{_fmt(row['median'], d)} [{_fmt(row['q25'], d)}, {_fmt(row['q75'], d)}]"))
        if key == "first_half_cycle_ratio":
            rows.append(("  share < 0.5", _fmt(row["share_below_0.5"], 2)))
    return rows


def format_table(results: Sequence[Mapping[str, Any]]) -> str:
    """The side-by-side table: medians [quartiles] per file, then KS distances per pair of files."""
    columns = [[("traces (up/down)", f"{r['traces']} ({r['up']}/{r['down']})")] + _rows(summarise(r["stats"]))
               for r in results]
    width = max(len(cell) for col in columns for _, cell in col) + 3
    lines = ["realism: up/down traces, vertical channel; median [25%, 75%] per file"]
    for i, r in enumerate(results):
        skipped = r.get("skipped_near_edge", 0)
        note = f", {skipped} up/down traces skipped: P too near an end" if skipped else ""
        lines.append(f"  [{i + 1}] {r['path']} (name={r['name']}, {r['sampling_rate']:g} Hz{note})")
    lines.append(f"{'statistic':<28}" + "".join(f"{f'[{i + 1}]':>{width}}" for i in range(len(results))))
    for j, (label, _) in enumerate(columns[0]):
        lines.append(f"{label:<28}" + "".join(f"{col[j][1]:>{width}}" for col in columns))
    pairs = list(combinations(range(len(results)), 2))
    if pairs:
        lines += ["", "distance: two-sample Kolmogorov-Smirnov statistic (0 same .. 1 disjoint)",
                  f"{'statistic':<28}" + "".join(f"{f'{a + 1}-{b + 1}':>7}" for a, b in pairs)]
        dists = [distance(results[a]["stats"], results[b]["stats"]) for a, b in pairs]
        for key in STATISTICS:
            lines.append(f"{key:<28}" + "".join(f"{_fmt(d[key], 2):>7}" for d in dists))
    lines += ["", "definitions:"] + [f"  {k}: {v}" for k, v in STATISTICS.items()]
    return "\n".join(lines)


# -- command line ---------------------------------------------------------------------------------
USAGE = ("usage: python -m seispolarity.data realism PATH [PATH ...] [name=<reader>|auto] [max_traces=N] "
         "[seed=N] [json=true] [reader option=value ...]\n"
         "  name= and reader options apply to the paths after them; given after the last path, to every path "
         "that has none (default: name=auto, the layout is detected)")
GLOBAL_OPTIONS = ("max_traces", "seed", "json")


def _parse(argv: Sequence[str]) -> tuple[list[tuple[str, dict]], dict]:
    files: list[tuple[str, dict]] = []
    current: dict[str, Any] = {}
    trailing: dict[str, Any] = {}
    glob_opts: dict[str, Any] = {}
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg.startswith("--") and "=" not in arg and args:
            arg = f"{arg}={args.pop(0)}"
        option = split_option(arg)
        if option is not None:
            key, value = option[0], parse_option(*option)
            target = glob_opts if key in GLOBAL_OPTIONS else current
            target[key] = value
            if target is current:
                trailing[key] = value
        else:
            files.append((arg, dict(current)))
            trailing = {}
    files = [(path, {**trailing, **own}) for path, own in files]
    return files, glob_opts


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    files, opts = _parse(argv)
    if not files:
        print(f"error: give at least one data path\n{USAGE}", file=sys.stderr)
        return 2
    import logging

    from ..cli_args import reader_options_problem

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    results = []
    for path, reader_opts in files:
        name = reader_opts.pop("name", None)
        name = None if name in (None, "auto") else str(name)
        problem = reader_options_problem(name, reader_opts) if name else None  # auto: known once detected
        if problem:
            print(f"error: {path}: {problem[1]}", file=sys.stderr)
            return problem[0]
        try:
            results.append(file_stats(path, name, max_traces=opts.get("max_traces", 20000),
                                      seed=int(opts.get("seed", 0)), **reader_opts))
        except (ValueError, FileNotFoundError, TypeError, KeyError, OSError) as exc:
            msg = str(exc) if path in str(exc) else f"{path}: {exc}"
            print(f"error: {msg}", file=sys.stderr)
            return 1
    if opts.get("json"):
        out = [{**{k: v for k, v in r.items() if k != "stats"}, "summary": summarise(r["stats"])} for r in results]
        pairs = {f"{a + 1}-{b + 1}": distance(results[a]["stats"], results[b]["stats"])
                 for a, b in combinations(range(len(results)), 2)}
        print(json.dumps({"files": out, "ks_distance": pairs, "definitions": STATISTICS}, indent=2))
    else:
        print(format_table(results))
    return 0
