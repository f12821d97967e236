"""Throughput benchmark: how close the Trainer runs to the model's own limit, and how fast the data path is.

    python benchmarks/throughput.py [--model ross] [--batch-size 256] [--num-traces 20000]
                                    [--stream-traces 200000] [--device auto] [--repeats 5] [--steps 3]

Prints ONE table, measured in one run, on one synthetic file, one model and one batch size:

- limit: forward + backward + optimizer step on batches already in memory (no data path at all);
- trainer: ``Trainer.train()`` epochs (the trainer's own ``samples_per_second``; no validation);
- docs loop: the hand-written loop of the docs (``DataLoader(dataset, shuffle=True)``);
- data path alone, preloaded, with the default augmentations (flip, noise, shift);
- data path alone, streaming from disk (``preload=False``, page cache warm), 0 and 2 workers;
- host syncs per training step: on CUDA every sync (``torch.cuda.set_sync_debug_mode("warn")``,
  counted); elsewhere the host reads seispolarity's training code makes (``HostReads``), each a sync
  on CUDA;
- start-up: ``python train.py`` composition + instantiation, minus importing torch and hydra
  (``benchmarks/startup.py``'s probe, one composition);
- peak memory of preloading the big file, against the bytes of its windows.

The three training rows are interleaved (the order rotates every repeat) and every ratio is the
median of ratios taken within one repeat, because the machines this runs on are shared and noisy.
Nothing here is a test: it reports, it never fails on a slow number.

The big file (``--stream-traces``, 200,000 by default) is written once under ``--cache-dir`` by tiling
a generated synthetic set of ``--base-traces`` (20,000; generating 200,000 directly takes minutes of
CPU). Its first ``--num-traces`` rows are that generated set, and the training rows use them.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.dirname(os.path.abspath(__file__)) not in sys.path:  # imported from elsewhere (tests)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import startup  # noqa: E402  (benchmarks/startup.py: the start-up row's probe)

#: Row keys of the table, in order (the smoke test checks every one is there).
ROWS = ("limit", "trainer", "docs_loop", "data_preloaded", "data_streaming_w0", "data_streaming_w1",
        "data_streaming_w2",
        "syncs", "startup", "preload_memory")
TARGETS = {
    "trainer_over_limit": 0.95, "trainer_over_docs": 1.0, "data_preloaded": 500_000,
    "data_streaming": 100_000, "startup_s": 0.5,
}
MB = 1 << 20


# ----------------------------------------------------------------------------------------------
# The file


def big_file(cache_dir: str, base_traces: int, total: int, seed: int = 0) -> tuple[str, str, float]:
    """(path of the ``total``-trace file, path of the generated base set, seconds spent making them).

    The base set is the ordinary cached synthetic set (``synthetic_n<N>_seed<S>_<knobs>.hdf5``, what
    ``data=synthetic data.num_traces=N`` reads); the big file repeats it ``total / base`` times
    (event ids offset per copy so grouped splits stay valid).
    """
    import dataclasses

    import h5py

    from seispolarity.data.presets import synthetic_path
    from seispolarity.data.synthetic import SyntheticConfig, ensure_synthetic

    started = time.perf_counter()
    # The knobs as `data=synthetic` passes them (every field), so train.py finds this very file.
    base = synthetic_path(cache_dir, base_traces, seed, dataclasses.asdict(SyntheticConfig()))
    ensure_synthetic(base, num_traces=base_traces, seed=seed)
    if total <= base_traces:
        return base, base, time.perf_counter() - started
    path = os.path.join(cache_dir, f"synthetic_tiled_n{total}_from_n{base_traces}_seed{seed}.hdf5")
    base_stat = os.stat(base)
    stamp = f"{os.path.basename(base)}:{base_stat.st_size}:{int(base_stat.st_mtime)}"
    if os.path.isfile(path):
        try:
            with h5py.File(path, "r") as f:
                if f.attrs.get("tiled_from") == stamp and f["X"].shape[0] == total:
                    return path, base, time.perf_counter() - started
        except (OSError, KeyError):
            pass
    tmp = path + ".tmp"
    with h5py.File(base, "r") as src, h5py.File(tmp, "w") as dst:
        n = src["X"].shape[0]
        for key, value in src.attrs.items():
            dst.attrs[key] = value
        dst.attrs["num_traces"] = total
        dst.attrs["tiled_from"] = stamp
        for key in src.keys():
            data = src[key]
            if data.ndim == 0 or data.shape[0] != n:
                dst.create_dataset(key, data=data[()])
                continue
            out = dst.create_dataset(key, shape=(total,) + data.shape[1:], dtype=data.dtype)
            values = data[()]
            if key == "evids":
                offset = int(values.max()) + 1
            for a in range(0, total, n):
                b = min(total, a + n)
                chunk = values[: b - a]
                if key == "evids":
                    chunk = chunk + (a // n) * offset
                out[a:b] = chunk
            del values
    os.replace(tmp, path)
    return path, base, time.perf_counter() - started


def warm_page_cache(path: str) -> None:
    with open(path, "rb") as fh:
        while fh.read(64 * MB):
            pass


# ----------------------------------------------------------------------------------------------
# Training rows


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def training_config(args, device, steps: int, seed: int = 0, **extra):
    from seispolarity.training import TrainingConfig

    values = dict(
        batch_size=args.batch_size, epochs=1, max_steps_per_epoch=steps, validation_split=0.0, test_split=0.0,
        save_dir=None, tensorboard_dir=None, show_progress=False, device=str(device), num_workers=0,
        log_every=100, seed=seed, early_stopping_patience=None, amp=args.amp, compile=args.compile)
    values.update(extra)
    return TrainingConfig(**values)


def make_trainer(model, dataset, args, device, steps: int, seed: int = 0, **extra):
    from seispolarity.data.augment import AugmentConfig
    from seispolarity.training import Trainer

    return Trainer(model=model, dataset=dataset, config=training_config(args, device, steps, seed, **extra),
                   augment=AugmentConfig())


class Bench:
    """The three training rows on one model and one preloaded data set."""

    def __init__(self, model, dataset, args, device) -> None:
        import torch

        self.model, self.dataset, self.args, self.device = model, dataset, args, device
        self.steps = args.steps
        # Batches already in memory for the limit: the Trainer's own inputs of a few real batches.
        prep = make_trainer(model, dataset, args, device, steps=None)
        self.net = prep.net  # compiled once when --compile, shared by the limit
        self.autocast = prep.autocast
        self.scaler = prep.scaler
        self.memory = []
        for idx in prep.epoch_batches(1)[: min(4, self.steps)]:
            x, labels, targets = prep.prepare_inputs(dataset.get_batch(idx), train=True)
            self.memory.append((x.detach().clone(), labels.clone(), {k: v.clone() for k, v in targets.items()}))
        self.aux = getattr(model, "aux_targets", None) is not None and bool(getattr(model, "aux_targets", ()))
        self.uses_aux = self.aux and dataset.has_pick
        self.centre = torch.full((args.batch_size,), model.input_length // 2, dtype=torch.long, device=device)
        self.epoch = 0

    def limit(self, steps: int | None = None) -> float:
        import torch.nn.functional as F

        from seispolarity.training.optim import build_optimizer

        steps = steps or self.steps
        model, net = self.model, self.net
        opt = build_optimizer(model.parameters(), training_config(self.args, self.device, steps))
        model.train()
        _sync(self.device)
        started = time.perf_counter()
        count = 0
        for i in range(steps):
            x, labels, targets = self.memory[i % len(self.memory)]
            with self.autocast():
                if self.uses_aux:
                    logits, aux = net(x, targets)
                else:
                    logits, aux = net(x), None
                loss = F.cross_entropy(logits.float(), labels)
                if aux is not None:
                    loss = loss + aux.float()
            opt.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(opt)
            self.scaler.update()
            count += len(labels)
        _sync(self.device)
        return count / (time.perf_counter() - started)

    def trainer(self, steps: int | None = None) -> float:
        self.epoch += 1
        trainer = make_trainer(self.model, self.dataset, self.args, self.device, steps or self.steps, seed=self.epoch)
        if self.args.compile:
            trainer.net = self.net  # the compiled module built once (compiling again would time the compiler)
        trainer.train()
        return float(trainer.history[-1]["samples_per_second"])

    def docs_loop(self, steps: int | None = None) -> float:
        """The loop of the docs: ``DataLoader(dataset, batch_size, shuffle=True)``, ``model(waveforms)``,
        ``criterion(outputs, labels)``, ``outputs.max(1)``, ``.item()`` per step for the running sums.

        A model with a pick head also trains it here (P at the window centre), as the Trainer does, so
        both rows do the same work (``--docs-classify-only`` keeps the loop verbatim)."""
        import torch
        from torch import nn
        from torch.utils.data import DataLoader

        steps = steps or self.steps
        model, device = self.model, self.device
        criterion = nn.CrossEntropyLoss()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, weight_decay=1e-5)
        loader = DataLoader(self.dataset, batch_size=self.args.batch_size, shuffle=True)
        with_aux = self.uses_aux and not self.args.docs_classify_only
        model.train()
        running_loss, correct, total = 0.0, 0, 0
        _sync(device)
        started = time.perf_counter()
        for i, (waveforms, labels) in enumerate(loader):
            if i == steps:
                break
            waveforms, labels = waveforms.to(device), labels.to(device)
            optimizer.zero_grad()
            with self.autocast():
                if with_aux:
                    outputs, aux = self.net(waveforms, {"p_index": self.centre[: len(labels)]})
                    loss = criterion(outputs.float(), labels) + aux
                else:
                    outputs = self.net(waveforms)
                    loss = criterion(outputs.float(), labels)
            loss.backward()
            optimizer.step()
            running_loss += loss.item()
            _, predicted = outputs.max(1)
            total += labels.size(0)
            correct += predicted.eq(labels).sum().item()
        _sync(device)
        return total / (time.perf_counter() - started)


def data_path(trainer, epoch: int, max_batches: int | None = None) -> float:
    """Samples/s of the Trainer's data path alone: epoch order, batches, device copy, crop + augment +
    normalise (``Trainer.epoch_batches``, ``Trainer.iterate`` (``training.batches.iterate_batches``) and
    ``Trainer.prepare_inputs``), no model."""
    batches = trainer.epoch_batches(epoch)
    if max_batches:
        batches = batches[:max_batches]
    _sync(trainer.device)
    started = time.perf_counter()
    count = 0
    for batch in trainer.iterate(trainer.train_dataset, batches, train=True):
        x, labels, _ = trainer.prepare_inputs(batch, train=True)
        count += len(labels)
    _sync(trainer.device)
    return count / (time.perf_counter() - started)


def streaming_rows(model, stream, args, device, log) -> dict[str, dict]:
    """The streaming data path with 0, 1 and 2 workers asked for, in turns (the order rotating each
    repeat); the ratios to 0 workers are taken within each repeat. ``started``: the workers the
    Trainer starts for that request on this machine (``training.batches.workers_to_start``)."""
    from seispolarity.training.batches import workers_to_start

    values: dict[int, list[float]] = {0: [], 1: [], 2: []}
    for rep in range(args.stream_repeats):
        for workers in (0, 1, 2)[rep % 3:] + (0, 1, 2)[:rep % 3]:
            trainer = make_trainer(model, stream, args, device, steps=None, num_workers=workers)
            values[workers].append(data_path(trainer, rep + 1, args.stream_batches))
            del trainer
        got = ", ".join(f"{w} workers {v[-1]:,.0f}" for w, v in values.items())
        log(f"data path streaming, repeat {rep + 1}: {got}")
    rows = {}
    for workers, got in values.items():
        ratios = [v / v0 for v, v0 in zip(got, values[0])]
        rows[f"data_streaming_w{workers}"] = {
            "samples_per_s": median(got), "all": got, "workers": workers,
            "started": workers_to_start(workers, stream, device), "over_w0": median(ratios), "over_w0_all": ratios}
    return rows


def count_syncs(model, dataset, args, device, steps: int) -> int:
    """Host syncs of one ``Trainer.train()`` epoch of ``steps`` steps, the NaN guard in its CUDA mode.

    On CUDA ``torch.cuda.set_sync_debug_mode("warn")`` warns at every call that synchronises with
    the device; the warnings are counted. Elsewhere the host reads made by the training code are
    counted (``seispolarity.training.host_reads.HostReads``): each would be a sync on CUDA.
    """
    import warnings

    import torch

    from seispolarity.training.host_reads import HostReads

    trainer = make_trainer(model, dataset, args, device, steps, log_every=10**6)
    if device.type != "cuda":
        trainer.nan_guard.deferred = True  # what the Trainer sets on CUDA
        with HostReads() as reads:
            trainer.train()
        return len(reads.reads)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            trainer.train()
        finally:
            torch.cuda.set_sync_debug_mode(0)
    return sum("synchroniz" in str(w.message) for w in caught)


def syncs_per_step(model, dataset, args, device, steps: int) -> dict:
    """Host syncs per training step, over an epoch of N and one of 2N steps: (syncs(2N) - syncs(N)) / N,
    so the syncs of an epoch's start and end drop out (target: 0). On CUDA every sync is counted;
    elsewhere the training code's host reads (``count_syncs``), a proxy that leaves out torch's own."""
    count_syncs(model, dataset, args, device, 1)  # warm-up
    short = count_syncs(model, dataset, args, device, steps)
    long = count_syncs(model, dataset, args, device, 2 * steps)
    how = "CUDA sync debug mode" if device.type == "cuda" else "host reads by seispolarity/training (CPU proxy)"
    return {"per_step": (long - short) / steps, "epoch_n": short, "epoch_2n": long, "steps": steps, "counted": how}


def profiles(bench: Bench, trainer) -> dict[str, str]:
    """torch.profiler tables (self CPU time) of one trainer epoch and one preloaded data-path epoch."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if bench.device.type == "cuda" else [])
    out = {}
    with profile(activities=activities) as prof:
        bench.trainer()
    out["profile: one trainer epoch"] = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15)
    with profile(activities=activities) as prof:
        data_path(trainer, 99)
    out["profile: one preloaded data-path epoch"] = prof.key_averages().table(sort_by="self_cpu_time_total",
                                                                               row_limit=15)
    return out


