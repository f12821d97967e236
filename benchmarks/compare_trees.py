"""Before / after: the data path and start-up of two checkouts, in alternating fresh processes.

    git worktree add /tmp/base <commit>
    python benchmarks/compare_trees.py /tmp/base [--pairs 4] [--threads N] [--rows preloaded,streaming,startup]
                                                 (also: streaming_w1, streaming_w2)

Each pair runs one process per checkout, the order swapped every pair, so a machine that drifts
(shared cores run 20-40 % slower in some hours than in others) slows both alike; the ratio is the
median of the per-pair ratios. Rows:

- ``preloaded``: ``throughput.data_path`` (the Trainer's epoch order, batches, crop, augmentation and
  normalisation, no model) over 5 epochs of the first 20,000 traces of throughput.py's file, preloaded,
  Ross's window; a separate Trainer warms up first, so the timed one pays its own first draws;
- ``streaming``: the same over 3 x 150 batches read from the 200,000-trace file (``preload=False``, 0 workers);
  ``streaming_w1``, ``streaming_w2``: with ``num_workers`` 1 or 2 asked of the Trainer;
- ``startup``: ``startup.py``'s probe (``train.py`` until the first epoch, beyond the imports), each
  checkout's own probe and ``train.py``.

Each checkout's own ``benchmarks/`` and package are used (``PYTHONPATH``); throughput.py's file is
made once, in this checkout's cache. Nothing here is a test: it reports.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CACHE = os.path.join(ROOT, "data", "cache", "benchmarks")

DATA_PROBE = r"""
import json, sys
root, threads, workers, cache = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
streaming = workers != "preloaded"
sys.path[:0] = [root + "/benchmarks", root]
import torch
if threads:
    torch.set_num_threads(int(threads))
from throughput import big_file, data_path, make_trainer, parse_args
from seispolarity.data import WaveformDataset
from seispolarity.models import get_model
args = parse_args([])
path, _, _ = big_file(cache, 20000, 200000)
model = get_model("ross")
window = int(model.input_length)
if streaming:
    ds = WaveformDataset(path, name="synthetic", preload=False, window_length=window, max_shift=5)
else:
    ds = WaveformDataset(path, name="synthetic", preload=True, window_length=window, max_shift=5, max_traces=20000)
cpu = torch.device("cpu")
data_path(make_trainer(model, ds, args, cpu, steps=None), 0, 20 if streaming else 2)
trainer = make_trainer(model, ds, args, cpu, steps=None, num_workers=int(workers) if streaming else 0)
epochs, batches = (3, 150) if streaming else (5, None)
rates = [data_path(trainer, e + 1, batches) for e in range(epochs)]
print(json.dumps(sorted(rates)[len(rates) // 2]))
"""

STARTUP_OVERRIDES = ["model=ppnet", "data.num_traces=2000", "data.max_traces=null", f"paths.cache_dir={CACHE}",
                     "test=false", "report=none", "trainer.show_progress=false", "trainer.device=cpu"]


def _env(root: str) -> dict:
    env = dict(os.environ, PYTHONPATH=root)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # bytecode cached, as an installed package runs
    return env


def probe(row: str, root: str, threads: str, tag: str) -> float:
    """One fresh process of ``row`` in the checkout at ``root``: samples/s, or start-up seconds."""
    if row == "startup":
        cmd = [sys.executable, os.path.join(root, "benchmarks", "startup.py"), "--probe", "once", "--",
               *STARTUP_OVERRIDES, f"hydra.run.dir={os.path.join(CACHE, 'compare_trees', tag)}"]
    else:
        workers = "preloaded" if row == "preloaded" else row.partition("_w")[2] or "0"
        cmd = [sys.executable, "-c", DATA_PROBE, root, threads, workers, CACHE]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=root, env=_env(root), timeout=900)
    if out.returncode != 0:
        raise SystemExit(f"error: {row} probe in {root} failed:\n{out.stderr[-2000:]}")
    value = json.loads(out.stdout.strip().splitlines()[-1])
    return float(value["startup_s"] if row == "startup" else value)


def compare(row: str, roots: dict[str, str], pairs: int, threads: str) -> dict:
    probe(row, roots["base"], threads, "warm-base")  # bytecode, page cache, the synthetic files
    probe(row, roots["now"], threads, "warm-now")
    values: dict[str, list[float]] = {"base": [], "now": []}
    for i in range(pairs):
        for side in (("base", "now") if i % 2 else ("now", "base")):
            values[side].append(probe(row, roots[side], threads, f"{side}{i}"))
    ratios = [n / b for n, b in zip(values["now"], values["base"])]
    return {"base": statistics.median(values["base"]), "now": statistics.median(values["now"]),
            "ratio": statistics.median(ratios), "ratios": ratios, "values": values}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("base", help="the other checkout (e.g. a git worktree of the commit to compare with)")
    ap.add_argument("--pairs", type=int, default=4)
    ap.add_argument("--threads", default="", help="torch threads in the data-path probes (default: torch's)")
    ap.add_argument("--rows", default="preloaded,streaming,startup")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)
    base = os.path.abspath(args.base)
    if not os.path.isfile(os.path.join(base, "train.py")):
        print(f"error: {base}: not a checkout of this project (no train.py)", file=sys.stderr)
        return 2
    roots = {"base": base, "now": ROOT}
    results = {}
    print(f"| row | {base} | this checkout | now / base (median of {args.pairs} pairs) |\n|---|---:|---:|---:|")
    for row in [r.strip() for r in args.rows.split(",") if r.strip()]:
        r = results[row] = compare(row, roots, max(1, args.pairs), args.threads)
        fmt = (lambda v: f"{v:.3f} s") if row == "startup" else (lambda v: f"{v:,.0f} samples/s")
        print(f"| {row} | {fmt(r['base'])} | {fmt(r['now'])} | {r['ratio']:.2f} "
              f"({min(r['ratios']):.2f} .. {max(r['ratios']):.2f}) |", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"base": base, "threads": args.threads or "torch's default", "rows": results}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
