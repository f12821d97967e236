"""Sweeps through Hydra's launchers and the Optuna sweeper, run for real in subprocesses.

* ``hydra/launcher=joblib``: two jobs in parallel loky workers, each streaming its data through
  worker processes of its own (DataLoader's crashed there), every job gets its folder, the sweep
  root its summary.
* ``hydra/launcher=submitit_local``: the submitit path (what ``submitit_slurm`` runs on a cluster)
  with its local executor; ``hydra/launcher=slurm_gpu`` renders the sbatch script we expect.
* ``hparams_search=optuna``: an SQLite study that a second invocation resumes.
"""
from __future__ import annotations

import csv
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TRAIN_PY = ROOT / "train.py"
TINY = ["model=ross", "model.base_channels=2", "model.fc_units=8", "data.num_traces=64",
        "trainer.batch_size=16", "trainer.epochs=1", "trainer.device=cpu", "trainer.show_progress=false",
        "trainer.tensorboard_dir=null", "test=false"]
DIST_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "SEISPOLARITY_RUN_STAMP")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in DIST_VARS}
    env.update(PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HYDRA_FULL_ERROR="1")
    return env


def train(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, str(TRAIN_PY), *map(str, args)], cwd=ROOT, env=_env(),
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (f"exit {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}\n"
                                  f"--- stderr\n{proc.stderr[-6000:]}")
    return proc


def paths(tmp: Path) -> list[str]:
    return [f"paths.log_dir={tmp / 'logs'}", f"paths.cache_dir={tmp / 'cache'}"]


def summary_rows(sweep: Path) -> list[dict]:
    with open(sweep / "summary.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def check_jobs(sweep: Path, n: int) -> list[dict]:
    """Every job has its folder with Hydra's files, a log and metrics; the root has the summary."""
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert jobs == [str(i) for i in range(n)], jobs
    for job in jobs:
        folder = sweep / job
        for name in (".hydra/overrides.yaml", "train.log", "config.yaml", "metrics.json", "checkpoints/last.ckpt"):
            assert (folder / name).is_file(), f"{folder / name} is missing"
    assert (sweep / "summary.md").is_file()
    rows = summary_rows(sweep)
    assert len(rows) == n and all(r["status"] == "ok" for r in rows), rows
    return rows


def test_joblib_parallel_sweep_with_streaming_workers(tmp_path):
    sweep = tmp_path / "sweep"
    # streaming data with worker processes inside loky workers (DataLoader's crashed there); 64 asked
    # for, so the Trainer says how many it starts (one per core beyond its own) on any machine
    proc = train("-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "seed=1,2", *TINY, "data.preload=false",
                 "trainer.num_workers=64", f"hydra.sweep.dir={sweep}", *paths(tmp_path))
    assert re.search(r"Joblib.Parallel\(n_jobs=2,backend=loky.* is launching 2 jobs", proc.stdout + proc.stderr)
    rows = check_jobs(sweep, 2)
    assert sorted(r["overrides"].split()[0] for r in rows) == ["seed=1", "seed=2"]
    for job in ("0", "1"):
        log = (sweep / job / "train.log").read_text()
        assert re.search(r"trainer.num_workers=64: [1-9][0-9]* worker\(s\) start", log), log


def test_submitit_local_two_jobs(tmp_path):
    sweep = tmp_path / "sweep"
    proc = train("-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10", "seed=1,2", *TINY,
                 f"hydra.sweep.dir={sweep}", *paths(tmp_path))
    assert "Submitit 'local' sweep output dir" in proc.stdout + proc.stderr
    check_jobs(sweep, 2)
    # submitit kept each job's own stdout / stderr and pickled result
    assert len(list((sweep / ".submitit").glob("*/*_result.pkl"))) == 2
    for job in ("0", "1"):
        assert "submitit" in (sweep / job / ".hydra" / "hydra.yaml").read_text()


@pytest.mark.slow
def test_submitit_tasks_form_one_ddp_job(tmp_path):
    """``hydra.launcher.tasks_per_node=2 trainer=ddp``: the two tasks of one submitit job train as
    one DDP group (what ``slurm_gpu`` with gpus_per_node=tasks_per_node=N does on a cluster)."""
    sweep = tmp_path / "sweep"
    train("-m", "hydra/launcher=submitit_local", "hydra.launcher.tasks_per_node=2", "hydra.launcher.timeout_min=10",
          "trainer=ddp", *TINY, "trainer.batch_size=8", f"hydra.sweep.dir={sweep}", *paths(tmp_path))
    check_jobs(sweep, 1)
    log = (sweep / "0" / "train.log").read_text()
    assert log.count("training Ross") == 1 and "2 processes" in log, log


def test_slurm_gpu_preset_renders_the_sbatch_script(tmp_path):
    """The preset composes, and submitit (its own code, offline) turns it into these sbatch lines."""
    from hydra import compose, initialize_config_dir
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from omegaconf import OmegaConf
    from submitit.slurm.slurm import SlurmExecutor

    from seispolarity.config import register_configs

    register_configs()
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=slurm_gpu", "hydra.launcher.partition=gpu",
                                          "hydra.launcher.gpus_per_node=4", "hydra.launcher.tasks_per_node=4",
                                          f"hydra.sweep.dir={tmp_path}"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.timeout_min, launcher.signal_delay_s, launcher.max_num_timeout) == (240, 120, 3)

    class OfflineSlurmExecutor(SlurmExecutor):  # SlurmExecutor refuses to start where srun is missing
        @classmethod
        def affinity(cls) -> int:
            return 1

    # the parameters as hydra-submitit-launcher hands them to submitit (None: not set)
    params = {k: v for k, v in OmegaConf.to_container(launcher, resolve=False).items()
              if k not in ("_target_", "submitit_folder", "max_num_timeout", "name") and v is not None}
    assert set(params) - set(OmegaConf.structured(BaseQueueConf).keys()) <= SlurmExecutor._valid_parameters()
    executor = OfflineSlurmExecutor(tmp_path / ".submitit", max_num_timeout=launcher.max_num_timeout)
    executor.update_parameters(**executor._convert_parameters({"name": "train", **params}))
    script = executor._make_submission_file_text("python -m submitit.core._submit", "uid")
    for line in ("#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=4", "#SBATCH --ntasks-per-node=4",
                 "#SBATCH --time=240", "#SBATCH --signal=USR2@120", "#SBATCH --cpus-per-task=8",
                 "#SBATCH --mem=32GB", "#SBATCH --nodes=1"):
        assert line in script, f"{line!r} not in\n{script}"


