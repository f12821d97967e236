"""Exact resume (issue 8, part 1).

Training 4 epochs straight and training 2 epochs, then resuming to 4 from ``last.ckpt``, give
bit-identical weights, optimizer state and history on the CPU, with augmentation (flip, noise,
shift), dropout, a learning-rate schedule and early-stopping state in play; through the Python
API and through ``python train.py`` (the resumed run continues in the same run folder). A
finished run is not retrained, and a run stopped mid-epoch by a real signal resumes exactly.
"""
from __future__ import annotations

import logging
import os
import shutil
import signal

import pytest
import torch

from _robustness import (
    REFERENCE,
    assert_same_optimizer,
    assert_same_tensors,
    cli_overrides,
    load_metrics,
    reference_run,
    run_cli,
    shared_data_file,
    strip_timing,
    tiny_model,
    write_flat,
)
from seispolarity.data import WaveformDataset
from seispolarity.data.augment import AugmentConfig
from seispolarity.training import Trainer, TrainingConfig, TrainingInterrupted, load_checkpoint

AUGMENT = dict(flip_prob=0.5, noise_prob=0.5, max_shift=5)


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    return write_flat(tmp_path_factory.mktemp("resume") / "train.hdf5", n=240)


def make_trainer(path, epochs: int, save_dir, resume_from=None, **overrides) -> Trainer:
    torch.manual_seed(0)  # the model's initial weights (a resumed run overwrites them)
    dataset = WaveformDataset(path, name="flat", preload=True, window_length=400, max_shift=AUGMENT["max_shift"])
    config = TrainingConfig(**{
        "batch_size": 32, "epochs": epochs, "learning_rate": 3e-3, "device": "cpu", "num_workers": 0,
        "lr_scheduler": "step", "lr_scheduler_params": {"step_size": 1, "gamma": 0.7},
        "early_stopping_patience": 3, "validation_split": 0.15, "test_split": 0.1, "log_every": 1,
        "show_progress": False, "save_dir": str(save_dir), "resume_from": resume_from, **overrides})
    return Trainer(tiny_model(dropout=0.3), dataset, config, augment=AugmentConfig(**AUGMENT))


def assert_same_run(a: Trainer, b: Trainer) -> None:
    assert_same_tensors(a.model.state_dict(), b.model.state_dict(), "model")
    assert_same_optimizer(a.optimizer.state_dict(), b.optimizer.state_dict())
    assert a.scheduler.state_dict() == b.scheduler.state_dict()
    assert (a.epoch, a.global_step, a.bad_epochs, a.best_val_loss) == (b.epoch, b.global_step, b.bad_epochs,
                                                                       b.best_val_loss)
    assert strip_timing(a.history) == strip_timing(b.history)
    assert a.best_metrics == b.best_metrics
    assert torch.equal(a.augment_generator.get_state(), b.augment_generator.get_state())


@pytest.fixture(scope="module")
def straight(data_file, tmp_path_factory):
    """The reference: 4 epochs without stopping (its final state and a copy of its RNG state)."""
    torch.set_num_threads(1)
    trainer = make_trainer(data_file, 4, tmp_path_factory.mktemp("straight"))
    trainer.train()
    return trainer, torch.get_rng_state()


def test_two_plus_two_epochs_equal_four(straight, data_file, tmp_path):
    reference, reference_rng = straight
    first = make_trainer(data_file, 2, tmp_path)
    first.train()
    state = load_checkpoint(tmp_path / "last.ckpt")
    assert state["epoch"] == 2 and state["finished"] and state["batch_in_epoch"] == 0

    resumed = make_trainer(data_file, 4, tmp_path, resume_from=str(tmp_path / "last.ckpt"))
    assert resumed.epoch == 2 and len(resumed.history) == 2
    resumed.train()
    assert resumed.epoch == 4
    assert_same_run(reference, resumed)
    assert torch.equal(torch.get_rng_state(), reference_rng), "global RNG state differs after the run"
    # the history really covers changing values: the schedule decayed, the weights moved
    lrs = [h["lr"] for h in resumed.history]
    assert lrs == sorted(lrs, reverse=True) and len(set(lrs)) == 4
    # and the checkpoint on disk holds what is in memory
    on_disk = load_checkpoint(tmp_path / "last.ckpt")
    assert_same_tensors(on_disk["model_state_dict"], reference.model.state_dict(), "last.ckpt")


