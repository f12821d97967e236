"""Cross-domain evaluation (`eval_sets`), what `train=false` scores, and the report's run header, through
real `python train.py` runs (tiny debug settings) and the compose API + the runner, on real HDF5 files
in the SCSN layout (X (N, 600) float32, Y int64, P at 300) written into pytest's folders."""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException

from conftest import ROOT, explain, run_cli, run_folder, tiny_overrides, write_flat_file, write_scsn_file
from seispolarity.config import register_configs

pytestmark = pytest.mark.usefixtures("one_thread")
register_configs()

N_REAL = 60  # 20 up, 20 down, 20 unknown


def write_steps(path: Path, n: int = N_REAL) -> Path:
    """Noise with a clear step at P (sample 300): up for label 0, down for 1, none for 2 (unknown)."""
    rng = np.random.default_rng(1)
    labels = (np.arange(n) % 3).astype(np.int64)
    x = rng.standard_normal((n, 600)).astype(np.float32)
    sign = np.where(labels == 0, 1.0, np.where(labels == 1, -1.0, 0.0))
    x[:, 300:] += (sign[:, None] * 20.0 * np.exp(-np.arange(300) / 50.0)).astype(np.float32)
    return write_scsn_file(path, X=x, Y=labels)


def eval_sets_override(**sets: Path) -> str:
    return "eval_sets={" + ", ".join(f"{name}: {{name: SCSN, path: '{path}'}}" for name, path in sets.items()) + "}"


def paths(log_dir: Path, cache_dir: Path) -> list[str]:
    return [f"paths.log_dir={log_dir}", f"paths.cache_dir={cache_dir}"]


LINE = r"^.*{name}: accuracy [0-9.]+, up/down accuracy [0-9.]+ \(first-break baseline [0-9.]+\) on {n} traces$"


@pytest.fixture(scope="module")
def real_file(tmp_path_factory) -> Path:
    return write_steps(tmp_path_factory.mktemp("real") / "steps_scsn.hdf5")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, cache_dir, real_file):
    """One tiny training run with an eval set (the default report: baseline, bins, figures)."""
    logs = tmp_path_factory.mktemp("logs")
    overrides = [o for o in tiny_overrides() if not o.startswith("report=")]
    proc = run_cli([*overrides, eval_sets_override(steps=real_file), *paths(logs, cache_dir)], timeout=180)
    assert proc.returncode == 0, explain(proc)
    return proc, run_folder(proc.stdout), logs


def test_eval_sets_reach_metrics_report_and_log(trained, real_file):
    proc, run, _ = trained
    metrics = json.loads((run / "metrics.json").read_text())
    steps = metrics["eval_sets"]["steps"]
    for key in ("accuracy", "updown_accuracy", "precision", "recall", "f1", "support", "macro_f1",
                "confusion_matrix", "num_samples", "excluded_unknown", "loss", "bins", "baseline", "evaluated"):
        assert key in steps, key
    assert steps["num_samples"] == N_REAL and np.array(steps["confusion_matrix"]).sum() == N_REAL
    assert steps["support"] == {"up": 20, "down": 20, "unknown": 20}
    assert steps["evaluated"] == f"all of {real_file} ({N_REAL} traces)"
    assert steps["baseline"]["updown_accuracy"] == 1.0  # clean steps: the first-break picker reads them all
    summary = metrics["summary"]
    assert summary["eval_steps_updown_accuracy"] == steps["updown_accuracy"]
    assert summary["eval_steps_baseline_updown_accuracy"] == 1.0
    rows = (run / "eval_steps_predictions.csv").read_text().splitlines()
    assert len(rows) == N_REAL + 1 and "baseline" in rows[0]
    text = (run / "report.md").read_text()
    assert "## Eval set: steps" in text and f"- evaluated: all of {real_file} ({N_REAL} traces)" in text
    assert f"| up/down accuracy | {steps['updown_accuracy']:.4f} | 1.0000 |" in text
    assert "### steps: first-break baseline: per class" in text
    assert re.search(LINE.format(name="steps", n=N_REAL), proc.stdout, flags=re.M), proc.stdout[-3000:]
    # the test set keeps its place: the report's test sections first, the CLI's last two lines
    assert text.index("## Summary") < text.index("## Eval set: steps")
    assert proc.stdout.strip().splitlines()[-1].startswith("test accuracy: ")
    assert metrics["test"]["evaluated"].startswith("test split of ")


