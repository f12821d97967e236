"""The real-data pipeline end to end: files in each real layout -> WaveformDataset -> splits ->
Trainer -> `python train.py data=<layout> ...` -> run folder; label maps; bad input.

Every file is written into tmp_path in its real layout by seispolarity.data.layouts (SCSN,
SeisBench x INSTANCE / PNW / TXED, DiTing) or h5py (flat), with known content:
- labels with unequal class counts (so a swapped map shows), events of 1-4 traces;
- each trace is 0 before its P and sign * (1, 2, 3, ...) from P on (sign +1 up, -1 down, 0 unknown);
  on a 3-component trace only Z carries it (N and E are constant non-zero offsets).
Training runs use the CLI (subprocesses, cwd = repo root) or Hydra's compose API (in process).
"""
from __future__ import annotations

import csv
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from seispolarity import WaveformDataset
from seispolarity.data.augment import AugmentConfig
from seispolarity.data.labels import LabelError
from seispolarity.data.layouts import write_diting, write_scsn, write_seisbench
from seispolarity.data.readers import DataFormatError
from seispolarity.models import Ross
from seispolarity.training import Trainer, TrainingConfig

ROOT = Path(__file__).resolve().parents[1]


def cli_env() -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("HYDRA_FULL_ERROR", None)
    return env


def explain(proc: subprocess.CompletedProcess) -> str:
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-5000:]}"


LAYOUTS = ("scsn", "flat", "instance", "pnw", "txed", "diting")
SIGN = {0: 1.0, 1: -1.0, 2: 0.0}
WORDS = {"instance": ("positive", "negative", "undecidable"), "pnw": ("positive", "negative", "undecidable"),
         "txed": ("U", "D", "N"), "diting": ("U", "D", "")}
ORDER = {"instance": "ZNE", "pnw": "ENZ", "txed": "ZNE"}
P_COLUMN = {"instance": "trace_P_arrival_sample", "pnw": "trace_P_arrival_sample", "txed": "trace_p_arrival_sample"}
LABEL_COLUMN = {"instance": "trace_polarity", "pnw": "trace_P_polarity", "txed": "trace_polarity"}
EVENT_COLUMN = {"instance": "source_id", "pnw": "event_id", "txed": "source_id"}


