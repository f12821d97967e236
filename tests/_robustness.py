"""Shared helpers of the robustness tests (resume, signals, checkpoints, NaN guards, hostile input,
determinism): small real flat HDF5 files, a tiny model, and real ``python train.py`` subprocesses."""
from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from seispolarity.launch import hydra_quote

ROOT = Path(__file__).resolve().parents[1]

# Keys of a history record / metrics summary that measure time, not the model.
TIMING_KEYS = {"samples_per_second", "epoch_seconds", "wall_time_s"}


def write_flat(path: str | os.PathLike, n: int = 256, length: int = 480, seed: int = 0, *,
               p_index: int | None = None, sampling_rate: float = 100.0, **extra: Any) -> Path:
    """A learnable flat-layout file: a first motion of the label's sign at ``p_index`` (default the
    centre) in noise; unknown traces are noise only. ``extra`` datasets are written as given and
    replace the defaults (``X=...``, ``Y=...``, ``p_pick=...``)."""
    rng = np.random.default_rng(seed)
    p = length // 2 if p_index is None else p_index
    y = rng.integers(0, 3, n)
    t = np.arange(length) - p
    amp = rng.uniform(0.5, 2.0, n)[:, None]
    pulse = np.where(t >= 0, np.exp(-np.clip(t, 0, None) / 8.0) * np.sin(np.clip(t, 0, None) / 3.0 + 0.5), 0.0)
    sign = np.where(y == 0, 1.0, np.where(y == 1, -1.0, 0.0))[:, None]
    x = (sign * amp * pulse + 0.2 * rng.standard_normal((n, length))).astype(np.float32)
    data = {"X": x, "Y": y.astype(np.int64), "evids": np.arange(n) // 2}
    data.update(extra)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        for key, value in data.items():
            if value is not None:
                f.create_dataset(key, data=value)
        f.attrs["sampling_rate"] = sampling_rate
        if "p_pick" not in data:
            f.attrs["p_index"] = p
    return path


def tiny_model(dropout: float = 0.2, input_length: int = 400):
    from seispolarity.models import Ross

    return Ross(base_channels=4, fc_units=16, dropout=dropout, input_length=input_length)


# Overrides of a small, fast CLI run on a flat file (a tiny Ross with dropout, augmentation on).
def cli_overrides(data_path: str | os.PathLike, run_dir: str | os.PathLike, **more: Any) -> list[str]:
    args = {
        "data": "flat", "data.path": hydra_quote(os.fspath(data_path)), "model": "ross", "model.base_channels": 4,
        "model.fc_units": 16, "model.dropout": 0.2, "trainer.batch_size": 32, "trainer.device": "cpu",
        "trainer.num_workers": 0, "trainer.show_progress": "false", "trainer.log_every": 1,
        "trainer.tensorboard_dir": "null", "trainer.early_stopping_patience": "null",
        "report.enabled": "false", "hydra.run.dir": hydra_quote(os.fspath(run_dir)),
    }
    args.update({k: v for k, v in more.items()})
    return [f"{k}={v}" for k, v in args.items() if v is not None]


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("HYDRA_FULL_ERROR", None)  # what a user sees by default
    return env


def run_cli(args: list[str], timeout: float = 180, **kwargs: Any) -> subprocess.CompletedProcess:
    """``python train.py <args>`` in the repository root; returns the finished process."""
    return subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, env=cli_env(), capture_output=True,
                          text=True, timeout=timeout, **kwargs)


def start_cli(args: list[str] | str, stdout: Path, stderr: Path, env: dict[str, str] | None = None,
              ) -> subprocess.Popen:
    """Start ``python train.py <args>`` (or a shell command line) with its output going to files."""
    command = args if isinstance(args, str) else [sys.executable, "train.py", *args]
    with open(stdout, "w") as out, open(stderr, "w") as err:
        return subprocess.Popen(command, cwd=ROOT, env=env or cli_env(), stdout=out, stderr=err, text=True,
                                shell=isinstance(args, str))


def logged_steps(text: str) -> list[int]:
    """The global steps a run has logged (``epoch E step S loss L`` lines, trainer.log_every=1)."""
    return [int(m) for m in re.findall(r"\] - epoch \d+ step (\d+) loss", text)]


def wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None, poll: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process exited with {proc.returncode} before {what}")
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def load_metrics(run_dir: Path) -> dict[str, Any]:
    return json.loads((Path(run_dir) / "metrics.json").read_text())


def strip_timing(value):
    """``value`` without wall-clock fields (they differ between any two runs)."""
    if isinstance(value, dict):
        return {k: strip_timing(v) for k, v in value.items() if k not in TIMING_KEYS}
    if isinstance(value, list):
        return [strip_timing(v) for v in value]
    return value


def assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], what: str = "state") -> None:
    assert a.keys() == b.keys(), f"{what}: different keys"
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f"{what}: tensors differ: {differ[:5]}"


def assert_same_optimizer(a: dict, b: dict) -> None:
    assert a["param_groups"] == b["param_groups"]
    assert a["state"].keys() == b["state"].keys()
    for k in a["state"]:
        for name, value in a["state"][k].items():
            other = b["state"][k][name]
            if isinstance(value, torch.Tensor):
                assert torch.equal(value, other), f"optimizer state {k}.{name} differs"
            else:
                assert value == other


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


# -- one reference run shared by the resume, signal and determinism tests of a session ------------
#: A small run with everything that must survive a resume: augmentation (flip, noise, shift; the
#: default augment group), dropout, a step schedule, early-stopping state; ~50 steps per epoch.
REFERENCE = {"seed": 3, "lr": 3e-3, "scheduler": "step", "scheduler.step_size": 1, "scheduler.gamma": 0.7,
             "trainer.batch_size": 16, "trainer.early_stopping_patience": 3, "trainer.epochs": 4}


def shared_data_file(tmp_path_factory) -> Path:
    """1000 learnable traces (seeded, so every module that asks gets the same file)."""
    path = tmp_path_factory.getbasetemp() / "robustness-data" / "train.hdf5"
    if not path.is_file():
        write_flat(path, n=1000)
    return path


def reference_run(tmp_path_factory, **overrides: Any) -> Path:
    """The run folder of ``REFERENCE`` (+ ``overrides``) trained without interruption, run once
    per pytest session and shared (resume and signal tests compare with it; the determinism test
    runs it a second time)."""
    settings = {**REFERENCE, **overrides}
    key = hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:10]
    run_dir = tmp_path_factory.getbasetemp() / f"robustness-reference-{key}"
    if not (run_dir / "metrics.json").is_file():
        proc = run_cli(cli_overrides(shared_data_file(tmp_path_factory), run_dir, **settings))
        assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir
