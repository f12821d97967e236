"""Evaluation reports: numbers checked by hand, report.md / PNGs / TensorBoard after real runs."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from seispolarity.data.dataset import WaveformDataset
from seispolarity.models import Ross
from seispolarity.reports import (
    ReportConfig,
    analyse,
    baseline_on_dataset,
    bin_metrics,
    plots_available,
    prediction_metrics,
    render_markdown,
    write_report,
)
from seispolarity.training import Trainer, TrainingConfig, confusion_matrix, metrics_from_confusion

ROOT = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"

# A tiny fixed prediction set (0 up, 1 down, 2 unknown)
LABELS = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 2])
PREDS = np.array([0, 1, 0, 2, 1, 0, 2, 0, 2, 2])
# by hand: true up -> predicted up, down, up, unknown = [2, 1, 1]; true down -> down, up = [1, 1, 0];
#          true unknown -> unknown, up, unknown, unknown = [1, 0, 3]
CM = [[2, 1, 1], [1, 1, 0], [1, 0, 3]]


def test_confusion_matrix_by_hand():
    cm = confusion_matrix(torch.from_numpy(LABELS), torch.from_numpy(PREDS), 3)
    assert cm.tolist() == CM
    for m in (metrics_from_confusion(cm), prediction_metrics(LABELS, PREDS, 3)):
        assert m["confusion_matrix"] == CM
        assert m["accuracy"] == pytest.approx(6 / 10)
        # precision = diagonal / column sums (4, 2, 4); recall = diagonal / row sums (4, 2, 4)
        assert m["precision"] == pytest.approx({"up": 2 / 4, "down": 1 / 2, "unknown": 3 / 4})
        assert m["recall"] == pytest.approx({"up": 2 / 4, "down": 1 / 2, "unknown": 3 / 4})
        assert m["f1"] == pytest.approx({"up": 0.5, "down": 0.5, "unknown": 0.75})
        assert m["support"] == {"up": 4, "down": 2, "unknown": 4}
        assert m["macro_f1"] == pytest.approx((0.5 + 0.5 + 0.75) / 3)
        # up/down only: of the 6 traces truly up or down, 2 + 1 have the right sign
        assert m["updown_accuracy"] == pytest.approx(3 / 6)
    text = render_markdown(prediction_metrics(LABELS, PREDS, 3))
    assert "| up | 2 | 1 | 1 |" in text and "| down | 1 | 1 | 0 |" in text and "| unknown | 1 | 0 | 3 |" in text
    assert "| accuracy | 0.6000 |" in text and "| up/down accuracy | 0.5000 |" in text
    assert "| unknown | 0.7500 | 0.7500 | 0.7500 | 4 |" in text
    # a two-class model: unknown labels are left out, as Trainer.evaluate does
    two = prediction_metrics(LABELS, np.minimum(PREDS, 1), 2)
    assert two["excluded_unknown"] == 4 and two["confusion_matrix"] == [[2, 2], [1, 1]]


def test_snr_bin_accuracies_on_a_constructed_case():
    snr = np.array([-99.0, -2.0, 3.0, 7.0, 12.0, 15.0, 18.0, 25.0, 60.0, np.nan])
    # bins with edges [0, 10, 20]: < 0 -> traces 0, 1; 0-10 -> 2, 3; 10-20 -> 4, 5, 6; >= 20 -> 7, 8; n/a -> 9
    rows = bin_metrics(snr, LABELS, PREDS, [0, 10, 20], baseline=np.array([0, 0, 0, 0, 1, 0, 2, 2, 2, 0]))
    assert [r["bin"] for r in rows] == ["< 0", "0 to 10", "10 to 20", ">= 20", "n/a"]
    assert [r["count"] for r in rows] == [2, 2, 3, 2, 1]
    assert [(r["low"], r["high"]) for r in rows] == [(None, 0.0), (0.0, 10.0), (10.0, 20.0), (20.0, None), (None, None)]
    # network: correct = [1, 0, 1, 0, 1, 0, 1, 0, 1, 1]
    assert [r["accuracy"] for r in rows] == pytest.approx([0.5, 0.5, 2 / 3, 0.5, 1.0])
    # up/down traces per bin: 0,1 | 2,3 | 4,5 | none | none
    assert [r["updown_count"] for r in rows] == [2, 2, 2, 0, 0]
    assert [r["updown_accuracy"] for r in rows[:3]] == pytest.approx([0.5, 0.5, 0.5])
    assert rows[3]["updown_accuracy"] is None and rows[4]["updown_accuracy"] is None
    # baseline: correct = [1, 1, 1, 1, 1, 0, 1, 1, 1, 0]
    assert [r["baseline_accuracy"] for r in rows] == pytest.approx([1.0, 1.0, 2 / 3, 1.0, 0.0])
    assert [r["baseline_updown_accuracy"] for r in rows[:3]] == pytest.approx([1.0, 1.0, 0.5])
    # analyse(): bins for each metadata key present, the baseline's metrics, unknown left out for 2 classes
    out = analyse(LABELS, np.minimum(PREDS, 1), 2, {"snr": snr, "distance": np.arange(10.0) * 10},
                  baseline=np.zeros(10, int), options=ReportConfig(snr_bins=[0, 10, 20], distance_bins=[50]))
    assert set(out["bins"]) == {"snr", "distance"}
    assert [r["count"] for r in out["bins"]["snr"]] == [2, 2, 2, 0]  # the 4 unknown-labelled traces are out
    assert [r["count"] for r in out["bins"]["distance"]] == [5, 1]  # distances 0, 10, ..., 50 km
    assert out["baseline"]["num_samples"] == 6 and out["baseline"]["accuracy"] == pytest.approx(4 / 6)
    with pytest.raises(ValueError, match="increase"):
        ReportConfig(snr_bins=[10, 0])


def _step_file(path: Path, n_each: int = 4, seed: int = 0) -> Path:
    """Noise plus a clear step at P (sample 300 of 600): up, down, and noise-only traces."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 0.01, (3 * n_each, 600)).astype(np.float32)
    x[:n_each, 300:] += 1.0
    x[n_each:2 * n_each, 300:] -= 1.0
    labels = np.repeat([0, 1, 2], n_each)
    with h5py.File(path, "w") as f:
        f["X"] = x
        f["Y"] = labels
        f["p_pick"] = np.full(len(x), 300)
        f["snr"] = np.where(labels == 2, -99.0, 40.0).astype(np.float32)
        f["evids"] = np.arange(len(x))
        f.attrs["sampling_rate"] = 100.0
    return path