def known_labels(n: int = 48, seed: int = 0) -> np.ndarray:
    """Up : down : unknown = 1/2 : 1/3 : 1/6 (unequal, so a swapped map changes the counts)."""
    labels = np.array([0] * (n // 2) + [1] * (n // 3) + [2] * (n - n // 2 - n // 3))
    return np.random.default_rng(seed).permutation(labels)


def known_events(n: int, seed: int = 0) -> np.ndarray:
    """Event ids 0, 0, 1, 2, 2, 2, ...: events of 1-4 traces."""
    sizes = np.random.default_rng(seed + 1).integers(1, 5, size=n)
    return np.repeat(np.arange(n), sizes)[:n]


def onset_trace(length: int, p: int, label: int) -> np.ndarray:
    t = np.arange(length, dtype=np.float64)
    return np.where(t >= p, SIGN[int(label)] * (t - p + 1.0), 0.0).astype(np.float32)


def write_layout(name: str, folder: Path, labels: np.ndarray | None = None, events: np.ndarray | None = None,
                 seed: int = 0) -> tuple[Path, dict]:
    """Write one data set in ``name``'s real layout; return its path and what a reader must find."""
    labels = known_labels(seed=seed) if labels is None else np.asarray(labels)
    n = len(labels)
    events = known_events(n, seed) if events is None else np.asarray(events)
    rng = np.random.default_rng(seed + 2)
    folder.mkdir(parents=True, exist_ok=True)
    if name == "scsn":
        X = np.stack([onset_trace(600, 300, y) for y in labels])
        path = write_scsn(folder / "scsn_p_2000_2017_6sec_0.5r_fm_train.hdf5", X, labels, evids=events)
        return path, {"labels": labels, "events": events, "p": np.full(n, 300)}
    if name == "flat":
        p = rng.integers(250, 550, size=n)
        path = folder / "flat.hdf5"
        with h5py.File(path, "w") as f:
            f["X"] = np.stack([onset_trace(800, pi, y) for pi, y in zip(p, labels)])
            f["Y"], f["p_pick"], f["evids"] = labels, p, events
            f.attrs["sampling_rate"] = 100.0
        return path, {"labels": labels, "events": events, "p": p}
    if name in ORDER:
        traces, rows, ps = [], [], []
        for i, y in enumerate(labels):
            length = int(rng.integers(1500, 3000))
            p = int(rng.integers(300, length - 300))
            comps = {"Z": onset_trace(length, p, y), "N": np.full(length, 7.0, np.float32),
                     "E": np.full(length, -5.0, np.float32)}
            traces.append(np.stack([comps[c] for c in ORDER[name]]))
            rows.append({EVENT_COLUMN[name]: f"ev{events[i]}", P_COLUMN[name]: p,
                         LABEL_COLUMN[name]: WORDS[name][y], "station_network_code": "XX", "station_code": f"S{i}"})
            ps.append(p)
        write_seisbench(folder / name, traces, rows, component_order=ORDER[name], bucket_size=16)
        return folder / name, {"labels": labels, "events": np.array([f"ev{e}" for e in events], dtype=object),
                               "p": np.array(ps)}
    if name == "diting":
        traces, rows, ps = [], [], []
        for i, y in enumerate(labels):
            n50 = int(rng.integers(800, 1500))
            p50 = int(rng.integers(200, n50 - 200))
            z = onset_trace(n50, p50, y)
            traces.append(np.stack([z, np.full(n50, 7.0), np.full(n50, -5.0)], axis=1).astype(np.float32))
            rows.append({"part": i % 2, "key": f"{events[i]:06d}.{i:04d}", "ev_id": int(events[i]), "p_pick": p50,
                         "p_motion": WORDS["diting"][y], "p_clarity": "I"})
            ps.append(2 * p50)
        write_diting(folder / "diting", traces, rows)
        return folder / "diting", {"labels": labels, "events": np.array([str(e) for e in events], dtype=object),
                                   "p": np.array(ps)}
    raise ValueError(name)


def edit_csv(path: Path, row: int | None = None, column: str | None = None, value=None, drop: str | None = None):
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    fields = [c for c in rows[0] if c != drop]
    if row is not None:
        rows[row][column] = value
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


# ----------------------------------------------------------------------------------------------
# every layout: labels, P, events and windows as written
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_layout_reads_labels_p_events_and_windows(tmp_path, layout):
    path, want = write_layout(layout, tmp_path)
    ds = WaveformDataset(path, name=layout, preload=True, window_length=400, normalize="none")
    assert len(ds) == len(want["labels"])
    assert ds.labels.tolist() == want["labels"].tolist()
    assert [str(e) for e in ds.event_ids()] == [str(e) for e in want["events"]]
    assert ds.p_index.tolist() == want["p"].tolist()
    x = ds.raw_windows(torch.arange(len(ds)))[:, 0]  # (N, 400), P at 200; the vertical channel
    assert ds.num_channels == 1
    assert tuple(ds._store.shape) == (len(ds), 1, 400)  # preload keeps the windows only, not the traces
    # DiTing is interpolated from 50 Hz: the sample just before P already moves half a step
    quiet = 199 if layout == "diting" else 200
    assert float(x[:, :quiet].abs().max()) == 0.0
    signs = torch.sign(x[:, 200:].sum(dim=1))
    assert signs.tolist() == [SIGN[int(y)] for y in want["labels"]]


# ----------------------------------------------------------------------------------------------
# splits: event-grouped, seeded; augmentation only after the split
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["scsn", "instance", "pnw", "diting"])
def test_event_grouped_split_keeps_every_event_on_one_side(tmp_path, layout):
    labels = known_labels(n=240)
    path, want = write_layout(layout, tmp_path, labels=labels)
    ds = WaveformDataset(path, name=layout)
    train, val, test = ds.split(0.2, 0.2, seed=11)
    sides = [set(map(str, part.event_ids())) for part in (train, val, test)]
    assert not sides[0] & sides[1] and not sides[0] & sides[2] and not sides[1] & sides[2]
    rows = np.concatenate([train.rows, val.rows, test.rows])
    assert sorted(rows.tolist()) == list(range(len(ds)))  # every trace once, none twice
    for part, share in ((val, 0.2), (test, 0.2)):
        assert abs(len(part) - share * len(ds)) <= 4  # whole events of <= 4 traces
    # seeded: the same seed gives the same split, another seed another one
    again = ds.split(0.2, 0.2, seed=11)
    assert all(np.array_equal(a.rows, b.rows) for a, b in zip((train, val, test), again))
    assert not np.array_equal(ds.split(0.2, 0.2, seed=12)[1].rows, val.rows)
    # the event ids are the file's
    ids = {str(e) for e in want["events"]}
    assert set().union(*sides) == ids


def test_trainer_split_is_the_datasets_event_grouped_split(tmp_path):
    path, _ = write_layout("instance", tmp_path, labels=known_labels(n=120))
    ds = WaveformDataset(path, name="instance", preload=True)
    conf = TrainingConfig(device="cpu", validation_split=0.2, test_split=0.2, seed=5, save_dir=None,
                          show_progress=False, num_workers=0, batch_size=16)
    trainer = Trainer(Ross(base_channels=4, fc_units=16), ds, conf)
    parts = (trainer.train_dataset, trainer.val_dataset, trainer.test_dataset)
    expected = ds.split(0.2, 0.2, seed=5)
    for got, want in zip(parts, expected):
        assert np.array_equal(got.rows, want.rows)
    sides = [set(p.event_ids()) for p in parts]
    assert not sides[0] & sides[1] and not sides[0] & sides[2] and not sides[1] & sides[2]
    # an explicit test set (the data set's own test file) replaces the test split: nothing held out
    own_test = WaveformDataset(path, name="instance", preload=True)
    trainer = Trainer(Ross(base_channels=4, fc_units=16), ds, conf, test_dataset=own_test)
    assert trainer.test_dataset is own_test
    assert len(trainer.train_dataset) + len(trainer.val_dataset) == len(ds)


def test_augmented_twins_never_cross_a_split(tmp_path):
    """Augmentation happens on each training batch, after the split, in memory: no augmented
    copy of a trace is ever stored, so none can land in validation or test. Here: the three
    splits share the one preloaded tensor (views, no copies), every training batch indexes the
    training split only, and a training epoch with every augmentation on leaves the stored
    windows and labels bit for bit as they were read."""
    path, _ = write_layout("scsn", tmp_path, labels=known_labels(n=120))
    ds = WaveformDataset(path, name="scsn", preload=True, window_length=400, max_shift=10)
    stored, labels = ds._store.clone(), ds.labels.clone()
    aug = AugmentConfig(flip_prob=1.0, noise_prob=1.0, max_shift=10, scale_prob=1.0, bandpass_prob=1.0)
    conf = TrainingConfig(device="cpu", epochs=1, validation_split=0.2, test_split=0.2, seed=1, save_dir=None,
                          show_progress=False, num_workers=0, batch_size=32, early_stopping_patience=None)
    trainer = Trainer(Ross(base_channels=4, fc_units=16), ds, conf, augment=aug)
    parts = (trainer.train_dataset, trainer.val_dataset, trainer.test_dataset)
    assert sum(len(p) for p in parts) == len(ds)
    assert all(p._store is ds._store for p in parts)
    batches = torch.cat(trainer.epoch_batches(1))
    assert int(batches.max()) < len(trainer.train_dataset)
    trainer.train()
    assert torch.equal(ds._store, stored) and torch.equal(ds.labels, labels)
    assert torch.equal(trainer.val_dataset.labels, labels[torch.from_numpy(trainer.val_dataset.rows)])


# ----------------------------------------------------------------------------------------------
# training through Hydra: compose API in process (every layout), CLI subprocesses
# ----------------------------------------------------------------------------------------------
def small_run_overrides(model: str = "ross") -> list[str]:
    size = ["model.base_channels=4", "model.fc_units=16"] if model == "ross" else []
    out = ["debug=fast", f"model={model}", *size, "trainer.batch_size=16"]
    if (ROOT / "conf" / "report" / "default.yaml").is_file():
        out.append("report.enabled=false")
    return out


def compose_and_run(overrides: list[str], out: Path, monkeypatch) -> dict:
    from hydra import compose, initialize_config_dir

    from seispolarity.config import register_configs
    from seispolarity.runner import run

    register_configs()
    monkeypatch.setenv("SEISPOLARITY_ROOT", str(ROOT))
    out.mkdir(parents=True, exist_ok=True)
    monkeypatch.chdir(out)  # without @hydra.main the runner writes into the working directory
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[*overrides, f"paths.root_dir={ROOT}", f"paths.output_dir={out}",
                                                      f"paths.cache_dir={out}", "trainer.tensorboard_dir=null"])
    value = run(cfg)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["objective"]["value"] == pytest.approx(value, nan_ok=True)
    return metrics