def test_report_has_a_run_header(trained):
    _, run, _ = trained
    metrics = json.loads((run / "metrics.json").read_text())
    text = (run / "report.md").read_text()
    header = text.split("## Summary")[0]
    for line in ("- model: ppnet", f"- parameters: {metrics['summary']['parameters']:,}", "- optimizer: Adam",
                 "- learning rate: 0.001", "- scheduler: none", "- batch size: 32", "- epochs trained: 1 of 1",
                 "- best epoch: 1", "- data: synthetic, 160 traces generated (seed 0)", "- seed: 42", "- wall time: "):
        assert line in header, (line, header)
    splits = metrics["data"]["splits"]
    assert f"- traces: train {splits['train']['traces']}, validation {splits['val']['traces']}" in header
    assert "- evaluated: test split of " in header


def test_eval_only_scores_the_held_out_split_and_honours_eval_sets(trained, cache_dir, real_file, tmp_path):
    _, run, _ = trained
    trained_metrics = json.loads((run / "metrics.json").read_text())
    best = run / "checkpoints" / "best.ckpt"
    overrides = [o for o in tiny_overrides() if not o.startswith("report=")]
    proc = run_cli([*overrides, "train=false", f"ckpt_path={best}", eval_sets_override(again=real_file),
                    *paths(tmp_path, cache_dir)])
    assert proc.returncode == 0, explain(proc)
    out = run_folder(proc.stdout)
    metrics = json.loads((out / "metrics.json").read_text())
    test, held_out = metrics["test"], trained_metrics["test"]
    # the same traces the training run tested, not the 160 it partly trained on
    assert test["num_samples"] == held_out["num_samples"] < 160
    assert test["confusion_matrix"] == held_out["confusion_matrix"] and test["accuracy"] == held_out["accuracy"]
    assert test["evaluated"] == held_out["evaluated"] == metrics["evaluated"]
    assert re.fullmatch(r"test split of .+\.hdf5 \(\d+ traces\)", test["evaluated"])
    assert list(metrics["data"]["splits"]) == ["test"]
    assert metrics["data"]["splits"]["test"]["traces"] == test["num_samples"]
    assert metrics["eval_sets"]["again"]["accuracy"] == trained_metrics["eval_sets"]["steps"]["accuracy"]
    assert re.search(LINE.format(name="again", n=N_REAL), proc.stdout, flags=re.M)
    text = (out / "report.md").read_text()
    assert "epochs trained: 0" not in text and "- epochs trained (by the checkpoint's run): 1 of 1" in text
    assert f"- evaluation only: checkpoint {best}" in text and f"- evaluated: {test['evaluated']}" in text
    assert "## Eval set: again" in text


def test_eval_only_without_data_options_scores_the_runs_own_data(trained, cache_dir, tmp_path):
    """The run was trained with data.num_traces=160 (not the default 16,000): ``train=false
    ckpt_path=<run>/best.ckpt`` with no data option scores that run's data and held-out split."""
    _, run, _ = trained
    held_out = json.loads((run / "metrics.json").read_text())["test"]
    overrides = [o for o in tiny_overrides() if not o.startswith(("data.", "report="))]
    proc = run_cli([*overrides, "train=false", f"ckpt_path={run / 'checkpoints' / 'best.ckpt'}",
                    *paths(tmp_path, cache_dir)])
    assert proc.returncode == 0, explain(proc)
    assert "evaluation: the data of the checkpoint's run (synthetic, 160 traces" in proc.stdout + proc.stderr
    test = json.loads((run_folder(proc.stdout) / "metrics.json").read_text())["test"]
    assert test["evaluated"] == held_out["evaluated"] and test["confusion_matrix"] == held_out["confusion_matrix"]


def test_eval_only_on_another_file_scores_every_trace(trained, cache_dir, real_file, tmp_path):
    _, run, _ = trained
    overrides = [o for o in tiny_overrides() if not o.startswith("data.")]
    proc = run_cli([*overrides, "train=false", f"ckpt_path={run / 'checkpoints' / 'best.ckpt'}", "data=scsn",
                    f"data.path={real_file}", *paths(tmp_path, cache_dir)])
    assert proc.returncode == 0, explain(proc)
    metrics = json.loads((run_folder(proc.stdout) / "metrics.json").read_text())
    assert metrics["test"]["num_samples"] == N_REAL
    assert metrics["evaluated"] == f"all of {real_file} ({N_REAL} traces)"
    assert metrics["data"]["splits"] == {"test": {"traces": N_REAL, "classes": {"up": 20, "down": 20, "unknown": 20}}}


