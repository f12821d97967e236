"""The GPU check: one command, a few minutes on one GPU, one JSON and one markdown table.

    bash benchmarks/gpu_check.sh [--out-dir DIR] [--tiny]      # or: python benchmarks/gpu_check.py ...

Rows (each on the same synthetic file; ``benchmarks/throughput.py``'s ``Bench`` and ``data_path``):

- ``train``: limit (forward + backward + step on batches in memory) and ``Trainer.train()`` on CUDA, the
  ratio trainer / limit, peak GPU memory, for Ross and PPNet at batch 256 and 1024, fp32, AMP bf16 and
  AMP fp16;
- ``compile``: the same with ``trainer.compile=true`` (bf16, batch 256; compile time reported apart);
- ``syncs``: host syncs per training step, counted with ``torch.cuda.set_sync_debug_mode("warn")``
  over an epoch of N and one of 2N steps: (warnings(2N) - warnings(N)) / N, so the fixed syncs of an
  epoch's start and end drop out; the target is 0 per step;
- ``data``: the Trainer's data path alone feeding the GPU (one copy of the raw batch, crop + flip + noise
  + shift + normalise on the device), preloaded, batch 256 and 1024;
- ``ddp``: ``torchrun --standalone --nproc_per_node=1 train.py trainer=ddp trainer.device=cuda`` (NCCL),
  a short epoch; its exit status and wall time.

Without CUDA every CUDA row is written as ``skipped: no CUDA`` and a small CPU row runs instead (the
same code path on the CPU), so the check is known to work before a GPU is at hand. ``--tiny`` (or
``GPU_CHECK_TINY=1``) shrinks the budget to seconds (the smoke test's setting). Nothing here fails on
a slow number; a row that raises is recorded as ``error: ...`` and the exit status is 1.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SKIP = "skipped: no CUDA"
MODELS = ("ross", "ppnet")
BATCHES = (256, 1024)
AMPS = (False, "bf16", "fp16")
COLUMNS = ("row", "model", "batch", "amp", "compile", "limit/s", "trainer/s", "trainer/limit", "data/s",
           "syncs/step", "peak GPU MiB", "seconds", "status")


def plan(tiny: bool) -> list[dict]:
    """Every row the check reports, CUDA or not."""
    rows = []
    for model in MODELS:
        for batch in BATCHES:
            for amp in AMPS:
                rows.append(dict(row="train", model=model, batch=batch, amp=amp, compile=False, cuda=True))
        rows.append(dict(row="compile", model=model, batch=256, amp="bf16", compile=True, cuda=True))
        rows.append(dict(row="syncs", model=model, batch=256, amp="bf16", compile=False, cuda=True))
    for batch in BATCHES:
        rows.append(dict(row="data", model="ross", batch=batch, amp="bf16", compile=False, cuda=True))
    rows.append(dict(row="ddp", model="ross", batch=256, amp="bf16", compile=False, cuda=True))
    # the CPU path: the same code on the CPU (run everywhere; small)
    rows.append(dict(row="train", model="ross", batch=32 if tiny else 256, amp=False, compile=False, cuda=False))
    rows.append(dict(row="data", model="ross", batch=32 if tiny else 256, amp=False, compile=False, cuda=False))
    return rows


def _bench_args(row: dict, steps: int):
    return argparse.Namespace(batch_size=row["batch"], amp=row["amp"], compile=row["compile"], steps=steps,
                              docs_classify_only=False)


class Check:
    def __init__(self, args) -> None:
        import torch

        sys.path.insert(0, HERE)
        sys.path.insert(0, ROOT)
        import throughput as tp

        self.tp, self.torch, self.args = tp, torch, args
        self.cuda = torch.cuda.is_available() and not args.no_cuda
        os.makedirs(args.cache_dir, exist_ok=True)
        self.path, _, self.file_seconds = tp.big_file(args.cache_dir, args.num_traces, args.num_traces)
        self.datasets: dict = {}

    def dataset(self, model):
        from seispolarity.data import WaveformDataset
        from seispolarity.data.augment import AugmentConfig

        window = int(model.input_length)
        if window not in self.datasets:
            self.datasets[window] = WaveformDataset(self.path, name="synthetic", preload=True, window_length=window,
                                                    max_shift=AugmentConfig().max_shift)
        return self.datasets[window]

    def model(self, name):
        from seispolarity.models import get_model

        self.torch.manual_seed(0)
        return get_model(name)

    def device(self, row):
        return self.torch.device("cuda" if row["cuda"] else "cpu")

    def _reset_peak(self, device):
        if device.type == "cuda":
            self.torch.cuda.synchronize(device)
            self.torch.cuda.reset_peak_memory_stats(device)

    def _peak(self, device):
        return self.torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None

    # -- rows --------------------------------------------------------------------------------------

    def train(self, row) -> dict:
        device = self.device(row)
        steps = self.args.steps if device.type == "cuda" else min(self.args.steps, 3)
        model = self.model(row["model"]).to(device)
        dataset = self.dataset(model)
        args = _bench_args(row, steps)
        self._reset_peak(device)
        t = time.perf_counter()
        bench = self.tp.Bench(model, dataset, args, device)
        bench.limit(steps=1)
        bench.trainer(steps=1)  # warm-up (and the compile, when compiling)
        out = {"warmup_s": time.perf_counter() - t}
        limits, trainers = [], []
        for _ in range(self.args.repeats):
            limits.append(bench.limit())
            trainers.append(bench.trainer())
        ratios = sorted(tr / lim for tr, lim in zip(trainers, limits))
        out.update({"limit_per_s": sorted(limits)[len(limits) // 2],
                    "trainer_per_s": sorted(trainers)[len(trainers) // 2],
                    "trainer_over_limit": ratios[len(ratios) // 2], "peak_mib": self._peak(device)})
        return out

    def syncs(self, row) -> dict:
        device, n = self.device(row), self.args.steps
        model = self.model(row["model"]).to(device)
        dataset = self.dataset(model)
        args = _bench_args(row, n)
        self._reset_peak(device)
        if device.type != "cuda":
            raise RuntimeError("the syncs row needs CUDA")
        out = self.tp.syncs_per_step(model, dataset, args, device, n)  # (syncs(2N) - syncs(N)) / N
        return {"syncs_per_step": out["per_step"], "syncs_epoch_n": out["epoch_n"],
                "syncs_epoch_2n": out["epoch_2n"], "steps": n, "peak_mib": self._peak(device)}

    def data(self, row) -> dict:
        device = self.device(row)
        model = self.model(row["model"])
        dataset = self.dataset(model)
        trainer = self.tp.make_trainer(model, dataset, _bench_args(row, None), device, steps=None)
        batches = max(2, min(self.args.data_batches, len(trainer.epoch_batches(0))))
        self._reset_peak(device)
        self.tp.data_path(trainer, 0, max_batches=2)
        values = sorted(self.tp.data_path(trainer, e + 1, max_batches=batches) for e in range(self.args.repeats))
        return {"data_per_s": values[len(values) // 2], "all": values, "batches": batches,
                "peak_mib": self._peak(device)}

    def ddp(self, row) -> dict:
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
                   os.path.join(ROOT, "train.py"), "trainer=ddp", "trainer.device=cuda", f"model={row['model']}",
                   "trainer.amp=bf16", f"trainer.batch_size={row['batch']}", "trainer.epochs=1",
                   f"trainer.max_steps_per_epoch={self.args.steps * 2}", "trainer.show_progress=false", "test=false",
                   f"data.num_traces={self.args.num_traces}", f"paths.cache_dir={self.args.cache_dir}",
                   f"paths.log_dir={tmp}", f"hydra.run.dir={os.path.join(tmp, 'run')}"]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=self.args.ddp_timeout, cwd=ROOT)
        if proc.returncode != 0:
            raise RuntimeError(f"torchrun exit {proc.returncode}: {(proc.stderr or proc.stdout)[-1500:]}")
        rates = [line for line in proc.stdout.splitlines() + proc.stderr.splitlines() if "samples/s" in line]
        return {"backend": "nccl", "command": " ".join(cmd[:2] + ["torch.distributed.run"] + cmd[3:]),
                "last_epoch_line": rates[-1].strip() if rates else None}

    def run(self, row) -> dict:
        out = {k: row[k] for k in ("row", "model", "batch", "amp", "compile")}
        out["device"] = "cuda" if row["cuda"] else "cpu"
        if row["cuda"] and not self.cuda:
            out["status"] = SKIP
            return out
        if not row["cuda"] and self.cuda:
            out["status"] = "skipped: CUDA run (the cpu rows stand in for a machine without one)"
            return out
        t = time.perf_counter()
        try:
            out.update(getattr(self, row["row"])(row))
            out["status"] = "ok"
        except Exception as exc:  # a row that fails is reported, the others still run
            out["status"] = f"error: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
            out["traceback"] = traceback.format_exc()[-3000:]
        finally:
            if row["cuda"] and self.cuda:
                self.torch.cuda.empty_cache()
        out["seconds"] = time.perf_counter() - t
        return out


def _fmt(value, digits=0):
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def markdown(result: dict) -> str:
    lines = [f"GPU check: {result['device_name']}, torch {result['torch']}, {result['num_traces']} traces, "
             f"{result['steps']} steps x {result['repeats']} repeats per row"
             + (" (tiny budget)" if result["tiny"] else "") + f"; {result['seconds']:.0f} s in all.", ""]
    if not result["cuda"]:
        lines += ["No CUDA on this machine: the CUDA rows are marked \"skipped: no CUDA\"; the cpu rows ran.", ""]
    lines.append("| " + " | ".join(COLUMNS) + " |")
    lines.append("|" + "|".join("---" if c in ("row", "model", "status", "amp") else "---:" for c in COLUMNS) + "|")
    for r in result["rows"]:
        cells = [r["row"] + ("" if r["device"] == "cuda" else " (cpu)"), r["model"], str(r["batch"]),
                 str(r["amp"] or "fp32"), "yes" if r["compile"] else "",
                 _fmt(r.get("limit_per_s")), _fmt(r.get("trainer_per_s")), _fmt(r.get("trainer_over_limit"), 3),
                 _fmt(r.get("data_per_s")), _fmt(r.get("syncs_per_step"), 2), _fmt(r.get("peak_mib"), 0),
                 _fmt(r.get("seconds"), 1), r["status"]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def parse_args(argv=None):
    tiny_env = os.environ.get("GPU_CHECK_TINY", "").lower() not in ("", "0", "false", "no")
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out-dir", default=os.path.join(ROOT, "benchmarks", "results"))
    p.add_argument("--tiny", action="store_true", default=tiny_env, help="seconds, not minutes (smoke test)")
    p.add_argument("--no-cuda", action="store_true", help="take the CPU path even where CUDA is at hand")
    p.add_argument("--num-traces", type=int, default=None, help="default 20000 (tiny: 600)")
    p.add_argument("--steps", type=int, default=None, help="steps per timed row (default 20; tiny: 2)")
    p.add_argument("--repeats", type=int, default=None, help="default 3 (tiny: 1)")
    p.add_argument("--data-batches", type=int, default=None, help="default 40 (tiny: 4)")
    p.add_argument("--ddp-timeout", type=float, default=180)
    p.add_argument("--cache-dir", default=os.path.join(ROOT, "data", "cache", "benchmarks"))
    args = p.parse_args(argv)
    for name, full, tiny in (("num_traces", 20000, 600), ("steps", 20, 2), ("repeats", 3, 1),
                             ("data_batches", 40, 4)):
        if getattr(args, name) is None:
            setattr(args, name, tiny if args.tiny else full)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    check = Check(args)
    torch = check.torch
    rows = []
    for row in plan(args.tiny):
        rows.append(check.run(row))
        r = rows[-1]
        print(f"{r['row']:8s} {r['device']:4s} {r['model']:6s} {r['batch']:5d} {str(r['amp'] or 'fp32'):5s} "
              f"{'compile' if r['compile'] else '':7s} {r['status']}", file=sys.stderr, flush=True)
    result = {
        "command": "bash benchmarks/gpu_check.sh " + " ".join(argv if argv is not None else sys.argv[1:]),
        "cuda": check.cuda, "torch": torch.__version__,
        "device_name": torch.cuda.get_device_name(0) if check.cuda else "no CUDA (cpu path)",
        "tiny": bool(args.tiny), "num_traces": args.num_traces, "steps": args.steps, "repeats": args.repeats,
        "file": check.path, "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "seconds": time.perf_counter() - started, "rows": rows,
    }
    os.makedirs(args.out_dir, exist_ok=True)
    json_path = os.path.join(args.out_dir, "gpu_check.json")
    md_path = os.path.join(args.out_dir, "gpu_check.md")
    with open(json_path, "w") as fh:
        json.dump(result, fh, indent=2, default=str)
    table = markdown(result)
    with open(md_path, "w") as fh:
        fh.write(table)
    print(table)
    print(f"wrote {json_path} and {md_path}")
    return 1 if any(r["status"].startswith("error") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