@pytest.mark.parametrize("layout", LAYOUTS)
def test_one_epoch_on_every_layout_through_hydra(tmp_path, monkeypatch, layout):
    path, want = write_layout(layout, tmp_path / "data")
    metrics = compose_and_run([f"data={layout}", f"data.path={path}", *small_run_overrides()],
                              tmp_path / "run", monkeypatch)
    assert metrics["summary"]["epochs"] == 1 and len(metrics["history"]) == 1
    data = metrics["data"]
    assert data["unknown"] == "keep" and not data["dropped"]["train_file"]
    assert sum(s["traces"] for s in data["splits"].values()) == len(want["labels"])
    counts = np.bincount(want["labels"], minlength=3)
    total = {c: sum(s["classes"][c] for s in data["splits"].values()) for c in ("up", "down", "unknown")}
    assert [total["up"], total["down"], total["unknown"]] == counts.tolist()
    assert metrics["test"]["num_samples"] == data["splits"]["test"]["traces"]
    assert (tmp_path / "run" / "checkpoints" / "best.ckpt").is_file()


def test_filters_and_class_balance_as_config_fields(tmp_path, monkeypatch):
    labels = known_labels(n=60)
    snr = np.linspace(0.0, 59.0, 60)
    path = write_scsn(tmp_path / "scsn.hdf5", np.stack([onset_trace(600, 300, y) for y in labels]), labels,
                      snr=snr, evids=np.arange(60))
    metrics = compose_and_run(["data=scsn", f"data.path={path}", "data.filters={snr: [20, null]}",
                               "trainer.class_balance=sampler", *small_run_overrides()], tmp_path / "run", monkeypatch)
    data = metrics["data"]
    assert data["dropped"]["train_file"] == {"filter_snr": 20}
    assert sum(s["traces"] for s in data["splits"].values()) == 40