# ----------------------------------------------------------------------------------------------
# Probes run in a fresh interpreter


def _proc_status_bytes(field: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    return None


def memory_probe(path: str, window_length: int, max_shift: int) -> dict:
    """Peak RSS of preloading ``path`` minus the RSS after the imports, against the windows' bytes.

    Peak RSS is the kernel's high-water mark of this process's memory (``VmHWM``), reset after the
    imports. ``getrusage().ru_maxrss`` is not used on Linux: it carries over the parent's peak across
    fork + exec, so a probe started by a large process would read the parent's size.
    """
    import resource

    import h5py  # noqa: F401
    import numpy  # noqa: F401
    import torch

    from seispolarity.data import WaveformDataset

    before = _proc_status_bytes("VmRSS")
    source = "VmHWM"
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # reset the high-water mark to the current RSS
    except OSError:
        pass
    if before is None:  # not Linux: ru_maxrss (KiB on Linux, bytes on macOS)
        source = "ru_maxrss"
        scale = 1 if sys.platform == "darwin" else 1024
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
    started = time.perf_counter()
    dataset = WaveformDataset(path, name="synthetic", preload=True, window_length=window_length,
                              max_shift=max_shift)
    seconds = time.perf_counter() - started
    if source == "VmHWM":
        peak = _proc_status_bytes("VmHWM")
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
    store = dataset._store
    assert isinstance(store, torch.Tensor)
    return {"peak_bytes": peak - before, "window_bytes": store.numel() * store.element_size(),
            "traces": len(dataset), "seconds": seconds, "baseline_rss_bytes": before, "source": source}


def run_probe(kind: str, payload, timeout: float = 600) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, os.path.abspath(__file__), f"--{kind}-probe", json.dumps(payload)],
                         capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"{kind} probe failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------------------
