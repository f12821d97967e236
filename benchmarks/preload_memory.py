"""Lazy windows: does preloading a big SeisBench-format file cost about the memory of its windows?

    python benchmarks/preload_memory.py [--traces 100000] [--length 12000] [--window 400]
                                        [--dtype float32] [--compression none|gzip]
                                        [--dir DIR] [--keep] [--json out.json]

1. Writes a SeisBench-format folder (``metadata.csv`` + ``waveforms.hdf5``, INSTANCE columns,
   buckets of 1024 traces of shape (1024, 3, length) in "CW" order, ``data_format`` group), as
   SeisBench's writer lays it out. Default: 100,000 traces x 3 components x 12,000 samples in
   float32 = 14.4 GB, uncompressed and contiguous (what converted SeisBench files usually are).
   Content: Gaussian noise (one 1024-trace noise block, reused in every bucket: it changes
   nothing for plain storage) plus a signed pulse at a random P in [500, length - 500) on Z.
2. In a FRESH subprocess (nothing else in its heap), measures
   ``WaveformDataset(path, name="instance", preload=True, window_length=400)``: wall time and
   peak RSS (``resource.getrusage(RUSAGE_SELF).ru_maxrss``), against the RSS after importing
   torch + seispolarity (the baseline) and against the bytes of the preloaded windows
   (traces x 1 component x 400 samples x 4 bytes = 160 MB for 100,000 traces). It also checks a
   few preloaded windows against direct h5py reads of the same samples.
   Two loads are measured: "cold" (the file's pages dropped from the page cache first with
   ``posix_fadvise(DONTNEED)``, which touches only this file) and "warm" (right after).
3. Deletes the folder unless ``--keep``.

``--compression gzip`` writes each trace as one gzip chunk (1, 3, length) instead; the file is
then smaller on disk but every window read decompresses its whole trace chunk, so loading is
slower (a chunk cache of 1 MiB per open bucket also adds to the RSS). ``--dtype float16``
halves the file; the reader returns float32 either way.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUCKET = 1024


def write_file(folder: str, traces: int, length: int, dtype: str, compression: str, seed: int = 0) -> dict:
    """Write the SeisBench folder; return sizes and timings."""
    import csv

    import h5py
    import numpy as np

    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    p = rng.integers(500, length - 500, size=traces)
    labels = rng.integers(0, 3, size=traces)
    words = np.array(["positive", "negative", "undecidable"])[labels]
    n_block = min(BUCKET, traces)
    noise = rng.standard_normal((n_block, 3, length), dtype=np.float32).astype(dtype)
    pulse = (np.sin(np.linspace(0, np.pi, 40)) * 20).astype(dtype)
    sign = np.array([1, -1, 0], dtype=dtype)
    path = os.path.join(folder, "waveforms.hdf5")
    started = time.perf_counter()
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        for b, first in enumerate(range(0, traces, BUCKET)):
            n = min(BUCKET, traces - first)
            block = noise[:n]
            saved = [block[i, 0, p[first + i]:p[first + i] + 40].copy() for i in range(n)]
            for i in range(n):
                block[i, 0, p[first + i]:p[first + i] + 40] += sign[labels[first + i]] * pulse
            kw = {}
            if compression == "gzip":
                kw = {"chunks": (1, 3, length), "compression": "gzip", "compression_opts": 1}
            data.create_dataset(f"bucket{b}", data=block, **kw)
            for i in range(n):  # restore the shared noise block
                block[i, 0, p[first + i]:p[first + i] + 40] = saved[i]
        fmt = f.create_group("data_format")
        fmt.create_dataset("component_order", data="ZNE")
        fmt.create_dataset("dimension_order", data="CW")
        fmt.create_dataset("sampling_rate", data=100.0)
    with open(os.path.join(folder, "metadata.csv"), "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["trace_name", "source_id", "station_network_code", "station_code",
                    "trace_P_arrival_sample", "trace_polarity", "trace_sampling_rate_hz"])
        for i in range(traces):
            b, k = divmod(i, BUCKET)
            w.writerow([f"bucket{b}${k},:3,:{length}", f"ev{i // 4}", "XX", f"S{i % 500:03d}", int(p[i]),
                        words[i], 100])
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())
    seconds = time.perf_counter() - started
    size = os.path.getsize(path)
    return {"waveforms_bytes": size, "write_seconds": seconds, "write_MB_per_s": size / 1e6 / seconds,
            "full_trace_bytes_float32": traces * 3 * length * 4}


def drop_page_cache(path: str) -> None:
    """Evict this one file's pages (clean pages only; other files are untouched)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