def run_train_py(args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, env=cli_env(), capture_output=True,
                          text=True, timeout=timeout)


def test_cli_scsn_own_test_file_two_class_model_and_flipped_map(tmp_path):
    """`python train.py data=scsn data.path=<train> data.test_path=<test>` with a two-class model
    (CFM: unknown dropped automatically, said in train.log and metrics.json) and the one override
    that flips SCSN's disputed codes: `data.label_map={0: 1, 1: 0, 2: 2}` (one shell word)."""
    train_labels, test_labels = known_labels(n=48, seed=0), known_labels(n=24, seed=1)
    train, _ = write_layout("scsn", tmp_path / "train", labels=train_labels)
    test = write_scsn(tmp_path / "test" / "scsn_p_2000_2017_6sec_0.5r_fm_test.hdf5",
                      np.stack([onset_trace(600, 300, y) for y in test_labels]), test_labels,
                      evids=1000 + np.arange(24))
    run_dir = tmp_path / "run"
    proc = run_train_py(["data=scsn", f"data.path={train}", f"data.test_path={test}",
                         "data.label_map={0: 1, 1: 0, 2: 2}", *small_run_overrides("cfm"),
                         f"hydra.run.dir={run_dir}", f"paths.cache_dir={tmp_path}"])
    assert proc.returncode == 0, explain(proc)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    data = metrics["data"]
    n_unknown_train, n_unknown_test = int((train_labels == 2).sum()), int((test_labels == 2).sum())
    assert data["unknown"] == "drop"
    assert data["label_map"] == {"0": 1, "1": 0, "2": 2}
    assert data["dropped"] == {"train_file": {"unknown_label": n_unknown_train},
                               "test_file": {"unknown_label": n_unknown_test}}
    # the map flipped up and down: the file's 0s are now counted as down
    splits = data["splits"]
    assert splits["test"]["classes"] == {"up": int((test_labels == 1).sum()), "down": int((test_labels == 0).sum()),
                                         "unknown": 0}
    seen_up = splits["train"]["classes"]["up"] + splits["val"]["classes"]["up"]
    assert seen_up == int((train_labels == 1).sum())
    # the test set is the test file; nothing of the training file is held out as a test split
    assert splits["train"]["traces"] + splits["val"]["traces"] == len(train_labels) - n_unknown_train
    assert metrics["test"]["num_samples"] == len(test_labels) - n_unknown_test
    log_text = (run_dir / "train.log").read_text()
    assert "two-class model: data.unknown=auto drops the traces labelled unknown" in log_text
    assert f"dropped {n_unknown_train} traces (unknown_label)" in log_text
    assert f"dropped {n_unknown_test} traces (unknown_label)" in log_text