def test_train_false_without_ckpt_path_is_one_line_and_exit_2(tmp_path, cache_dir):
    proc = run_cli([*tiny_overrides(), "train=false", *paths(tmp_path, cache_dir)])
    assert proc.returncode == 2, explain(proc)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "evaluation needs ckpt_path=<checkpoint>" in lines[0], proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr and "ERROR" not in proc.stdout
    assert "training" not in proc.stdout and "run folder" not in proc.stdout  # nothing ran


def test_a_two_job_sweep_has_a_column_per_eval_set(tmp_path, cache_dir, real_file):
    other = write_steps(tmp_path / "other_scsn.hdf5", n=30)
    proc = run_cli(["-m", "seed=1,2", *tiny_overrides(), eval_sets_override(steps=real_file, other=other),
                    *paths(tmp_path, cache_dir)], timeout=240)
    assert proc.returncode == 0, explain(proc)
    (sweep,) = list((tmp_path / "debug" / "multiruns").iterdir())
    with open(sweep / "summary.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 and {r["status"] for r in rows} == {"ok"}
    for r in rows:
        metrics = json.loads((sweep / r["job"] / "metrics.json").read_text())
        for name in ("steps", "other"):
            assert float(r[f"eval_{name}_updown_accuracy"]) == pytest.approx(metrics["eval_sets"][name]["updown_accuracy"])
    md = (sweep / "summary.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| rank"))
    assert "eval_steps_updown_accuracy" in header and "eval_other_updown_accuracy" in header
    assert "baseline" not in header


# -- in process: compose + the runner ---------------------------------------------------------------------
def composed(overrides: list[str]):
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf"), job_name="test"):
        return compose("train", overrides=overrides)


def test_a_two_class_model_drops_unknown_traces_of_an_eval_set(tmp_path, cache_dir, real_file, monkeypatch):
    from seispolarity.runner import run

    monkeypatch.chdir(tmp_path)  # without @hydra.main the run folder is the current folder
    overrides = [o for o in tiny_overrides() if not o.startswith("report=")]
    cfg = composed([*overrides, "model=cfm", "model.base_channels=4", "report.plots=false", "report.tensorboard=false",
                    eval_sets_override(steps=real_file), *paths(tmp_path / "logs", cache_dir),
                    f"paths.output_dir={tmp_path}"])
    run(cfg)
    steps = json.loads((tmp_path / "metrics.json").read_text())["eval_sets"]["steps"]
    assert steps["num_samples"] == 40 and steps["dropped"] == {"unknown_label": 20}
    assert steps["support"] == {"up": 20, "down": 20} and steps["excluded_unknown"] == 0
    # read as the checkpoint says its inputs are read (CFM's 160-sample window, the run's normalisation):
    # the probabilities are those of the Predictor on the same file
    from seispolarity.inference import Predictor

    with open(tmp_path / "eval_steps_predictions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    result = Predictor(tmp_path / "checkpoints" / "best.ckpt", device="cpu").predict(str(real_file), name="SCSN")
    kept = [i for i in range(N_REAL) if i % 3 != 2]  # the file's up/down rows, in order
    p_up = np.array([float(r["p_up"]) for r in rows])
    np.testing.assert_allclose(p_up, np.asarray(result.probabilities)[kept, 0], atol=1e-5)


def test_eval_sets_are_scored_with_test_false_too(tmp_path, cache_dir, real_file, monkeypatch):
    from seispolarity.runner import run

    monkeypatch.chdir(tmp_path)
    overrides = [o for o in tiny_overrides() if not o.startswith("report=")]
    cfg = composed([*overrides, "test=false", "report.plots=false", "report.tensorboard=false",
                    eval_sets_override(steps=real_file), *paths(tmp_path / "logs", cache_dir),
                    f"paths.output_dir={tmp_path}"])
    run(cfg)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["test"] is None and metrics["eval_sets"]["steps"]["num_samples"] == N_REAL
    text = (tmp_path / "report.md").read_text()
    assert text.startswith("# Evaluation report\n\n- model: ppnet") and "## Eval set: steps" in text


def test_eval_sets_from_an_experiment_yaml_and_the_command_line(real_file, tmp_path):
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "cross.yaml").write_text(
        f"# @package _global_\neval_sets:\n  a:\n    name: SCSN\n    path: {real_file}\n")
    cfg = composed([f"hydra.searchpath=[file://{tmp_path}]", "experiment=cross", "eval_sets.a.preload=true",
                    "eval_sets={b: {name: synthetic, num_traces: 50, seed: 3}}"])
    assert set(cfg.eval_sets) == {"a", "b"} and cfg.eval_sets.a.path == str(real_file)
    assert cfg.eval_sets.a.preload is True and cfg.eval_sets.b.seed == 3
    assert composed(["eval_sets=null"]).eval_sets is None and dict(composed([]).eval_sets) == {}