def test_slurm_launcher_without_slurm_is_one_line_and_no_folder(tmp_path):
    """Off a cluster (no ``sbatch`` on PATH) a SLURM sweep stops before its folder, in one line; with an
    ``sbatch`` on PATH the check lets it through (submitit's own submission then runs)."""
    from hydra import compose, initialize_config_dir

    from seispolarity.config import register_configs
    from seispolarity.preflight import slurm_problem

    env = _env()
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if not (Path(p) / "sbatch").exists())
    proc = subprocess.run([sys.executable, str(TRAIN_PY), "-m", "hydra/launcher=slurm_gpu", "seed=1,2",
                           f"hydra.sweep.dir={tmp_path / 'sweep'}", *paths(tmp_path)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines() == [
        "error: hydra/launcher=slurm_gpu: no SLURM here (sbatch is not on PATH); run the sweep on the cluster's "
        "login node, or try it here with hydra/launcher=submitit_local"], proc.stderr[-3000:]
    assert not (tmp_path / "sweep").exists()
    register_configs()
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=slurm_gpu"], return_hydra_config=True)
        local = compose("train", overrides=["hydra/launcher=submitit_local"], return_hydra_config=True)
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "sbatch").write_text("#!/bin/sh\n")
    (fake / "sbatch").chmod(0o755)
    old = os.environ["PATH"]
    try:
        os.environ["PATH"] = os.pathsep.join([str(fake), old])
        assert slurm_problem(cfg) is None
    finally:
        os.environ["PATH"] = old
    assert slurm_problem(local) is None


def test_optuna_study_resumes_in_a_second_invocation(tmp_path):
    """``hparams_search=optuna``: lr, weight decay, batch size and width on val_accuracy, stored in
    SQLite; the second command adds its trial to the same study."""
    search = ["hparams_search=optuna", "hydra.sweeper.n_trials=1", "task_name=optuna_test",
              # command-line dimensions replace the preset's (sized for real runs) for this tiny test
              "trainer.batch_size=choice(8,16)", "model.base_channels=choice(2,3)",
              *[a for a in TINY if not a.startswith(("trainer.batch_size=", "model.base_channels="))],
              *paths(tmp_path)]
    first = train(*search, f"hydra.sweep.dir={tmp_path / 'first'}")
    second = train(*search, f"hydra.sweep.dir={tmp_path / 'second'}")
    first_log, second_log = first.stdout + first.stderr, second.stdout + second.stderr
    assert "Using an existing study" not in first_log
    assert re.search(r"Using an existing study with name 'optuna_test'", second_log), second_log[-3000:]
    db = tmp_path / "logs" / "optuna" / "optuna_test.db"
    with sqlite3.connect(db) as con:
        states = [s for (s,) in con.execute("SELECT state FROM trials ORDER BY number")]
        names = {n for (n,) in con.execute("SELECT DISTINCT param_name FROM trial_params")}
        values = [v for (v,) in con.execute("SELECT value FROM trial_values")]
    assert states == ["COMPLETE", "COMPLETE"], states
    assert names == {"lr", "optimizer.weight_decay", "trainer.batch_size", "model.base_channels"}, names
    assert len(values) == 2 and all(0.0 <= v <= 1.0 for v in values)  # val_accuracy
    for sweep in ("first", "second"):
        check_jobs(tmp_path / sweep, 1)