@pytest.mark.slow
@pytest.mark.parametrize("layout", LAYOUTS)
def test_cli_one_epoch_on_every_layout(tmp_path, layout):
    path, want = write_layout(layout, tmp_path / "data")
    run_dir = tmp_path / "run"
    proc = run_train_py([f"data={layout}", f"data.path={path}", "debug=fast", "model=ross",
                         f"hydra.run.dir={run_dir}", f"paths.cache_dir={tmp_path}"])
    assert proc.returncode == 0, explain(proc)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["summary"]["epochs"] == 1
    assert sum(s["traces"] for s in metrics["data"]["splits"].values()) == len(want["labels"])
    assert (run_dir / "train.log").is_file() and (run_dir / "checkpoints" / "last.ckpt").is_file()


# ----------------------------------------------------------------------------------------------
# label maps and the sign check
# ----------------------------------------------------------------------------------------------
def test_label_map_precedence_file_over_user_over_preset(tmp_path):
    path, want = write_layout("flat", tmp_path)
    preset = WaveformDataset(path, name="flat")
    assert preset.labels.tolist() == want["labels"].tolist()
    user = WaveformDataset(path, name="flat", label_map={0: 1, 1: 0, 2: 2})
    assert user.labels.tolist() == [{0: 1, 1: 0, 2: 2}[int(y)] for y in want["labels"]]
    with h5py.File(path, "a") as f:
        f.attrs["label_map"] = json.dumps({"0": 0, "1": 1, "2": 2})
    stored = WaveformDataset(path, name="flat", label_map={0: 1, 1: 0, 2: 2})
    assert stored.labels.tolist() == want["labels"].tolist()  # the file's own map wins
    # SeisBench: the user's words replace the preset's
    folder, want = write_layout("instance", tmp_path / "sb")
    swapped = WaveformDataset(folder, name="instance", label_map={"positive": 1, "negative": 0, "undecidable": 2})
    assert swapped.labels.tolist() == [{0: 1, 1: 0, 2: 2}[int(y)] for y in want["labels"]]


def run_check_labels(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "seispolarity.data", "check-labels", *args], cwd=ROOT,
                          env=cli_env(), capture_output=True, text=True, timeout=120)


