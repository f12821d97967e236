"""`python train.py` in real subprocesses (tiny debug settings): the run folder, SGD at 1e-3, evaluating
a checkpoint, a 4-job multirun with its summary, an Optuna sweep that resumes, relative data paths,
failing jobs, and bad overrides refused before any data is touched."""
from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import explain, run_cli, run_folder, start_cli, tiny_overrides, write_flat_file

#: The tiny job's overrides for non-synthetic data (no `data.num_traces` there).
TINY_ANY_DATA = [o for o in tiny_overrides() if not o.startswith("data.")]


def paths(log_dir: Path, cache_dir: Path) -> list[str]:
    return [f"paths.log_dir={log_dir}", f"paths.cache_dir={cache_dir}"]


@pytest.fixture(scope="module")
def sgd_run(tmp_path_factory, cache_dir):
    """One single run: `python train.py optimizer=sgd lr=1e-3` (tiny debug settings)."""
    logs = tmp_path_factory.mktemp("logs")
    proc = run_cli([*tiny_overrides(), "optimizer=sgd", "lr=1e-3", *paths(logs, cache_dir)])
    assert proc.returncode == 0, explain(proc)
    return proc, run_folder(proc.stdout), logs


def test_a_single_run_leaves_every_file_of_its_folder(sgd_run):
    proc, run, logs = sgd_run
    assert run.parent.parent == logs / "debug" and run.parent.name == "runs"
    for name in (".hydra/config.yaml", ".hydra/overrides.yaml", ".hydra/hydra.yaml", "config.yaml", "train.log",
                 "checkpoints/last.ckpt", "checkpoints/best.ckpt", "metrics.json"):
        assert (run / name).is_file(), name
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    # config.yaml is resolved; .hydra/config.yaml keeps the interpolations
    assert "${" not in (run / "config.yaml").read_text() and "${lr}" in (run / ".hydra/config.yaml").read_text()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["objective"]["name"] == "val_accuracy"
    assert metrics["objective"]["value"] == metrics["summary"]["val_accuracy"]
    assert 0.0 <= metrics["summary"]["test_accuracy"] <= 1.0
    log = (run / "train.log").read_text()
    assert "epoch 1/1" in log and "run folder" in log
    # the CLI's last lines: the run folder and the test accuracy
    tail = proc.stdout.strip().splitlines()[-2:]
    assert tail[0] == f"run folder: {run}"
    assert tail[1] == f"test accuracy: {metrics['summary']['test_accuracy']:.4f}"


def test_sgd_at_1e3_really_trains_with_sgd(sgd_run):
    _, run, _ = sgd_run
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["lr"] == 1e-3
    assert cfg["optimizer"]["_target_"] == "torch.optim.SGD"
    assert cfg["optimizer"]["lr"] == 1e-3 and cfg["optimizer"]["momentum"] == 0.9
    assert "optimizer=sgd" in yaml.safe_load((run / ".hydra/overrides.yaml").read_text())
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    group = ckpt["optimizer_state_dict"]["param_groups"][0]
    assert group["lr"] == 1e-3 and group["momentum"] == 0.9 and group["nesterov"] is False
    assert any("momentum_buffer" in s for s in ckpt["optimizer_state_dict"]["state"].values())
    assert ckpt["epoch"] == 1 and "model_state_dict" in ckpt


def test_evaluate_a_checkpoint(sgd_run, cache_dir, tmp_path):
    _, run, _ = sgd_run
    best = run / "checkpoints" / "best.ckpt"
    proc = run_cli([*tiny_overrides(), "train=false", f"ckpt_path={best}", *paths(tmp_path, cache_dir)])
    assert proc.returncode == 0, explain(proc)
    out = run_folder(proc.stdout)
    assert out != run and out.is_dir()
    metrics = json.loads((out / "metrics.json").read_text())
    test = metrics["test"]
    # the data it was trained on: the run's own held-out test split, not the 160 traces it partly trained on
    held_out = json.loads((run / "metrics.json").read_text())["test"]
    assert test["num_samples"] == held_out["num_samples"] < 160 and 0.0 <= test["accuracy"] <= 1.0
    assert np.array(test["confusion_matrix"]).sum() == test["num_samples"]
    assert test["evaluated"].startswith("test split of ") and test["evaluated"] == held_out["evaluated"]
    assert metrics["history"] == [] and not (out / "checkpoints" / "last.ckpt").exists()
    assert f"test accuracy: {test['accuracy']:.4f}" in proc.stdout
    log = (out / "train.log").read_text()
    assert "evaluating" in log and "objective: test_accuracy=" in log
    assert "WARNING" not in proc.stdout + proc.stderr, explain(proc)  # nothing to warn of in an evaluation