def test_baseline_and_report_in_process(tmp_path, monkeypatch):
    monkeypatch.setenv("SEISPOLARITY_NO_PLOTS", "1")
    data = WaveformDataset(_step_file(tmp_path / "steps.hdf5"), name="flat", preload=True, window_length=400,
                           max_shift=5)
    # the first-break baseline reads the raw window with P at its centre: it gets these right
    np.testing.assert_array_equal(baseline_on_dataset(data), np.repeat([0, 1, 2], 4))
    np.testing.assert_array_equal(baseline_on_dataset(data, [5, 0, 11]), [1, 0, 2])
    torch.manual_seed(0)
    trainer = Trainer(model=Ross(num_classes=3, base_channels=4, fc_units=16), dataset=data,
                      config=TrainingConfig(device="cpu", num_workers=0, validation_split=0.0, save_dir=None,
                                            show_progress=False, batch_size=5))
    ev = trainer.evaluate(data, return_predictions=True)
    metrics = write_report(tmp_path / "run", trainer, data, ev, history=[], options={"snr_bins": [0, 20]})
    assert not any(k in metrics for k in ("predictions", "probabilities", "labels", "indices"))
    assert metrics["baseline"]["accuracy"] == 1.0 and metrics["baseline"]["updown_accuracy"] == 1.0
    assert metrics["baseline"]["confusion_matrix"] == [[4, 0, 0], [0, 4, 0], [0, 0, 4]]
    snr = metrics["bins"]["snr"]
    assert [r["count"] for r in snr] == [4, 0, 8] and [r["baseline_accuracy"] for r in snr] == [1.0, None, 1.0]
    net_correct = ev["predictions"] == ev["labels"]
    assert snr[2]["accuracy"] == pytest.approx(net_correct[:8].mean())
    assert metrics["figures"] == []  # SEISPOLARITY_NO_PLOTS=1
    text = (tmp_path / "run" / "report.md").read_text()
    assert "No figures" in text and "| >= 20 | 8 |" in text and "first-break baseline" in text
    rows = (tmp_path / "run" / "test_predictions.csv").read_text().splitlines()
    assert rows[0].startswith("index,label,prediction,p_up,p_down,p_unknown,baseline,event_id,snr")
    assert len(rows) == 13 and rows[5].split(",")[6] == "1"  # trace 4 is a down step: baseline 1
    # report disabled: the plain metrics, nothing written
    plain = write_report(tmp_path / "off", trainer, data, trainer.evaluate(data, return_predictions=True),
                         options=ReportConfig(enabled=False))
    assert "bins" not in plain and not (tmp_path / "off" / "report.md").exists()


