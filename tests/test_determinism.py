"""Determinism (issue 8, part 6): the same config and seed give the same metrics twice on the CPU.

What is and is not deterministic on a GPU is documented in docs/robustness.md.
"""
from __future__ import annotations

import torch

from _robustness import (
    REFERENCE,
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
from seispolarity.training import Trainer, TrainingConfig, load_checkpoint


def _comparable(metrics: dict) -> dict:
    return strip_timing({k: v for k, v in metrics.items() if k != "run_dir"})


def test_same_command_twice_gives_identical_metrics(tmp_path_factory, tmp_path):
    first = reference_run(tmp_path_factory)  # REFERENCE (augmentation, dropout, schedule), maybe run earlier
    second = tmp_path / "again"
    p = run_cli(cli_overrides(shared_data_file(tmp_path_factory), second, **REFERENCE))
    assert p.returncode == 0, p.stderr[-3000:]
    a, b = load_metrics(first), load_metrics(second)
    assert _comparable(a) == _comparable(b)
    assert a["test"]["confusion_matrix"] == b["test"]["confusion_matrix"] and len(b["history"]) == 4
    assert_same_tensors(load_checkpoint(first / "checkpoints" / "last.ckpt")["model_state_dict"],
                        load_checkpoint(second / "checkpoints" / "last.ckpt")["model_state_dict"], "weights")


def _train(path, seed: int, deterministic: bool = False) -> Trainer:
    torch.manual_seed(seed)
    ds = WaveformDataset(path, name="flat", preload=True, window_length=400, max_shift=5)
    config = TrainingConfig(batch_size=16, epochs=2, learning_rate=3e-3, device="cpu", num_workers=0, seed=seed,
                            save_dir=None, show_progress=False, deterministic=deterministic, test_split=0.1)
    trainer = Trainer(tiny_model(dropout=0.3), ds, config, augment=AugmentConfig(flip_prob=0.5, noise_prob=0.5))
    trainer.train()
    return trainer


def test_python_api_is_deterministic_and_the_seed_matters(tmp_path):
    torch.set_num_threads(1)
    path = write_flat(tmp_path / "train.hdf5", n=160)
    before = torch.are_deterministic_algorithms_enabled()
    try:
        a, b = _train(path, seed=1), _train(path, seed=1, deterministic=True)
        assert torch.are_deterministic_algorithms_enabled(), "trainer.deterministic=true did not switch it on"
    finally:
        torch.use_deterministic_algorithms(before)
    assert_same_tensors(a.model.state_dict(), b.model.state_dict(), "same seed")
    assert strip_timing(a.history) == strip_timing(b.history)
    assert a.evaluate() == b.evaluate()
    c = _train(path, seed=2)
    assert not torch.equal(a.model.head.weight, c.model.head.weight), "a different seed gave the same weights"
