"""Shared fixtures: small real HDF5 files (synthetic, SCSN, flat layouts) and a CLI runner.

Everything here writes real files into pytest's temporary folders; nothing is mocked.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

import h5py
import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
TRAIN_PY = ROOT / "train.py"

#: Overrides that make a `python train.py` job take seconds: a tiny synthetic set, a narrow PPNet,
#: one short epoch (on top of `debug=fast`).
TINY = ["debug=fast", "data.num_traces=160", "data.max_traces=160", "model.base_channels=4",
        "trainer.batch_size=32", "report=none"]


def tiny_overrides() -> list[str]:
    """``TINY`` without options that this checkout's conf/ does not have (e.g. ``report=none``)."""
    out = []
    for item in TINY:
        key, _, value = item.partition("=")
        if "." not in key and not (ROOT / "conf" / key / f"{value}.yaml").is_file():
            continue
        out.append(item)
    return out


# ----------------------------------------------------------------------------------------------
# threads: two CPU cores are shared by everyone; one intra-op thread avoids oversubscription
# ----------------------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def one_thread():
    """Every in-process test uses one intra-op thread (subprocesses choose their own)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ----------------------------------------------------------------------------------------------
# files
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def synthetic_file(tmp_path_factory) -> Path:
    """A small synthetic set (flat layout, 1200 traces, seed 0) shared by the whole session."""
    from seispolarity.data.synthetic import generate_synthetic

    path = tmp_path_factory.mktemp("synthetic") / "synthetic_n1200_seed0.hdf5"
    generate_synthetic(path, num_traces=1200, seed=0)
    return path


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """A session-wide `paths.cache_dir` for CLI and compose runs (the synthetic set is cached there)."""
    return tmp_path_factory.mktemp("cache")


def ramp_traces(n: int, length: int, channels: int | None = None) -> np.ndarray:
    """Known content: ``X[i, (c,) t] = 10000 i + 1000 c + t`` (exact in float32 for small n)."""
    i = np.arange(n, dtype=np.float64)[:, None]
    t = np.arange(length, dtype=np.float64)[None, :]
    if channels is None:
        return (10000.0 * i + t).astype(np.float32)
    c = np.arange(channels, dtype=np.float64)[None, :, None]
    return (10000.0 * i[:, :, None] + 1000.0 * c + t[:, None, :]).astype(np.float32)


def write_scsn_file(path: str | os.PathLike, n: int = 30, X: np.ndarray | None = None,
                    Y: np.ndarray | None = None, **kwargs: Any) -> Path:
    """An SCSN (Ross 2018) layout file: X (n, 600) float32 with P at 300, Y 0/1/2, dist, evids,
    mag, snr, sncls. Default content: ``ramp_traces`` and labels ``i % 3``."""
    from seispolarity.data.layouts import write_scsn

    X = ramp_traces(n, 600) if X is None else X
    Y = (np.arange(len(X)) % 3) if Y is None else Y
    kwargs.setdefault("snr", np.linspace(0.0, 40.0, len(X)))
    kwargs.setdefault("evids", np.arange(len(X)) // 3)
    return write_scsn(path, X, Y, **kwargs)


def write_flat_file(path: str | os.PathLike, X: np.ndarray, Y: Sequence[Any], p_pick: Sequence[int] | None = None,
                    attrs: dict[str, Any] | None = None, **datasets: Any) -> Path:
    """Our flat layout: ``X`` (N, L) or (N, C, L), labels ``Y``, optional ``p_pick`` and any other
    per-trace datasets (``evids``, ``snr``, ...); ``attrs`` e.g. sampling_rate, label_map (JSON)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.create_dataset("X", data=np.asarray(X))
        y = np.asarray(Y)
        if y.dtype.kind == "U":
            y = y.astype("S")
        f.create_dataset("Y", data=y)
        if p_pick is not None:
            f.create_dataset("p_pick", data=np.asarray(p_pick, dtype=np.int64))
        for key, value in datasets.items():
            f.create_dataset(key, data=np.asarray(value))
        for key, value in {"sampling_rate": 100.0, **(attrs or {})}.items():
            f.attrs[key] = value
    return path


@pytest.fixture
def scsn_file(tmp_path) -> Path:
    return write_scsn_file(tmp_path / "scsn_p_2000_2017_6sec_0.5r_fm_train.hdf5")


# ----------------------------------------------------------------------------------------------
# the CLI
# ----------------------------------------------------------------------------------------------
def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    env.pop("HYDRA_FULL_ERROR", None)
    env.pop("SEISPOLARITY_RUN_STAMP", None)  # each run picks its own folder
    env.update(extra)
    return env


def run_cli(args: Sequence[str], cwd: str | os.PathLike = ROOT, timeout: float = 120,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``python train.py *args`` in a subprocess (unbuffered, one thread) and return the
    completed process (text stdout / stderr); never raises on a non-zero exit."""
    return subprocess.run([sys.executable, str(TRAIN_PY), *map(str, args)], cwd=str(cwd), env=env or cli_env(),
                          capture_output=True, text=True, timeout=timeout)


def start_cli(args: Sequence[str], cwd: str | os.PathLike = ROOT, env: dict[str, str] | None = None
              ) -> subprocess.Popen:
    """Like ``run_cli`` but returns at once (``proc.communicate(timeout=...)`` to wait)."""
    return subprocess.Popen([sys.executable, str(TRAIN_PY), *map(str, args)], cwd=str(cwd), env=env or cli_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_folder(stdout: str) -> Path:
    """The run folder a single run prints (``run folder: <path>``)."""
    found = re.findall(r"^run folder: (.+)$", stdout, flags=re.M)
    assert found, f"no 'run folder:' line in the output:\n{stdout[-2000:]}"
    return Path(found[-1].strip())


def explain(proc: subprocess.CompletedProcess) -> str:
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-5000:]}"
