"""Numeric guards (issue 8, part 4), with genuine non-finite numbers, nothing mocked.

- A trace of huge but finite samples (3e37, normalize=none) passes the load-time NaN/Inf check
  but overflows the gradients; the run stops at that step, names the batch's rows (the culprit
  among them) and leaves the last good checkpoints byte-for-byte untouched.
- The deferred guard (what CUDA runs: flags on the device, read every ``log_every`` steps, at the
  epoch end and before checkpoints) still names the bad step and its rows and saves no NaN.
- ``on_nan_loss=skip`` skips exactly those batches and trains on; the skipped forward pass leaves
  no trace (BatchNorm statistics included), so the model stays finite.
- A learning rate of 1e37 (Adam) makes the loss itself NaN at the second step: through the CLI that is
  one ``error:`` line with the step and the rows, and no half-written metrics or checkpoints.
- NaN / Inf samples in the input are rejected at load (naming file and row) or dropped with a count.
"""
from __future__ import annotations

import logging
import re

import h5py
import numpy as np
import pytest
import torch

from _robustness import cli_overrides, last_line, run_cli, tiny_model, write_flat
from seispolarity.data import WaveformDataset
from seispolarity.data.readers import DataFormatError
from seispolarity.training import NonFiniteLossError, Trainer, TrainingConfig
from seispolarity.training.host_reads import HostReads

HUGE = 3e37  # finite in float32 (max 3.4e38); a convolution over it overflows


def make(path, save_dir=None, **overrides) -> Trainer:
    torch.manual_seed(0)
    dataset = WaveformDataset(path, name="flat", preload=True, window_length=400, normalize="none")
    config = TrainingConfig(**{"batch_size": 16, "epochs": 2, "learning_rate": 3e-3, "device": "cpu",
                               "num_workers": 0, "early_stopping_patience": None, "validation_split": 0.2,
                               "show_progress": False, "save_dir": str(save_dir) if save_dir else None,
                               **overrides})
    return Trainer(tiny_model(), dataset, config)


@pytest.fixture
def poisoned(tmp_path):
    """A file with one huge trace, placed in a batch of epoch 2 that epoch 1 (2 steps) never sees."""
    path = write_flat(tmp_path / "poisoned.hdf5", n=160)
    probe = make(path, max_steps_per_epoch=2)
    seen_first = set(torch.cat(probe.epoch_batches(1)).tolist())
    second = probe.epoch_batches(2)
    index = next(i for i in second[1].tolist() if i not in seen_first)  # in epoch 2's 2nd batch
    row = int(probe.train_dataset.rows[index])
    probe.train_dataset.reader.close()  # HDF5 refuses a writer while this process has it open
    with h5py.File(path, "r+") as f:
        x = f["X"][()]
        x[row] = HUGE
        f["X"][...] = x
    return path, row


def test_non_finite_step_stops_names_rows_and_keeps_last_good_checkpoint(poisoned, tmp_path):
    path, row = poisoned
    ckpt = tmp_path / "ckpt"
    make(path, ckpt, epochs=1, max_steps_per_epoch=2).train()  # one good epoch: checkpoints written
    files = {name: ((ckpt / name).read_bytes(), (ckpt / name).stat().st_mtime_ns) for name in ("last.ckpt", "best.ckpt")}

    trainer = make(path, ckpt, epochs=3, max_steps_per_epoch=2, resume_from=str(ckpt / "last.ckpt"))
    with pytest.raises(NonFiniteLossError) as info:
        trainer.train()
    message = str(info.value)
    assert re.search(r"^non-finite (loss|gradient norm) \S+.* at step 4 \(epoch 2, batch 2\); batch trace rows of "
                     + re.escape(str(path)) + r": \[[\d, ]+\]; the last good checkpoint is untouched", message), message
    rows = [int(r) for r in message.split(": [", 1)[1].split("]", 1)[0].split(", ")]
    assert row in rows and len(rows) == 16
    assert trainer.global_step == 3  # on the CPU the guard looks every step: it stopped at the bad one
    for name, before in files.items():
        assert ((ckpt / name).read_bytes(), (ckpt / name).stat().st_mtime_ns) == before, f"{name} was touched"
    assert sorted(p.name for p in ckpt.iterdir()) == ["best.ckpt", "last.ckpt"]


@pytest.mark.parametrize("log_every", [1, 100])
def test_deferred_guard_reports_the_bad_step_and_never_saves_nan(poisoned, tmp_path, log_every):
    """The CUDA mode of the guard, forced on the CPU: no host sync per step, the flags are read every
    log_every steps, at the epoch end and before any checkpoint. It still names the step the NaN
    happened at (step 4, epoch 2, batch 2) with its rows, and the checkpoints stay untouched."""
    path, row = poisoned
    ckpt = tmp_path / "ckpt"
    make(path, ckpt, epochs=1, max_steps_per_epoch=2).train()
    files = {name: ((ckpt / name).read_bytes(), (ckpt / name).stat().st_mtime_ns) for name in ("last.ckpt", "best.ckpt")}
    trainer = make(path, ckpt, epochs=3, max_steps_per_epoch=2, resume_from=str(ckpt / "last.ckpt"),
                   log_every=log_every)
    trainer.nan_guard.deferred = True
    with pytest.raises(NonFiniteLossError) as info:
        trainer.train()
    message = str(info.value)
    assert re.search(r"^non-finite (loss|gradient norm) \S+.* at step 4 \(epoch 2, batch 2\); batch trace rows of "
                     + re.escape(str(path)) + r": \[[\d, ]+\]; the last good checkpoint is untouched \(seen at step 4",
                     message), message
    rows = [int(r) for r in message.split(": [", 1)[1].split("]", 1)[0].split(", ")]
    assert row in rows and len(rows) == 16
    for name, before in files.items():
        assert ((ckpt / name).read_bytes(), (ckpt / name).stat().st_mtime_ns) == before, f"{name} was touched"
    assert sorted(p.name for p in ckpt.iterdir()) == ["best.ckpt", "last.ckpt"]


def test_deferred_guard_reads_nothing_from_the_device_per_step(tmp_path):
    """Item 4 of issue 16, checked on the CPU: with the guard in its CUDA mode, the training code
    reads no value back from the device in a step. An epoch of 2N steps makes exactly as many
    host reads as an epoch of N (the reads of the epoch's start and end), so per step: 0."""
    path = write_flat(tmp_path / "clean.hdf5", n=200)

    def reads(steps: int) -> list[str]:
        trainer = make(path, epochs=1, max_steps_per_epoch=steps, log_every=10**6)
        trainer.nan_guard.deferred = True
        with HostReads() as mode:
            trainer.train()
        return mode.reads

    short, long = reads(2), reads(4)
    assert len(short) == len(long), f"{len(long) - len(short)} more host reads in 2 more steps: {long}"


def test_skip_mode_skips_the_batch_and_trains_on(poisoned, caplog):
    path, row = poisoned
    trainer = make(path, on_nan_loss="skip")
    with caplog.at_level(logging.WARNING, logger="seispolarity.training"):
        result = trainer.train()
    skipped = [r.getMessage() for r in caplog.records if r.getMessage().startswith("skipped batch: non-finite")]
    assert len(skipped) == 2 == trainer.skipped_batches, skipped  # the trace is in one batch per epoch
    assert all(f" {row}," in m or f"[{row}," in m or f" {row}]" in m for m in skipped)
    assert result["epochs_trained"] == 2
    steps_per_epoch = len(trainer.epoch_batches(1))
    assert trainer.global_step == 2 * (steps_per_epoch - 1), "a skipped batch must not count as a step"
    bad = [k for k, v in trainer.model.state_dict().items() if v.is_floating_point() and not torch.isfinite(v).all()]
    assert not bad, f"non-finite weights or BatchNorm statistics after skipping: {bad}"
    assert all(np.isfinite(h["train_loss"]) and np.isfinite(h["val_loss"]) for h in result["history"])


def test_huge_learning_rate_nan_loss_through_the_cli(tmp_path):
    data = write_flat(tmp_path / "train.hdf5", n=96)
    run_dir = tmp_path / "run"
    p = run_cli(cli_overrides(data, run_dir, **{"trainer.epochs": 1, "lr": 1e37, "augment": "none"}))
    assert p.returncode == 1, p.stderr[-3000:]
    line = last_line(p.stderr)
    assert re.fullmatch(r"error: non-finite loss nan at step 2 \(epoch 1, batch 2\); batch trace rows of "
                        + re.escape(str(data)) + r": \[[\d, ]+\]; the last good checkpoint is untouched "
                        r"\(trainer.on_nan_loss=skip skips such batches\)", line), line
    assert "Traceback" not in p.stderr
    # nothing half-written: no metrics, no checkpoint, no temporary file; the traceback is in train.log
    assert not (run_dir / "metrics.json").exists()
    assert not [p.name for p in (run_dir / "checkpoints").iterdir()] if (run_dir / "checkpoints").exists() else True
    assert not list(run_dir.rglob("*.tmp"))
    log = (run_dir / "train.log").read_text()
    assert "run failed: non-finite loss nan at step 2" in log and "Traceback" in log


def _with_bad_samples(tmp_path, n=40):
    x = write_flat(tmp_path / "clean.hdf5", n=n)
    with h5py.File(x) as f:
        X = f["X"][()]
    X[17, 250] = np.inf
    X[29, 200] = np.nan  # inside the 400-sample window around P (240)
    return write_flat(tmp_path / "bad.hdf5", n=n, X=X)


@pytest.mark.parametrize("preload", [True, False])
def test_nan_and_inf_traces_rejected_or_dropped_at_load(tmp_path, preload, caplog):
    path = _with_bad_samples(tmp_path)
    if preload:
        with pytest.raises(DataFormatError, match=re.escape(f"{path}: 2 traces hold NaN or Inf (first at row 17); "
                                                            f"clean the file or set data.nan_policy=drop")):
            WaveformDataset(path, name="flat", preload=True, window_length=400)
    else:  # streaming reads lazily: the first batch holding the trace is refused, naming it
        ds = WaveformDataset(path, name="flat", preload=False, window_length=400)
        with pytest.raises(DataFormatError, match=re.escape(f"{path}: trace at row 17 holds NaN or Inf")):
            ds.get_batch([16, 17, 18])
    with caplog.at_level(logging.INFO):
        ds = WaveformDataset(path, name="flat", preload=preload, window_length=400, nan_policy="drop")
    assert len(ds) == 38 and ds.dropped == {"nan_or_inf": 2}
    assert 17 not in ds.rows and 29 not in ds.rows
    assert f"{path}: dropped 2 traces (nan_or_inf)" in caplog.text
    assert torch.isfinite(ds.get_batch(range(len(ds)))["waveforms"]).all()