def test_check_labels_shows_scsn_codes_the_other_way_round_and_the_override_fixes_it(tmp_path, capsys):
    """A copy whose Y uses 0 for down (what the dispute says of the real files): the preset's map
    (0 up) is reported FLIPPED; with the override it looks right."""
    labels = known_labels(n=60)
    file_codes = np.array([{0: 1, 1: 0, 2: 2}[int(y)] for y in labels])  # 0 = down in the file
    X = np.stack([onset_trace(600, 300, y) for y in labels])
    X += np.random.default_rng(0).normal(0, 0.01, X.shape).astype(np.float32)
    path = write_scsn(tmp_path / "scsn.hdf5", X, file_codes)
    proc = run_check_labels([str(path), "name=scsn"])
    assert proc.returncode == 0, proc.stderr
    assert "map looks FLIPPED" in proc.stdout
    lines = {ln.split()[0]: ln.split() for ln in proc.stdout.splitlines() if ln.split() and ln.split()[0] in ("up", "down")}
    assert float(lines["up"][5]) < -0.9 and float(lines["down"][5]) > 0.9  # mean_sign column
    proc = run_check_labels([str(path), "name=scsn", "label_map=0:1,1:0,2:2"])
    assert proc.returncode == 0, proc.stderr
    assert "map looks right" in proc.stdout
    from seispolarity.data.__main__ import main  # the same entry point, in process

    assert main(["check-labels", str(path), "name=scsn", 'label_map={"0": 1, "1": 0, "2": 2}', "json=true"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["classes"]["up"]["mean_sign"] == 1.0 and report["classes"]["down"]["mean_sign"] == -1.0


def test_data_commands_name_an_option_they_do_not_take_before_reading(tmp_path):
    """check-labels and realism check their options as predict does: unknown key exit 2, bad type 1."""
    from seispolarity.data.__main__ import main

    path = write_scsn(tmp_path / "scsn.hdf5", np.zeros((6, 600), np.float32), np.zeros(6, int))
    p = run_check_labels([str(path), "name=scsn", "maxtraces=3"])
    assert p.returncode == 2 and p.stderr.startswith("error: unknown option maxtraces (name=scsn); accepted: "), p.stderr
    assert "max_traces" in p.stderr and "Traceback" not in p.stderr
    p = run_check_labels([str(path), "name=scsn", "max_traces=abc"])
    assert (p.returncode, p.stderr.strip()) == (1, "error: max_traces='abc': expected an integer"), p.stderr
    assert main(["realism", str(path), "name=scsn", "foo=1"]) == 2


# ----------------------------------------------------------------------------------------------
# bad input: one clear error naming file, row and value; or skipped and counted
# ----------------------------------------------------------------------------------------------
def bad_instance(tmp_path, defect: str) -> tuple[Path, str]:
    folder, _ = write_layout("instance", tmp_path)
    meta = folder / "metadata.csv"
    if defect == "missing_column":
        edit_csv(meta, drop="trace_polarity")
        return folder, "trace_polarity"
    if defect == "outside_bucket":
        edit_csv(meta, 7, "trace_name", "bucket0$99,:3,:2000")
        return folder, "bucket0$99"
    if defect == "unknown_word":
        edit_csv(meta, 5, "trace_polarity", "upward")
        return folder, "upward"
    if defect == "p_outside":
        edit_csv(meta, 9, "trace_P_arrival_sample", "99999")
        return folder, "99999"
    raise ValueError(defect)


BAD_INSTANCE = [  # defect, exception, row, reason counted with on_bad_row=skip
    ("missing_column", DataFormatError, None, None),
    ("outside_bucket", DataFormatError, 7, "trace_outside_bucket"),
    ("unknown_word", LabelError, 5, "unknown_label"),
    ("p_outside", DataFormatError, 9, "p_pick_outside_trace"),
]


@pytest.mark.parametrize("defect,error,row,reason", BAD_INSTANCE)
def test_bad_seisbench_rows_error_or_skip(tmp_path, caplog, defect, error, row, reason):
    folder, value = bad_instance(tmp_path, defect)
    with pytest.raises(error) as info:
        WaveformDataset(folder, name="instance")
    message = str(info.value)
    assert str(folder / "metadata.csv") in message and value in message
    if row is not None:
        assert f"row {row}:" in message
        with caplog.at_level(logging.WARNING, logger="seispolarity"):
            ds = WaveformDataset(folder, name="instance", on_bad_row="skip")
        assert ds.dropped == {reason: 1} and len(ds) == 47
        assert f"skipped 1 rows ({reason})" in caplog.text


def write_bad_flat(path: Path, labels, p) -> Path:
    with h5py.File(path, "w") as f:
        f["X"] = np.zeros((len(labels), 700), np.float32)
        f["Y"], f["p_pick"] = np.asarray(labels), np.asarray(p)
    return path


def test_bad_flat_and_scsn_rows_error_or_skip(tmp_path, caplog):
    path = write_bad_flat(tmp_path / "label.hdf5", [0, 1, 2, 7, 0, 1], [300] * 6)
    with pytest.raises(LabelError, match=r"label\.hdf5:Y: label '7' at row 3 is not in label_map"):
        WaveformDataset(path, name="flat")
    path = write_bad_flat(tmp_path / "pick.hdf5", [0, 1, 2, 0, 0, 1], [300, 300, 900, 300, 300, 300])
    with pytest.raises(DataFormatError, match=r"pick\.hdf5: P pick 900.0 at row 2 is outside the trace \(0\.\.699\)"):
        WaveformDataset(path, name="flat")
    path = write_bad_flat(tmp_path / "both.hdf5", [0, 1, 2, 7, 0, 1], [300, 300, 900, 300, 300, 300])
    with caplog.at_level(logging.WARNING, logger="seispolarity"):
        ds = WaveformDataset(path, name="flat", on_bad_row="skip")
    assert ds.dropped == {"p_pick_outside_trace": 1, "unknown_label": 1} and len(ds) == 4
    assert "first at row 3: '7'" in caplog.text and "first at row 2: 900.0" in caplog.text
    with h5py.File(tmp_path / "nolabels.hdf5", "w") as f:
        f["X"] = np.zeros((3, 600), np.float32)
    with pytest.raises(DataFormatError, match=r"nolabels\.hdf5: no label dataset 'Y' \(or 'fm'\)"):
        WaveformDataset(tmp_path / "nolabels.hdf5", name="scsn")


def test_bad_diting_rows_error_or_skip(tmp_path, caplog):
    folder, _ = write_layout("diting", tmp_path)
    csv_path = folder / "DiTing330km_total.csv"
    edit_csv(csv_path, 4, "p_pick", "5000")
    with pytest.raises(DataFormatError, match=r"DiTing330km_total\.csv: row 4: P pick '5000' .* outside the trace"):
        WaveformDataset(folder, name="diting")
    with caplog.at_level(logging.WARNING, logger="seispolarity"):
        ds = WaveformDataset(folder, name="diting", on_bad_row="skip")
    assert ds.dropped == {"p_pick_outside_trace": 1} and "skipped 1 rows (p_pick_outside_trace)" in caplog.text
    # DiTing's default map sends any other word to unknown ("*": 2); a map without "*" is strict
    edit_csv(csv_path, 4, "p_pick", "300")
    edit_csv(csv_path, 6, "p_motion", "X")
    with pytest.raises(LabelError, match=r"row 6: label 'X' in column 'p_motion'"):
        WaveformDataset(folder, name="diting", label_map={"U": 0, "D": 1, "": 2})
    edit_csv(csv_path, drop="p_motion")
    with pytest.raises(DataFormatError, match=r"no column 'p_motion'"):
        WaveformDataset(folder, name="diting")


def test_cli_bad_row_is_one_clear_error_and_skip_is_counted_in_train_log(tmp_path):
    folder, _ = bad_instance(tmp_path, "p_outside")
    run_dir = tmp_path / "run"
    proc = run_train_py(["data=instance", f"data.path={folder}", *small_run_overrides(),
                         f"hydra.run.dir={run_dir}", f"paths.cache_dir={tmp_path}"])
    assert proc.returncode == 1, explain(proc)
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    assert str(folder / "metadata.csv") in errors[0] and "row 9:" in errors[0] and "'99999'" in errors[0]
    assert "Traceback" not in proc.stderr
    skip_dir = tmp_path / "run_skip"
    proc = run_train_py(["data=instance", f"data.path={folder}", "data.on_bad_row=skip", *small_run_overrides(),
                         f"hydra.run.dir={skip_dir}", f"paths.cache_dir={tmp_path}"])
    assert proc.returncode == 0, explain(proc)
    log_text = (skip_dir / "train.log").read_text()
    assert "skipped 1 rows (p_pick_outside_trace), first at row 9" in log_text
    assert "skipped {'p_pick_outside_trace': 1}" in log_text
    metrics = json.loads((skip_dir / "metrics.json").read_text())
    assert sum(s["traces"] for s in metrics["data"]["splits"].values()) == 47


# ----------------------------------------------------------------------------------------------
# lazy windows: the memory benchmark (100,000 traces in the docs; a small run here)
# ----------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_preload_memory_benchmark_small(tmp_path):
    out = tmp_path / "result.json"
    proc = subprocess.run([sys.executable, "benchmarks/preload_memory.py", "--traces", "3000", "--length", "12000",
                           "--dir", str(tmp_path), "--json", str(out)], cwd=ROOT, env=cli_env(),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    for key in ("preload_cold", "preload_warm", "streaming"):
        assert result[key]["traces"] == 3000 and result[key]["windows_match_direct_reads"]
    assert result["preload_warm"]["store_bytes"] == 3000 * 1 * 400 * 4
    # the windows, not the 3 x 12,000-sample traces (432 MB), are what the preload holds
    assert result["preload_warm"]["peak_rss"] - result["preload_warm"]["baseline_rss"] < 150e6
    assert "peak RSS" in proc.stdout and not any(tmp_path.glob("seisbench_*"))  # cleaned up