def test_a_four_job_multirun_and_its_summary(tmp_path, cache_dir):
    proc = run_cli(["-m", "optimizer=adam,sgd", "lr=1e-3,1e-4", *tiny_overrides(), *paths(tmp_path, cache_dir)],
                   timeout=240)
    assert proc.returncode == 0, explain(proc)
    (sweep,) = list((tmp_path / "debug" / "multiruns").iterdir())
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert jobs == ["0", "1", "2", "3"]
    seen = set()
    for job in jobs:
        folder = sweep / job
        for name in ("metrics.json", "config.yaml", "train.log", "checkpoints/last.ckpt"):
            assert (folder / name).is_file(), (job, name)
        cfg = yaml.safe_load((folder / "config.yaml").read_text())
        seen.add((cfg["optimizer"]["_target_"].rsplit(".", 1)[-1], cfg["lr"], cfg["optimizer"]["lr"]))
    assert seen == {("Adam", 1e-3, 1e-3), ("Adam", 1e-4, 1e-4), ("SGD", 1e-3, 1e-3), ("SGD", 1e-4, 1e-4)}
    with open(sweep / "summary.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4 and {r["status"] for r in rows} == {"ok"}
    assert {"job", "overrides", "objective", "val_accuracy", "test_accuracy"} <= set(rows[0])
    overrides = {r["overrides"] for r in rows}
    for opt in ("adam", "sgd"):
        for lr in ("0.001", "0.0001"):
            assert any(f"optimizer={opt}" in o and f"lr={lr}" in o for o in overrides), (opt, lr, overrides)
    for r in rows:
        metrics = json.loads((sweep / r["job"] / "metrics.json").read_text())
        assert float(r["objective"]) == pytest.approx(metrics["objective"]["value"])
    md = (sweep / "summary.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| rank"))
    assert "overrides" in header and "objective" in header and "val_accuracy" in header
    assert md.count("optimizer=") == 4
    assert f"sweep summary: {sweep / 'summary.md'}" in proc.stdout


@pytest.mark.slow  # 25 s; test_launchers.py::test_optuna_study_resumes_in_a_second_invocation checks the same, 1 trial each
def test_an_optuna_sweep_finishes_and_a_second_invocation_resumes_it(tmp_path, cache_dir):
    # (an override of a searched key would fix it: keep the tiny job's batch size and width out)
    tiny = [o for o in tiny_overrides() if not o.startswith(("trainer.batch_size=", "model.base_channels="))]
    args = ["hparams_search=optuna", "hydra.sweeper.n_trials=3", *tiny, *paths(tmp_path, cache_dir)]
    first = run_cli(args, timeout=240)
    assert first.returncode == 0, explain(first)
    db = tmp_path / "optuna" / "debug.db"
    assert db.is_file()
    second = run_cli(args, timeout=240)
    assert second.returncode == 0, explain(second)
    assert "Using an existing study" in second.stdout + second.stderr
    with sqlite3.connect(db) as con:
        states = [s for (s,) in con.execute("select state from trials")]
        values = [v for (v,) in con.execute("select value from trial_values")]
        params = {p for (p,) in con.execute("select param_name from trial_params")}
    assert len(states) == 6 and set(states) == {"COMPLETE"}
    assert len(values) == 6 and all(0.0 <= v <= 1.0 for v in values)
    assert params == {"lr", "trainer.batch_size", "optimizer.weight_decay", "model.base_channels"}
    sweeps = sorted((tmp_path / "debug" / "multiruns").iterdir())
    assert len(sweeps) == 2
    for sweep in sweeps:
        assert sorted(p.name for p in sweep.iterdir() if p.is_dir() and p.name.isdigit()) == ["0", "1", "2"]
        assert (sweep / "summary.csv").is_file() and (sweep / "summary.md").is_file()


def test_relative_data_path_resolves_against_the_users_folder(tmp_path):
    work = tmp_path / "elsewhere"
    n = 64
    rng = np.random.default_rng(0)
    write_flat_file(work / "rel" / "file.hdf5", rng.standard_normal((n, 600)).astype(np.float32), np.arange(n) % 3,
                    p_pick=np.full(n, 300), evids=np.arange(n) // 4)
    proc = run_cli(["data=flat", "data.path=rel/file.hdf5", *TINY_ANY_DATA, f"paths.log_dir={tmp_path / 'logs'}"],
                   cwd=work)
    assert proc.returncode == 0, explain(proc)
    folder = run_folder(proc.stdout)
    assert folder.parent == tmp_path / "logs" / "debug" / "runs"
    cfg = yaml.safe_load((folder / "config.yaml").read_text())
    assert cfg["data"]["path"] == "rel/file.hdf5"  # as the user typed it ...
    assert str(work / "rel" / "file.hdf5") in (folder / "train.log").read_text()  # ... read from their folder
    metrics = json.loads((folder / "metrics.json").read_text())
    assert sum(split["traces"] for split in metrics["data"]["splits"].values()) == n


def test_failing_jobs_exit_non_zero_with_the_traceback_in_their_own_folders(tmp_path):
    # two jobs started together (the same second): two folders, each with its own train.log
    (tmp_path / "broken.hdf5").write_text("not an HDF5 file\n")  # there, so only reading it fails
    args = ["data=flat", "data.path=broken.hdf5", *TINY_ANY_DATA, f"paths.log_dir={tmp_path}"]
    procs = [start_cli(args, cwd=tmp_path) for _ in range(2)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode != 0, (out, err)
        assert "broken.hdf5" in err
    runs = sorted((tmp_path / "debug" / "runs").iterdir())
    assert len(runs) == 2, runs
    for run in runs:
        log = (run / "train.log").read_text()
        assert "Traceback" in log and "broken.hdf5: cannot open as HDF5" in log and "DataFormatError" in log
        assert (run / ".hydra" / "config.yaml").is_file() and not (run / "metrics.json").exists()


def test_bad_overrides_fail_before_any_data_is_touched(tmp_path):
    cache = tmp_path / "cache"
    # at compose time (Hydra's message), and a value only TrainingConfig can judge (before the data)
    cases = {"lr=abc": "Error merging override lr=abc", "trainer.batch_size=0": "trainer.batch_size=0: expected"}
    procs = {arg: start_cli([*tiny_overrides(), *paths(tmp_path / "logs", cache), arg]) for arg in cases}
    for arg, p in procs.items():
        out, err = p.communicate(timeout=120)
        assert p.returncode != 0, (arg, out, err)
        assert cases[arg] in err, (arg, err[-3000:])
    assert not cache.exists() or not any(cache.iterdir())  # no synthetic set generated