def test_eval_set_keys_and_types_are_checked_at_compose_time():
    with pytest.raises(ConfigCompositionException) as err:
        composed(["eval_sets={a: {name: SCSN, pth: /x}}"])
    assert "pth" in str(err.value.__cause__) and "eval_sets.a.pth" in str(err.value.__cause__)
    with pytest.raises(ConfigCompositionException) as err:
        composed(["eval_sets={a: {name: SCSN, path: /x, max_traces: many}}"])
    assert "eval_sets.a.max_traces" in str(err.value.__cause__)


BAD_SETS = [("{a: {path: /x.hdf5}}", "eval_sets.a needs name=<layout>"),
            ("{a: {name: scsn}}", "eval_sets.a needs path=<file>"),
            ("{a: {name: scsn, path: /x.hdf5, csv_path: /y.csv}}", "eval_sets.a.csv_path: not a key of name=scsn"),
            ("{a: {name: nosuch, path: /x.hdf5}}", "got name='nosuch'"),
            ("{a/b: {name: scsn, path: /x.hdf5}}", "eval_sets.a/b: a set's name may hold")]


@pytest.mark.parametrize("value,message", BAD_SETS, ids=[b[1].split(":")[0] for b in BAD_SETS])
def test_bad_eval_sets_fail_in_one_line_before_any_data(value, message, tmp_path, monkeypatch):
    from seispolarity.runner import run

    monkeypatch.chdir(tmp_path)
    cache = tmp_path / "cache"
    cfg = composed([*tiny_overrides(), f"eval_sets={value}", *paths(tmp_path / "logs", cache),
                    f"paths.output_dir={tmp_path}"])
    with pytest.raises(ValueError) as err:
        run(cfg)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert not cache.exists() or not any(cache.iterdir())  # failed before the synthetic set was made


def test_eval_set_files_that_do_not_fit_name_the_set(tmp_path, cache_dir, monkeypatch):
    from seispolarity.runner import run

    monkeypatch.chdir(tmp_path)
    slow = write_flat_file(tmp_path / "slow.hdf5", np.zeros((6, 600), np.float32), np.arange(6) % 3,
                           p_pick=np.full(6, 300), attrs={"sampling_rate": 50.0})
    for value, message in ((f"{{gone: {{name: scsn, path: '{tmp_path / 'missing.hdf5'}'}}}}",
                            f"eval_sets.gone.path={tmp_path / 'missing.hdf5'}: no such file"),
                           (f"{{slow: {{name: flat, path: '{slow}'}}}}", "eval_sets.slow: sampled at 50 Hz")):
        cfg = composed([*tiny_overrides(), f"eval_sets={value}", *paths(tmp_path / "logs", cache_dir),
                        f"paths.output_dir={tmp_path}"])
        with pytest.raises(ValueError) as err:
            run(cfg)
        assert message in str(err.value), str(err.value)


def test_bins_without_updown_traces_say_so():
    from seispolarity.reports import analyse, prediction_metrics, render_markdown

    labels = np.array([2, 2, 0, 1, 0, 1])
    preds = np.array([2, 2, 0, 0, 0, 1])
    snr = np.array([-99.0, -99.0, 15.0, 15.0, 30.0, 30.0])
    metrics = prediction_metrics(labels, preds, 3)
    metrics.update(analyse(labels, preds, 3, {"snr": snr}))
    text = render_markdown(metrics)
    assert "| < 0 | 2 | no up/down traces | 0 | - |" in text
    assert "| 10 to 20 | 2 | 0.5000 | 2 | 0.5000 |" in text
    assert "holds only traces labelled unknown" in text