def test_finished_run_is_not_retrained(data_file, tmp_path, caplog):
    make_trainer(data_file, 2, tmp_path).train()
    last = tmp_path / "last.ckpt"
    before = (last.read_bytes(), last.stat().st_mtime_ns)
    again = make_trainer(data_file, 2, tmp_path, resume_from=str(last))
    weights = {k: v.clone() for k, v in again.model.state_dict().items()}
    with caplog.at_level(logging.INFO, logger="seispolarity.training"):
        result = again.train()
    assert "nothing to train" in caplog.text
    assert result["epochs_trained"] == 2 and len(result["history"]) == 2
    assert_same_tensors(weights, again.model.state_dict(), "weights after a no-op resume")
    assert (last.read_bytes(), last.stat().st_mtime_ns) == before, "a finished run rewrote last.ckpt"


class _SignalAtStep(logging.Handler):
    """Sends a real signal to this process when the Trainer logs a given step."""

    def __init__(self, step: int, signum: int) -> None:
        super().__init__(logging.INFO)
        self.step, self.signum, self.sent = step, signum, False

    def emit(self, record: logging.LogRecord) -> None:
        if not self.sent and record.getMessage().startswith("epoch ") and f" step {self.step} " in record.getMessage():
            self.sent = True
            os.kill(os.getpid(), self.signum)


@pytest.mark.parametrize("signum", [signal.SIGTERM])
def test_mid_epoch_signal_resume_is_exact(straight, data_file, tmp_path, signum):
    reference, _ = straight
    trainer = make_trainer(data_file, 4, tmp_path)
    per_epoch = len(trainer.epoch_batches(1))
    stop_at = per_epoch + 3  # the 3rd batch of epoch 2
    handler = _SignalAtStep(stop_at, signum)
    logger = logging.getLogger("seispolarity.training")
    old_level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        with pytest.raises(TrainingInterrupted) as info:
            trainer.train()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    rng_at_stop = torch.get_rng_state()  # (make_trainer below seeds the global generator again)
    assert info.value.signum == signum and info.value.checkpoint == str(tmp_path / "last.ckpt")
    assert signal.getsignal(signum) is signal.SIG_DFL, "the Trainer did not restore the signal handler"
    state = load_checkpoint(tmp_path / "last.ckpt")
    assert (state["epoch"], state["global_step"], state["batch_in_epoch"]) == (1, stop_at, 3), \
        "the checkpoint is not at the step boundary after the signal"
    assert not state["finished"]

    resumed = make_trainer(data_file, 4, tmp_path, resume_from=str(tmp_path / "last.ckpt"))
    assert (resumed.epoch, resumed.batch_in_epoch) == (1, 3)
    resumed.train()
    assert_same_run(reference, resumed)
    # The stopped Trainer itself can train on, as the same run: batches are prepared 4 at a time and
    # it stopped inside a group, whose later batches had drawn from the augmentation stream already.
    torch.set_rng_state(rng_at_stop)
    trainer.train()
    assert_same_run(reference, trainer)