# The run


def median(values):
    return statistics.median(values) if values else float("nan")


def machine() -> dict:
    import torch

    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        load = os.getloadavg()
    except OSError:
        load = (float("nan"),) * 3
    return {"nproc": os.cpu_count(), "cpu": cpu, "torch": torch.__version__, "threads": torch.get_num_threads(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
            "python": platform.python_version(), "load_avg_start": [round(v, 2) for v in load],
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None}


def measure(args) -> dict:
    import torch

    from seispolarity.data import WaveformDataset
    from seispolarity.data.augment import AugmentConfig
    from seispolarity.models import get_model
    from seispolarity.training import resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    info = machine()
    device = resolve_device(args.device)
    results: dict = {"machine": info, "device": str(device), "model": args.model, "batch_size": args.batch_size,
                     "command": "python " + " ".join([os.path.relpath(os.path.abspath(__file__), os.getcwd())]
                                                     + sys.argv[1:]),
                     "rows": {}}
    rows = results["rows"]
    os.makedirs(args.cache_dir, exist_ok=True)
    path, base, seconds = big_file(args.cache_dir, args.base_traces, max(args.stream_traces, args.num_traces))
    results.update(file=path, file_seconds=seconds)
    log = (lambda *a: print(*a, file=sys.stderr, flush=True)) if args.verbose else (lambda *a: None)
    log(f"file ready ({seconds:.1f} s): {path}")

    torch.manual_seed(0)
    model = get_model(args.model)
    max_shift = AugmentConfig().max_shift
    window = int(model.input_length)
    results["parameters"] = sum(p.numel() for p in model.parameters())
    dataset = WaveformDataset(path, name="synthetic", preload=True, window_length=window, max_shift=max_shift,
                              max_traces=args.num_traces)
    results["num_traces"] = len(dataset)

    # -- training rows, interleaved --------------------------------------------------------------
    bench = Bench(model, dataset, args, device)
    kinds = [("limit", bench.limit), ("trainer", bench.trainer), ("docs_loop", bench.docs_loop)]
    for _, fn in kinds:  # warm-up: kernels, allocator, optimizer state
        fn(steps=1)
    samples: dict[str, list[float]] = {k: [] for k, _ in kinds}
    for rep in range(args.repeats):
        order = kinds[rep % 3:] + kinds[:rep % 3]
        for key, fn in order:
            samples[key].append(fn())
            log(f"repeat {rep + 1}: {key} {samples[key][-1]:.1f} samples/s")
    ratio_limit = [t / lim for t, lim in zip(samples["trainer"], samples["limit"])]
    ratio_docs = [t / d for t, d in zip(samples["trainer"], samples["docs_loop"])]
    for key in samples:
        rows[key] = {"samples_per_s": median(samples[key]), "all": samples[key]}
    rows["trainer"]["over_limit"] = median(ratio_limit)
    rows["trainer"]["over_limit_all"] = ratio_limit
    rows["trainer"]["over_docs"] = median(ratio_docs)
    rows["trainer"]["over_docs_all"] = ratio_docs
    results["docs_classify_only"] = bool(args.docs_classify_only) or not bench.uses_aux

    rows["syncs"] = syncs_per_step(model, dataset, args, device, max(2, args.steps))
    log(f"syncs: {rows['syncs']}")

    # -- data path, preloaded ----------------------------------------------------------------------
    trainer = make_trainer(model, dataset, args, device, steps=None)
    data_path(trainer, 0, max_batches=2)
    values = [data_path(trainer, rep + 1) for rep in range(max(3, args.repeats))]
    rows["data_preloaded"] = {"samples_per_s": median(values), "all": values}
    log(f"data path preloaded: {values}")
    if args.profile:
        results["profiles"] = profiles(bench, trainer)
    del trainer

    # -- data path, streaming ----------------------------------------------------------------------
    warm_page_cache(path)
    stream = WaveformDataset(path, name="synthetic", preload=False, window_length=window, max_shift=max_shift,
                             max_traces=args.stream_traces)
    results["stream_traces"] = len(stream)
    rows.update(streaming_rows(model, stream, args, device, log))
    stream.reader.close()
    del stream, bench, dataset

    # -- start-up ----------------------------------------------------------------------------------
    with tempfile.TemporaryDirectory(prefix="seispolarity-startup-") as tmp:
        overrides = [f"model={args.model}", f"data.num_traces={args.base_traces}", "data.max_traces=null",
                     f"paths.cache_dir={os.path.abspath(args.cache_dir)}", "test=false", "trainer.show_progress=false",
                     f"trainer.device={device.type}", f"hydra.run.dir={tmp}/run"]
        if os.path.isfile(os.path.join(ROOT, "conf", "report", "none.yaml")):
            overrides.insert(-1, "report=none")  # reports come after training, not at start-up
        # benchmarks/startup.py's probe (one composition), in a fresh interpreter each
        probes = [startup.run_probe("once", overrides) for _ in range(max(1, args.startup_repeats))]
    keys = [k for k, v in probes[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    rows["startup"] = {k: median([p[k] for p in probes]) for k in keys}
    rows["startup"]["overhead_s"] = rows["startup"]["startup_s"]  # this row's name for it
    rows["startup"]["all_overhead_s"] = [p["startup_s"] for p in probes]
    rows["startup"]["command"] = "python train.py " + " ".join(overrides[:-1])
    log(f"start-up: {probes}")

    # -- preload memory ----------------------------------------------------------------------------
    rows["preload_memory"] = run_probe("memory", [path, window, max_shift])
    log(f"memory: {rows['preload_memory']}")
    try:
        results["machine"]["load_avg_end"] = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        pass
    return results


def _fmt_rate(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def _spread(values) -> str:
    return f"{_fmt_rate(min(values))} .. {_fmt_rate(max(values))}" if values else ""


def table(results: dict) -> str:
    r = results["rows"]
    m = results["machine"]
    lines = [
        f"model {results['model']} ({results['parameters']:,} parameters), batch {results['batch_size']}, "
        f"device {results['device']}, torch {m['torch']} ({m['threads']} threads, OMP_WAIT_POLICY "
        f"{m['omp_wait_policy']}), {m['nproc']} CPUs ({m['cpu']})"
        + (f", GPU {m['gpu']}" if m.get("gpu") else ""),
        f"file: {os.path.relpath(results['file'], ROOT)} ({results['stream_traces']:,} traces; training rows use "
        f"the first {results['num_traces']:,}); load average {m['load_avg_start']} -> {m.get('load_avg_end')}",
        f"command: {results['command']}",
    ]
    busy = max(m["load_avg_start"][0], (m.get("load_avg_end") or [0])[0])
    if busy > (m["nproc"] or 1) - 0.5 and m["threads"] > 1 and m["omp_wait_policy"].upper() != "PASSIVE":
        lines.append(f"WARNING: load average {busy:.1f} on {m['nproc']} CPUs with {m['threads']} spinning OpenMP "
                     f"threads: expect noisy, low numbers; --threads 1 or --omp-wait-policy passive measure the code, "
                     f"not the crowd")
    lines += [
        "",
        "| row | samples/s (median) | spread | ratio | target | met |",
        "|---|---:|---:|---:|---|---|",
    ]

    def row(name, value, spread="", ratio="", target="", met=None):
        mark = "" if met is None else ("yes" if met else "NO")
        lines.append(f"| {name} | {value} | {spread} | {ratio} | {target} | {mark} |")

    lim, tr, docs = r["limit"], r["trainer"], r["docs_loop"]
    row("limit: fwd + bwd + step, batches in memory", _fmt_rate(lim["samples_per_s"]), _spread(lim["all"]), "1.00")
    row("trainer: Trainer.train(), no validation", _fmt_rate(tr["samples_per_s"]), _spread(tr["all"]),
        f"trainer/limit {tr['over_limit']:.3f}", ">= 0.95", tr["over_limit"] >= TARGETS["trainer_over_limit"])
    docs_name = "docs loop: DataLoader(shuffle=True)" + ("" if results["docs_classify_only"] else " + pick loss")
    row(docs_name, _fmt_rate(docs["samples_per_s"]), _spread(docs["all"]),
        f"trainer/docs {tr['over_docs']:.3f}", ">= 1.0", tr["over_docs"] >= TARGETS["trainer_over_docs"])
    d = r["data_preloaded"]
    row("data path, preloaded, flip + noise + shift", _fmt_rate(d["samples_per_s"]), _spread(d["all"]),
        f"{d['samples_per_s'] / lim['samples_per_s']:,.0f} x limit", ">= 500,000",
        d["samples_per_s"] >= TARGETS["data_preloaded"])
    for workers in (0, 1, 2):
        s = r[f"data_streaming_w{workers}"]
        started = "" if s.get("started", workers) == workers else f" ({s['started']} started)"
        row(f"data path, streaming {results['stream_traces']:,}-trace file, {workers} workers{started}",
            _fmt_rate(s["samples_per_s"]), _spread(s["all"]),
            f"{s['samples_per_s'] / lim['samples_per_s']:,.0f} x limit"
            + (f", {s['over_w0']:.2f} x 0 workers ({min(s['over_w0_all']):.2f} .. {max(s['over_w0_all']):.2f})"
               if workers else ""),
            ">= 100,000" + (", >= 0 workers" if workers else ""),
            s["samples_per_s"] >= TARGETS["data_streaming"] and (not workers or min(s["over_w0_all"]) >= 1.0))
    sy = r["syncs"]
    row("host syncs per training step", f"{sy['per_step']:.2f}",
        f"epochs of {sy['steps']} / {2 * sy['steps']} steps: {sy['epoch_n']} / {sy['epoch_2n']}",
        sy.get("counted", ""), "0", sy["per_step"] == 0)
    st = r["startup"]
    row("start-up: train.py compose + instantiate - import torch, hydra", f"{st['overhead_s']:.2f} s",
        f"{min(st['all_overhead_s']):.2f} .. {max(st['all_overhead_s']):.2f} s",
        f"(imports: torch+hydra {st['import_torch_hydra_s']:.2f} s, torch._dynamo {st['import_dynamo_s']:.2f} s)",
        "< 0.5 s", st["overhead_s"] < TARGETS["startup_s"])
    mem = r["preload_memory"]
    budget = 1.3 * mem["window_bytes"] + 300e6  # bytes: 1.3 x the windows + 300 MB
    row(f"preload peak memory, {mem['traces']:,} traces", f"{mem['peak_bytes'] / MB:,.0f} MiB",
        f"windows {mem['window_bytes'] / MB:,.0f} MiB", f"{mem['peak_bytes'] / mem['window_bytes']:.2f} x windows",
        f"< 1.3 x + 300 MB = {budget / MB:,.0f} MiB", mem["peak_bytes"] < budget)
    lines += ["", startup.parts_line(st),
              f"per-repeat trainer/limit: {', '.join(f'{v:.3f}' for v in tr['over_limit_all'])}; trainer/docs: "
              f"{', '.join(f'{v:.3f}' for v in tr['over_docs_all'])}",
              f"trainer/limit expected from the parts (the data path is most of the trainer's extra work): "
              f"1 / (1 + limit / data path) = {1 / (1 + lim['samples_per_s'] / d['samples_per_s']):.4f}"]
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="ross", help="a registered model name (ross, ppnet, ...)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--num-traces", type=int, default=20000, help="traces of the training rows (first rows of the file)")
    p.add_argument("--base-traces", type=int, default=20000, help="synthetic traces generated, then tiled")
    p.add_argument("--stream-traces", type=int, default=200000, help="traces of the streaming / memory file")
    p.add_argument("--device", default="auto", help="cpu, cuda, mps or auto")
    p.add_argument("--repeats", type=int, default=5, help="interleaved repeats of the training rows")
    p.add_argument("--steps", type=int, default=3, help="optimizer steps per training-row repeat")
    p.add_argument("--startup-repeats", type=int, default=3, help="fresh `python train.py` processes timed")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--omp-wait-policy", choices=("passive", "active"), default=None,
                   help="run with OMP_WAIT_POLICY set (passive: waiting OpenMP threads sleep instead of "
                        "spinning, which keeps a shared, oversubscribed CPU usable; see README)")
    p.add_argument("--stream-repeats", type=int, default=3)
    p.add_argument("--stream-batches", type=int, default=None, help="batches per streaming pass (default: an epoch)")
    p.add_argument("--amp", default=False, help="False, bf16 or fp16 (Trainer and limit alike)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (Trainer and limit alike)")
    p.add_argument("--docs-classify-only", action="store_true",
                   help="docs loop verbatim (no pick-mask loss even for PPNet)")
    p.add_argument("--cache-dir", default=os.path.join(ROOT, "data", "cache", "benchmarks"))
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--profile", action="store_true",
                   help="also print torch.profiler tables of one trainer epoch and one data-path epoch")
    p.add_argument("--verbose", "-v", action="store_true", help="progress on stderr")
    p.add_argument("--memory-probe", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.amp in ("False", "false", "none", "0"):
        args.amp = False
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    policy = (args.omp_wait_policy or "").upper()
    if policy and os.environ.get("OMP_WAIT_POLICY", "").upper() != policy:
        # OpenMP reads it when torch loads: start again with it set.
        env = dict(os.environ, OMP_WAIT_POLICY=policy)
        rest = argv if argv is not None else sys.argv[1:]
        os.execve(sys.executable, [sys.executable, os.path.abspath(__file__), *rest], env)
    if args.memory_probe is not None:
        print(json.dumps(memory_probe(*json.loads(args.memory_probe))))
        return 0
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    started = time.perf_counter()
    results = measure(args)
    results["seconds"] = time.perf_counter() - started
    print(table(results))
    for name, text in results.get("profiles", {}).items():
        print(f"\n{name}\n{text}")
    print(f"\n(benchmark took {results['seconds']:.0f} s)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
