"""Sim-to-real check: train on the synthetic default only, score on real files.

    python benchmarks/sim2real.py REAL.hdf5 [REAL2.hdf5 ...] [--model ppnet] [--traces 16000]
        [--epochs 10] [--knob name=value ...] [--augment name=value ...] [--json out.json]

It trains one model through the plain API with the default job's budget and settings (PPNet, 16,000
synthetic traces, 10 epochs, batch 128, Adam 1e-3, the runner's default augmentation), then scores
it on each real file (SCSN layout unless ``--layout`` says otherwise) beside the first-break
threshold picker (``seispolarity.baselines.first_break_polarity``). Up/down accuracy is the share
of the up- and down-labelled traces predicted with the right sign (an "unknown" answer counts as
wrong). Nothing is trained or tuned on the real files.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from seispolarity import WaveformDataset
from seispolarity.baselines import first_break_polarity
from seispolarity.cli_args import parse_value, split_option
from seispolarity.data.augment import AugmentConfig
from seispolarity.data.presets import synthetic_dataset
from seispolarity.models import get_model
from seispolarity.training import Trainer, TrainingConfig, seed_everything


def _pairs(items: list[str]) -> dict:
    """``name=value`` options; a comma-separated value is a list (a range, e.g. ``snr_db=5,40``)."""
    out = {}
    for item in items:
        option = split_option(item)
        if option is None:
            raise SystemExit(f"error: {item!r}: expected name=value")
        key, value = option
        out[key] = [parse_value(v) for v in value.split(",")] if "," in value else parse_value(value)
    return out


def baseline_updown(path: str, layout: str) -> tuple[float, int]:
    """First-break picker's up/down accuracy on a real file (raw waveforms, P from the reader)."""
    ds = WaveformDataset(path, name=layout, preload=True, normalize="none", window_length=400)
    batch = ds.get_batch(np.arange(len(ds)))
    x, y = batch["waveforms"].numpy()[:, 0], batch["labels"].numpy()
    picks = batch["p_index"].numpy() if "p_index" in batch else np.full(len(y), x.shape[1] // 2)
    pred = first_break_polarity(x, picks, ds.sampling_rate)
    ud = y < 2
    return float((pred[ud] == y[ud]).mean()), int(ud.sum())


def train_synthetic(model_name: str, traces: int, epochs: int, seed: int, knobs: dict, augment: dict,
                    batch_size: int, lr: float, cache_dir: str):
    seed_everything(seed)
    model = get_model(model_name)
    t0 = time.time()
    data = synthetic_dataset(cache_dir=cache_dir, num_traces=traces, seed=0, preload=True,
                             window_length=model.input_length, max_shift=int(augment.get("max_shift", 5)),
                             unknown="drop" if model.num_classes == 2 else "keep",  # as the runner's auto
                             knobs=knobs)
    print(f"synthetic data: {traces} traces ready in {time.time() - t0:.1f} s (generated on first use, then cached)",
          flush=True)
    config = TrainingConfig(batch_size=batch_size, epochs=epochs, learning_rate=lr, device="auto",
                            num_workers=0, seed=seed, save_dir=None, tensorboard_dir=None,
                            early_stopping_patience=5, validation_split=0.1, test_split=0.1, log_every=10**9)
    trainer = Trainer(model=model, dataset=data, config=config, augment=AugmentConfig(**augment))
    trainer.train()
    return trainer


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("real", nargs="+", help="real labelled files to score on")
    ap.add_argument("--layout", default="SCSN", help="layout of the real files (default SCSN)")
    ap.add_argument("--model", default="ppnet", help="zoo model(s), comma-separated (default ppnet)")
    ap.add_argument("--traces", type=int, default=16000)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--knob", nargs="*", default=[], help="SyntheticConfig fields, name=value")
    ap.add_argument("--augment", nargs="*", default=[], help="AugmentConfig fields, name=value")
    ap.add_argument("--cache-dir", default="data/cache")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    knobs, augment = _pairs(args.knob), _pairs(args.augment)

    rows = []
    baselines = {Path(p).stem: baseline_updown(p, args.layout) for p in args.real}
    for name in args.model.split(","):
        t0 = time.time()
        trainer = train_synthetic(name, args.traces, args.epochs, args.seed, knobs, augment,
                                  args.batch_size, args.lr, args.cache_dir)
        row = {"model": name, "train_s": round(time.time() - t0, 1),
               "synthetic_test_accuracy": trainer.evaluate()["accuracy"]}
        for path in args.real:
            real = WaveformDataset(path, name=args.layout, preload=True,
                                   window_length=trainer.model.input_length, normalize=trainer.normalize)
            m = trainer.evaluate(real)
            row[Path(path).stem] = m["updown_accuracy"]
        rows.append(row)
        print(json.dumps(row), flush=True)

    print("\n| model | synthetic test acc | " + " | ".join(f"{k} U/D" for k in baselines) + " | train s |")
    print("|---|---|" + "---|" * len(baselines) + "---|")
    print("| first-break picker | - | " + " | ".join(f"{a:.3f} ({n})" for a, n in baselines.values()) + " | - |")
    for r in rows:
        print(f"| {r['model']} | {r['synthetic_test_accuracy']:.3f} | "
              + " | ".join(f"{r[k]:.3f}" for k in baselines) + f" | {r['train_s']} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "baselines": baselines, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