def test_cli_resume_continues_in_the_same_run_folder(tmp_path_factory, tmp_path):
    """`trainer.epochs=2`, then `trainer.epochs=4 ckpt_path=<run>/checkpoints/last.ckpt` (no run
    folder given: train.py resumes into <run>) equals 4 epochs straight; resuming a finished
    run returns at once."""
    straight_dir = reference_run(tmp_path_factory)  # REFERENCE: 4 epochs, uninterrupted
    data, logs, run_dir = shared_data_file(tmp_path_factory), tmp_path / "logs", tmp_path / "run"
    common = {**REFERENCE, "paths.log_dir": str(logs)}
    p = run_cli(cli_overrides(data, run_dir, **{**common, "trainer.epochs": 2}))
    assert p.returncode == 0, p.stderr[-3000:]
    assert load_metrics(run_dir)["summary"]["epochs"] == 2

    last = run_dir / "checkpoints" / "last.ckpt"
    resume = [a for a in cli_overrides(data, run_dir, **common) if not a.startswith("hydra.run.dir=")]
    resume.append(f"ckpt_path={last}")
    p = run_cli(resume)
    assert p.returncode == 0, p.stderr[-3000:]
    assert f"run folder: {run_dir}" in p.stdout, "the resumed run did not continue in its own folder"
    assert "extending a finished run from epoch 2 to 4" in p.stdout
    assert not logs.exists() or not any(logs.rglob("metrics.json")), "resuming made a new run folder"

    a, b = load_checkpoint(straight_dir / "checkpoints" / "last.ckpt"), load_checkpoint(last)
    assert_same_tensors(a["model_state_dict"], b["model_state_dict"], "CLI model")
    assert_same_optimizer(a["optimizer_state_dict"], b["optimizer_state_dict"])
    assert a["scheduler_state_dict"] == b["scheduler_state_dict"]
    assert a["early_stopping"] == b["early_stopping"] and torch.equal(a["augment_rng"], b["augment_rng"])
    ma, mb = load_metrics(straight_dir), load_metrics(run_dir)
    assert strip_timing(ma["history"]) == strip_timing(mb["history"])
    assert len(mb["history"]) == 4
    assert strip_timing(ma["summary"]) == strip_timing(mb["summary"])
    assert ma["test"] == mb["test"] and ma["best"] == mb["best"]

    # the same command again: the run is finished, nothing is retrained or rewritten
    before = (last.read_bytes(), last.stat().st_mtime_ns)
    p = run_cli(resume)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "run already finished at epoch 4; nothing to train" in p.stdout
    assert (last.read_bytes(), last.stat().st_mtime_ns) == before
    assert strip_timing(load_metrics(run_dir)["history"]) == strip_timing(mb["history"])


@pytest.fixture(scope="module")
def two_epoch_run(tmp_path_factory):
    """A finished 2-epoch CLI run on a small file; the tests that resume it leave it as it was."""
    root = tmp_path_factory.mktemp("two-epochs")
    data, run_dir = write_flat(root / "train.hdf5", n=96), root / "run"
    p = run_cli(cli_overrides(data, run_dir, **{"trainer.epochs": 2}))
    assert p.returncode == 0, p.stderr[-3000:]
    return data, run_dir


def _resume(data, run_dir, **more) -> list[str]:
    """The resume command of ``run_dir`` (no run folder given: train.py resumes into it)."""
    args = [a for a in cli_overrides(data, run_dir, **more) if not a.startswith("hydra.run.dir=")]
    return args + [f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}"]


def _files(folder) -> dict:
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()}


def test_cli_resume_below_the_epochs_trained_is_refused_untouched(two_epoch_run):
    """trainer.epochs=1 for a run that trained 2 would train nothing, yet rewrote config.yaml to
    epochs 1 and report.md to "epochs trained: 2 of 1": refused in one line, nothing written."""
    data, run_dir = two_epoch_run
    before = _files(run_dir)
    p = run_cli(_resume(data, run_dir, **{"trainer.epochs": 1}))
    assert p.returncode == 2, p.stderr[-3000:]
    last = run_dir / "checkpoints" / "last.ckpt"
    assert p.stderr.strip().splitlines() == [
        f"error: trainer.epochs=1 is below the 2 epochs this run has already trained ({last}); leave "
        f"trainer.epochs out, or give 2 or more, to resume it (train=false ckpt_path=... evaluates it)"]
    assert _files(run_dir) == before, "a refused resume wrote into the run folder"


def test_cli_extension_logs_the_epochs_it_trains(two_epoch_run, tmp_path):
    """Extending a 2-epoch run to 3 trains one epoch: the log says which, not "for 3 epochs"."""
    data, original = two_epoch_run
    run_dir = tmp_path / "run"
    shutil.copytree(original, run_dir)
    p = run_cli(_resume(data, run_dir, **{"trainer.epochs": 3}))
    assert p.returncode == 0, p.stderr[-3000:]
    assert "extending a finished run from epoch 2 to 3" in p.stdout
    assert " for epoch 3 of 3 on cpu" in p.stdout and " for 3 epochs" not in p.stdout, p.stdout[-3000:]
    assert load_metrics(run_dir)["summary"]["epochs"] == 3