# The probe runs in a fresh interpreter, so the peak RSS is that of the load alone.
PROBE = r"""
import json, os, resource, sys, time
import numpy as np
import torch
import h5py
from seispolarity import WaveformDataset

def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB

def current():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

path, window, preload = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
torch.set_num_threads(1)
base_peak, base_now = peak(), current()
t0 = time.perf_counter()
ds = WaveformDataset(path, name="instance", preload=preload, window_length=window)
seconds = time.perf_counter() - t0
out = {"traces": len(ds), "load_seconds": seconds, "baseline_peak_rss": base_peak,
       "baseline_rss": base_now, "peak_rss": peak(), "rss_after": current(),
       "window_bytes": len(ds) * ds.num_channels * ds.stored_length * 4,
       "store_bytes": int(ds._store.numel() * ds._store.element_size()) if ds.preloaded else 0}
# a few windows against direct reads of the same samples
rng = np.random.default_rng(1)
ok = True
with h5py.File(os.path.join(path, "waveforms.hdf5"), "r") as f:
    for i in rng.choice(len(ds), size=min(20, len(ds)), replace=False):
        name = ds.metadata["trace_name"][i]
        bucket, loc = name.split("$")
        row = int(loc.split(",")[0])
        p = int(ds.p_index[i])
        direct = f["data"][bucket][row, 0, p - window // 2: p + window // 2].astype(np.float32)
        ok &= bool(np.array_equal(ds.raw_windows([int(i)])[0, 0].numpy(), direct))
out["windows_match_direct_reads"] = ok
print("RESULT " + json.dumps(out))
"""


def probe(folder: str, window: int, preload: bool, timeout: float = 1800) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, "-c", PROBE, folder, str(window), "1" if preload else "0"],
                          capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"probe failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def mb(n: float) -> str:
    return f"{n / 1e6:,.0f} MB"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--traces", type=int, default=100_000)
    ap.add_argument("--length", type=int, default=12_000)
    ap.add_argument("--window", type=int, default=400)
    ap.add_argument("--dtype", default="float32", choices=("float32", "float16"))
    ap.add_argument("--compression", default="none", choices=("none", "gzip"))
    ap.add_argument("--dir", default=None, help="where to write the folder (default: a temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep the written folder")
    ap.add_argument("--reuse", action="store_true", help="reuse a folder already written under --dir")
    ap.add_argument("--no-streaming", action="store_true", help="skip the preload=False probe")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args(argv)

    parent = args.dir or tempfile.mkdtemp(prefix="sp_preload_")
    folder = os.path.join(parent, f"seisbench_{args.traces}x3x{args.length}_{args.dtype}_{args.compression}")
    need = args.traces * 3 * args.length * (4 if args.dtype == "float32" else 2)
    free = shutil.disk_usage(parent).free
    result: dict = {"traces": args.traces, "length": args.length, "window": args.window, "dtype": args.dtype,
                    "compression": args.compression, "folder": folder}
    try:
        if args.reuse and os.path.isfile(os.path.join(folder, "metadata.csv")):
            result["write"] = {"waveforms_bytes": os.path.getsize(os.path.join(folder, "waveforms.hdf5")),
                              "reused": True, "full_trace_bytes_float32": args.traces * 3 * args.length * 4}
        else:
            if args.compression == "none" and need > 0.9 * free:
                raise SystemExit(f"{mb(need)} needed but {mb(free)} free under {parent}; "
                                 f"use --dtype float16, --compression gzip, fewer --traces or another --dir")
            print(f"writing {args.traces} traces x 3 x {args.length} ({args.dtype}, {args.compression}) "
                  f"to {folder} ...", flush=True)
            result["write"] = write_file(folder, args.traces, args.length, args.dtype, args.compression)
        wave = os.path.join(folder, "waveforms.hdf5")
        drop_page_cache(wave)
        result["preload_cold"] = probe(folder, args.window, preload=True)
        result["preload_warm"] = probe(folder, args.window, preload=True)
        if not args.no_streaming:
            result["streaming"] = probe(folder, args.window, preload=False)
    finally:
        if not args.keep and not args.reuse:
            shutil.rmtree(folder, ignore_errors=True)
            if not args.dir:
                shutil.rmtree(parent, ignore_errors=True)

    w = result["write"]
    lines = [f"file: {args.traces:,} traces x 3 x {args.length:,} samples, {args.dtype}, {args.compression}: "
             f"{mb(w['waveforms_bytes'])} on disk"
             + (f", written in {w['write_seconds']:.0f} s ({w['write_MB_per_s']:.0f} MB/s)"
                if "write_seconds" in w else ""),
             f"full traces as float32 would be {mb(w['full_trace_bytes_float32'])}",
             f"{'load':<14} {'seconds':>8} {'RSS before':>11} {'peak RSS':>10} {'peak - before':>14} "
             f"{'windows':>9} {'(peak-before)/windows':>22}"]
    for key in ("preload_cold", "preload_warm", "streaming"):
        r = result.get(key)
        if not r:
            continue
        extra = r["peak_rss"] - r["baseline_rss"]  # an upper bound when the peak was the import's
        ratio = extra / r["window_bytes"] if key != "streaming" else float("nan")
        lines.append(f"{key:<14} {r['load_seconds']:>8.1f} {mb(r['baseline_rss']):>11} {mb(r['peak_rss']):>10} "
                     f"{mb(extra):>14} {mb(r['window_bytes'] if key != 'streaming' else 0):>9} {ratio:>22.2f}")
        if not r["windows_match_direct_reads"]:
            lines.append(f"  WARNING: {key}: windows differ from direct reads")
    result["table"] = "\n".join(lines)
    print(result["table"], flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
    return result


if __name__ == "__main__":
    main()
