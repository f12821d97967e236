"""Side by side with SeisPolarity 0.1.4: the same file, model and batch through its Trainer's data
pipeline and training step, and through ours, in one run; prints the ratios (ours / theirs).

    python benchmarks/vs_seispolarity.py [--theirs-python /tmp/sp014/bin/python] [--batch-size 256]
                                         [--num-traces 20000] [--rounds 3] [--steps 6] [--data-batches 40]

0.1.4 runs in a virtualenv of its own (its package is also called ``seispolarity``), in a subprocess:

    python -m venv /tmp/sp014 && /tmp/sp014/bin/pip install seispolarity==0.1.4 torch==2.13.0

Without it the script says so and exits 0 (a skip, not a failure).

What runs on each side (the same synthetic HDF5 file in the flat/SCSN layout: ``X`` 800-sample
windows, ``Y`` labels, ``p_pick``; 400-sample windows around the pick; Ross, which 0.1.4 calls
``SCSN``; the same batch; CPU; ``--threads`` torch threads on both):

- theirs, data pipeline: ``WaveformDataset(path, preload=True, crop_left=200, crop_right=200,
  augmentations=[RandomTimeShift, OneOf(PolarityInversion | none), Normalize(peak), GaussianNoise,
  ChangeDtype(float32)])``, wrapped by their ``Trainer._build_loaders()`` (``GenericGenerator`` +
  ``MetadataToLabel`` + ``DataLoader(shuffle=True, collate_fn=Trainer._collate_fn)``); timed over
  ``--data-batches`` batches;
- theirs, train loop: the body of their ``Trainer.train()`` loop (to device, forward,
  ``CrossEntropyLoss``, backward, Adam step, ``loss.item()``, accuracy sums) over that loader,
  ``--steps`` steps (their ``train()`` itself always adds a validation and a test pass and writes
  checkpoints, which are not the train loop);
- ours, data pipeline: the Trainer's data path (epoch order, batches, crop + flip + noise + shift +
  peak normalisation; ``benchmarks/throughput.py``'s ``data_path``);
- ours, train loop: ``Trainer.train()`` of ``--steps`` steps, its own ``samples_per_second``.

Each round measures ours then theirs (a fresh 0.1.4 process: its import and preload are not timed);
the ratios are the medians of the per-round ratios, as the machines this runs on are shared.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_THEIRS = "/tmp/sp014/bin/python"
HOW_TO = "python -m venv /tmp/sp014 && /tmp/sp014/bin/pip install seispolarity==0.1.4 torch==2.13.0"

#: The 0.1.4 side, run with ``<theirs-python> -I -c THEIRS '<json args>'`` (isolated: our package,
#: of the same import name, is never on its path). Prints one JSON line.
THEIRS = r'''
import json, sys, time
import numpy as np
import torch
from torch import nn
import seispolarity
from seispolarity.data.base import WaveformDataset
from seispolarity.generate.augmentation import (ChangeDtype, GaussianNoise, Normalize, OneOf,
                                                PolarityInversion, RandomTimeShift)
from seispolarity.models.scsn import SCSN
from seispolarity.training.trainer import Trainer, TrainingConfig

a = json.loads(sys.argv[1])
torch.set_num_threads(a["threads"])
torch.manual_seed(a["seed"]); np.random.seed(a["seed"])
import logging; logging.disable(logging.WARNING)
half = a["window"] // 2
augs = [RandomTimeShift(max_shift=a["max_shift"]), OneOf([PolarityInversion(), lambda s: None]),
        Normalize(amp_norm_type="peak"), GaussianNoise(std=0.05), ChangeDtype(np.float32)]
ds = WaveformDataset(path=a["path"], name="synthetic", preload=True, crop_left=half, crop_right=half,
                     augmentations=augs)
cfg = TrainingConfig(batch_size=a["batch_size"], epochs=1, num_workers=0, device="cpu",
                     train_val_split=0.98, val_split=0.01, test_split=0.01, checkpoint_dir=a["tmp"],
                     random_seed=a["seed"])
model = SCSN(num_fm_classes=a["classes"])
trainer = Trainer(model, ds, cfg)
train_loader, _, _ = trainer._build_loaders()

def data_rate(n):
    count, it = 0, iter(train_loader)
    t = time.perf_counter()
    for _ in range(n):
        batch = next(it)
        x = batch["X"].to(trainer.device); y = batch["y"].to(trainer.device)
        count += len(y)
    return count / (time.perf_counter() - t), tuple(x.shape), str(x.dtype)

def train_rate(n):
    device = trainer.device
    model.to(device).train()
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
    running_loss, correct, total = 0.0, 0, 0
    it = iter(train_loader)
    t = time.perf_counter()
    for _ in range(n):
        batch = next(it)
        inputs = batch["X"].to(device); labels = batch["y"].to(device)
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels.squeeze(1).long()
        optimizer.zero_grad()
        outputs = model(inputs)
        loss = criterion(outputs, labels)
        loss.backward()
        optimizer.step()
        running_loss += loss.item()
        _, predicted = outputs.max(1)
        total += labels.size(0)
        correct += predicted.eq(labels).sum().item()
    return total / (time.perf_counter() - t)

data_rate(2); train_rate(1)  # warm-up
d, shape, dtype = data_rate(a["data_batches"])
tr = train_rate(a["steps"])
print(json.dumps({"version": getattr(seispolarity, "__version__", "?"), "torch": torch.__version__,
                  "data_per_s": d, "train_per_s": tr, "batch_shape": shape, "dtype": dtype,
                  "num_traces": len(ds)}))
'''


def theirs_available(python: str) -> tuple[bool, str]:
    if not python or not os.path.isfile(python):
        return False, f"no interpreter at {python}"
    try:
        out = subprocess.run([python, "-I", "-c", "import importlib.metadata as m, torch; "
                              "print(m.version('seispolarity'), torch.__version__)"],
                             capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    if out.returncode != 0:
        return False, out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "import failed"
    return True, out.stdout.strip()


def run_theirs(python: str, payload: dict) -> dict:
    proc = subprocess.run([python, "-I", "-c", THEIRS, json.dumps(payload)], capture_output=True, text=True,
                          timeout=1800, cwd=payload["tmp"])
    if proc.returncode != 0:
        raise RuntimeError(f"the 0.1.4 side failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--theirs-python", default=DEFAULT_THEIRS, help="python of a venv with seispolarity==0.1.4")
    p.add_argument("--model", default="ross", help="ours; theirs is the same network (0.1.4 SCSN)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--num-traces", type=int, default=20000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=6, help="train-loop steps per round and side")
    p.add_argument("--data-batches", type=int, default=40, help="data-pipeline batches per round and side")
    p.add_argument("--threads", type=int, default=1, help="torch threads, both sides")
    p.add_argument("--cache-dir", default=os.path.join(ROOT, "data", "cache", "benchmarks"))
    p.add_argument("--json", default=None, help="also write the results here")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    ok, what = theirs_available(args.theirs_python)
    if not ok:
        print(f"SKIPPED: SeisPolarity 0.1.4 is not available ({what}). Create its venv with:\n    {HOW_TO}\n"
              f"then run again (or pass --theirs-python PATH).")
        return 0
    if args.model != "ross":
        print("only --model ross is compared (the network both projects have with the same layers)")
        return 2

    sys.path.insert(0, HERE)
    sys.path.insert(0, ROOT)
    import throughput as tp
    import torch

    from seispolarity.data import WaveformDataset
    from seispolarity.data.augment import AugmentConfig
    from seispolarity.models import get_model

    torch.set_num_threads(args.threads)
    os.makedirs(args.cache_dir, exist_ok=True)
    path, _, _ = tp.big_file(args.cache_dir, args.num_traces, args.num_traces)
    torch.manual_seed(0)
    model = get_model(args.model)
    window = int(model.input_length)
    max_shift = AugmentConfig().max_shift
    classes = int(getattr(model, "num_classes", 3))
    dataset = WaveformDataset(path, name="synthetic", preload=True, window_length=window, max_shift=max_shift)
    bench_args = argparse.Namespace(batch_size=args.batch_size, amp=False, compile=False)
    device = torch.device("cpu")
    steps_per_epoch = len(dataset) // args.batch_size

    def ours_data(epoch: int) -> float:
        trainer = tp.make_trainer(model, dataset, bench_args, device, steps=None)
        return tp.data_path(trainer, epoch, max_batches=min(args.data_batches, steps_per_epoch))

    def ours_train(epoch: int) -> float:
        trainer = tp.make_trainer(model, dataset, bench_args, device, args.steps, seed=epoch)
        trainer.train()
        return float(trainer.history[-1]["samples_per_second"])

    ours_data(0)  # warm-up
    tp.make_trainer(model, dataset, bench_args, device, 1).train()
    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        payload = dict(path=os.path.abspath(path), batch_size=args.batch_size, window=window, max_shift=max_shift,
                       classes=classes, threads=args.threads, steps=args.steps, data_batches=args.data_batches,
                       seed=0, tmp=tmp)
        for r in range(args.rounds):
            ours = {"data_per_s": ours_data(r + 1), "train_per_s": ours_train(r + 1)}
            payload["seed"] = r
            theirs = run_theirs(args.theirs_python, payload)
            rounds.append({"ours": ours, "theirs": theirs,
                           "data_ratio": ours["data_per_s"] / theirs["data_per_s"],
                           "train_ratio": ours["train_per_s"] / theirs["train_per_s"]})
            print(f"round {r + 1}: data {ours['data_per_s']:,.0f} vs {theirs['data_per_s']:,.0f} samples/s, "
                  f"train {ours['train_per_s']:,.1f} vs {theirs['train_per_s']:,.1f} samples/s", file=sys.stderr,
                  flush=True)

    def med(values):
        return statistics.median(values)

    result = {
        "command": "python benchmarks/vs_seispolarity.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "file": path, "num_traces": len(dataset), "batch_size": args.batch_size, "model": args.model,
        "threads": args.threads, "theirs": what, "torch_ours": torch.__version__,
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "ours_data_per_s": med([r["ours"]["data_per_s"] for r in rounds]),
        "theirs_data_per_s": med([r["theirs"]["data_per_s"] for r in rounds]),
        "ours_train_per_s": med([r["ours"]["train_per_s"] for r in rounds]),
        "theirs_train_per_s": med([r["theirs"]["train_per_s"] for r in rounds]),
        "data_ratio": med([r["data_ratio"] for r in rounds]),
        "train_ratio": med([r["train_ratio"] for r in rounds]),
        "rounds": rounds,
    }
    print(f"SeisPolarity 0.1.4 ({what}) vs ours, {args.model}, batch {args.batch_size}, "
          f"{len(dataset)} traces, {args.threads} thread(s), {args.rounds} rounds (medians)")
    print("| | ours | 0.1.4 | ours / 0.1.4 |")
    print("|---|---:|---:|---:|")
    print(f"| data pipeline alone, samples/s | {result['ours_data_per_s']:,.0f} | "
          f"{result['theirs_data_per_s']:,.0f} | **{result['data_ratio']:.2f}** |")
    print(f"| train loop, samples/s | {result['ours_train_per_s']:,.1f} | {result['theirs_train_per_s']:,.1f} | "
          f"**{result['train_ratio']:.2f}** |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