# -- real runs of train.py -------------------------------------------------------------------------
TINY = ["debug=fast", "model=ross", "model.base_channels=4", "model.fc_units=16", "data.num_traces=240",
        "data.max_traces=240", "trainer.batch_size=32"]


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("SEISPOLARITY_NO_PLOTS", None)
    env.update(extra)
    return env


def _train_py(args, env=None) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), *map(str, args)], cwd=ROOT, env=env or _env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc


@pytest.fixture(scope="module")
def fast_run(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("reports")
    run = root / "run"
    (root / "mplconfig").mkdir()  # a first run on this machine, as far as matplotlib knows: no font cache
    _train_py(TINY + [f"hydra.run.dir={run}", f"paths.log_dir={root / 'logs'}", f"paths.cache_dir={root / 'cache'}"],
              env=_env(MPLCONFIGDIR=str(root / "mplconfig")))
    return root, run


def test_matplotlib_info_stays_out_of_the_run_log(fast_run):
    """matplotlib's "generated new fontManager" (INFO, on a machine's first run) is not the run's news."""
    root, run = fast_run
    if not plots_available():
        pytest.skip("matplotlib (the plots extra) is not installed")
    assert list((root / "mplconfig").glob("fontlist*.json")), "matplotlib built no font cache: nothing was tested"
    log = (run / "train.log").read_text()
    assert "matplotlib" not in log, [line for line in log.splitlines() if "matplotlib" in line]


def _seconds(text: str) -> float:
    """``12.3 s``, ``4 min 5 s`` or ``1 h 2 min`` (evaluation._duration) in seconds."""
    m = re.fullmatch(r"(?:(\d+) h )?(?:(\d+) min)? ?(?:([\d.]+) s)?", text.strip())
    h, mins, secs = (float(g) if g else 0.0 for g in m.groups())
    return 3600 * h + 60 * mins + secs


def test_report_wall_time_says_where_it_ends(fast_run):
    """report.md's wall time is taken before the report is written, metrics.json's wall_time_s at the
    end of the run (17.3 vs 20.2 s): the report says so, and its number is the smaller."""
    _, run = fast_run
    text = (run / "report.md").read_text()
    m = re.search(r"^- wall time: (.+) up to this report \(metrics\.json's wall_time_s counts the whole run\)$",
                  text, flags=re.M)
    assert m, text.split("## Summary")[0]
    assert _seconds(m.group(1)) <= json.loads((run / "metrics.json").read_text())["summary"]["wall_time_s"] + 0.5


def test_train_py_debug_fast_writes_report(fast_run):
    _, run = fast_run
    metrics = json.loads((run / "metrics.json").read_text())
    test = metrics["test"]
    n = test["num_samples"]
    assert n > 0 and sum(test["support"].values()) == n
    assert set(test["bins"]) == {"snr", "magnitude", "distance"}  # the synthetic set has all three
    for rows in test["bins"].values():
        assert sum(r["count"] for r in rows) == n
    assert test["baseline"]["name"] == "first_break_polarity" and test["baseline"]["num_samples"] == n
    assert metrics["summary"]["test_baseline_accuracy"] == test["baseline"]["accuracy"]
    # per-trace file agrees with the confusion matrix
    lines = (run / "test_predictions.csv").read_text().splitlines()
    header, body = lines[0].split(","), [row.split(",") for row in lines[1:]]
    assert len(body) == n
    li, pi = header.index("label"), header.index("prediction")
    correct = sum(int(r[li]) == int(r[pi]) for r in body)
    assert correct == pytest.approx(test["accuracy"] * n)
    text = (run / "report.md").read_text()
    assert text.startswith("# Evaluation report")
    assert f"| accuracy | {test['accuracy']:.4f} | {test['baseline']['accuracy']:.4f} |" in text
    for section in ("## Accuracy by SNR (dB)", "## Accuracy by magnitude", "## Accuracy by distance (km)",
                    "## Network: per class", "## First-break baseline: per class"):
        assert section in text
    if not plots_available():
        pytest.skip("matplotlib (the plots extra) is not installed: text-only report checked")
    for name in ("confusion_matrix", "training_curves", "accuracy_vs_snr", "accuracy_vs_magnitude",
                 "accuracy_vs_distance"):
        png = run / f"{name}.png"
        assert png.read_bytes()[:8] == PNG and png.stat().st_size > 5000, name
        assert f"]({name}.png)" in text
    assert test["figures"] == [f"{n_}.png" for n_ in ("confusion_matrix", "training_curves", "accuracy_vs_snr",
                                                      "accuracy_vs_magnitude", "accuracy_vs_distance")]
    # TensorBoard: the figures as images, and the hyperparameters with the final metrics
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    assert {"Test/confusion_matrix", "Test/accuracy_vs_snr", "Test/training_curves"} <= set(events.Tags()["images"])
    assert "Test/baseline_accuracy" in events.Tags()["scalars"]
    hp = EventAccumulator(str(run / "tensorboard" / "hparams"))
    hp.Reload()
    assert "_hparams_/session_start_info" in hp.PluginTagToContent("hparams")
    assert hp.Scalars("hparam/test_accuracy")[0].value == pytest.approx(test["accuracy"], abs=1e-6)


def test_eval_only_run_without_matplotlib(fast_run, tmp_path):
    """`train=false ckpt_path=...` writes the report too; with matplotlib hidden it is text only."""
    root, run = fast_run
    shim = tmp_path / "shim" / "matplotlib"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text('raise ImportError("matplotlib hidden by the test")\n')
    env = _env(PYTHONPATH=os.pathsep.join([str(tmp_path / "shim"), os.environ.get("PYTHONPATH", "")]))
    probe = subprocess.run([sys.executable, "-c", "import matplotlib"], env=env, capture_output=True, text=True)
    assert probe.returncode != 0 and "hidden by the test" in probe.stderr
    out = tmp_path / "eval"
    proc = _train_py(TINY + ["train=false", f"ckpt_path={run / 'checkpoints' / 'best.ckpt'}", "report.snr_bins=[0,20]",
                             f"hydra.run.dir={out}", f"paths.log_dir={root / 'logs'}",
                             f"paths.cache_dir={root / 'cache'}"], env=env)
    assert re.search(r"test accuracy: [0-9.]+", proc.stdout)
    metrics = json.loads((out / "metrics.json").read_text())
    test = metrics["test"]
    # train=false on the data the checkpoint was trained on scores that run's held-out test split
    assert test["num_samples"] == json.loads((run / "metrics.json").read_text())["test"]["num_samples"] < 240
    assert [r["bin"] for r in test["bins"]["snr"]] == ["< 0", "0 to 20", ">= 20"]
    assert test["figures"] == [] and not list(out.glob("*.png"))
    text = (out / "report.md").read_text()
    assert "No figures: matplotlib is not installed" in text and "## Accuracy by SNR (dB)" in text


def test_readme_outputs_tree_names_every_file_a_run_writes(fast_run):
    """README's "Where outputs land" lists what a run folder holds (the PNGs as "PNG figures")."""
    _, run = fast_run
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Where outputs land", 1)[1].split("\n## ", 1)[0]
    written = sorted(p.name for p in run.iterdir() if p.suffix != ".png")
    assert [name for name in written if name not in section] == []
