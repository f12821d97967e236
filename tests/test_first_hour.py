"""Issue 13, "a first hour without surprises": what a new user ran into, each checked with the real
command (``python train.py ...``, ``python -m seispolarity.predict ...``, a plain-API script, ``pip
wheel``) on tiny real files: resume takes the run's own config (rows 1, 7), a multirun with a
failing job still writes its summary (2), data options without their path (5, 6), predict's errors
(8), ``--cfg job --resolve`` (9), a reproducible plain-API run that logs each epoch (10), logs and
progress bars on one terminal (11, 12), ``--help`` (13), ``lr_scheduler_params`` (15), errors
printed once and no folder for a run that never started (16), a clean install (17)."""
from __future__ import annotations

import csv
import fcntl
import json
import os
import pty
import re
import select
import shutil
import struct
import subprocess
import sys
import termios
import textwrap
import time
from pathlib import Path

import h5py
import pytest
import torch
import yaml

from conftest import ROOT, cli_env, explain, run_cli, run_folder, start_cli, tiny_overrides

PY = sys.executable


def paths(log_dir: Path, cache_dir: Path) -> list[str]:
    return [f"paths.log_dir={log_dir}", f"paths.cache_dir={cache_dir}"]


def in_terminal(argv: list[str], cwd: Path = ROOT, timeout: float = 120) -> tuple[int, str]:
    """Run ``argv`` with stdout and stderr on a pseudo-terminal (what a user sees); return (exit
    status, everything written, raw: carriage returns and escape codes kept)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # 40 x 120 (tqdm reads it)
    env = cli_env(COLUMNS="120", LINES="40", TERM="xterm")
    proc = subprocess.Popen(argv, cwd=str(cwd), env=env, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(master)
    proc.wait(timeout=30)
    return proc.returncode, b"".join(chunks).decode("utf-8", "replace")


# ----------------------------------------------------------------------------------------------
# one small SGD run that later tests resume, evaluate and predict with
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sgd_run(tmp_path_factory, cache_dir):
    """`python train.py optimizer=sgd` on 160 synthetic traces, 1 epoch (tiny debug settings)."""
    logs = tmp_path_factory.mktemp("first_hour_logs")
    proc = run_cli([*tiny_overrides(), "optimizer=sgd", *paths(logs, cache_dir)])
    assert proc.returncode == 0, explain(proc)
    return run_folder(proc.stdout)


def copy_run(run: Path, where: Path) -> Path:
    target = where / "run"
    shutil.copytree(run, target)
    return target


# ----------------------------------------------------------------------------------------------
# rows 1 and 7: resume with the run's own config
# ----------------------------------------------------------------------------------------------
def test_resume_takes_the_runs_config_from_its_checkpoint(sgd_run, tmp_path, cache_dir):
    run = copy_run(sgd_run, tmp_path)
    last = run / "checkpoints" / "last.ckpt"
    composed = (run / ".hydra" / "config.yaml").read_bytes()

    # the README's resume form with no overrides: 160 traces, SGD, 1 epoch -- not the defaults
    # (16,000 traces, Adam, 10 epochs); the run is finished: nothing to train
    p = run_cli([f"ckpt_path={last}", f"paths.cache_dir={cache_dir}"])
    assert p.returncode == 0, explain(p)
    assert f"run folder: {run}" in p.stdout
    assert "run already finished at epoch 1; nothing to train" in p.stdout
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["data"]["num_traces"] == 160 and cfg["trainer"]["epochs"] == 1
    assert cfg["optimizer"]["_target_"] == "torch.optim.SGD"  # row 7: no optimizer=sgd needed
    assert (run / ".hydra" / "config.yaml").read_bytes() == composed, "the run's own composition was overwritten"

    # more epochs and another device: applied and logged; config, checkpoint and metrics agree
    p = run_cli([f"ckpt_path={last}", "trainer.epochs=2", "trainer.device=cpu", f"paths.cache_dir={cache_dir}"])
    assert p.returncode == 0, explain(p)
    assert "changed by this command: trainer.device: auto -> cpu, trainer.epochs: 1 -> 2" in p.stdout
    assert "extending a finished run from epoch 1 to 2" in p.stdout
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    import torch

    state = torch.load(last, weights_only=True)
    assert cfg["trainer"]["epochs"] == state["run_config"]["trainer"]["epochs"] == 2
    assert cfg["trainer"]["device"] == "cpu" and cfg["data"]["num_traces"] == 160
    assert metrics["summary"]["epochs"] == len(metrics["history"]) == state["epoch"] == 2
    assert len(list((run / ".hydra").glob("resumed_*"))) == 2  # each resume's own Hydra files

    # overrides that would make it another run: listed and refused in one line, nothing touched
    before = {p.relative_to(run): p.stat().st_mtime_ns for p in run.rglob("*")}
    p = run_cli([f"ckpt_path={last}", "optimizer=adam", "model.base_channels=8", "data.num_traces=320",
                 f"paths.cache_dir={cache_dir}"])
    assert p.returncode == 2, explain(p)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {last} resumes its own run"), p.stderr
    for item in ("optimizer=Adam (the run: SGD)", "model.base_channels=8 (the run: 4)",
                 "data.num_traces=320 (the run: 160)"):
        assert item in lines[0], lines[0]
    assert "Traceback" not in p.stdout + p.stderr
    assert {p.relative_to(run): p.stat().st_mtime_ns for p in run.rglob("*")} == before, "a refused resume wrote files"


def test_the_api_names_the_optimizer_a_checkpoint_was_trained_with(sgd_run, synthetic_file, tmp_path):
    """Row 7 in the Python API: resuming an SGD checkpoint with Adam is one clear error."""
    script = textwrap.dedent(f"""
        from seispolarity import WaveformDataset
        from seispolarity.models import PPNet
        from seispolarity.training import CheckpointError, Trainer, TrainingConfig
        dataset = WaveformDataset({str(synthetic_file)!r}, name="synthetic", preload=True, max_traces=64)
        config = TrainingConfig(optimizer="adam", device="cpu", num_workers=0, save_dir={str(tmp_path)!r},
                                resume_from={str(sgd_run / "checkpoints" / "last.ckpt")!r})
        try:
            Trainer(PPNet(base_channels=4), dataset, config)
        except CheckpointError as exc:
            print(exc)
    """)
    p = subprocess.run([PY, "-c", script], cwd=ROOT, env=cli_env(), capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, explain(p)
    assert "the checkpoint was trained with SGD, this run's optimizer is Adam" in p.stdout, p.stdout


# ----------------------------------------------------------------------------------------------
# row 2: a multirun with a failing job
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("launcher", ["basic", "joblib"])
def test_a_multirun_with_a_failing_job_still_writes_its_summary(launcher, tmp_path, cache_dir):
    """The failure is read from the sweep folder, so jobs run in other processes (joblib) count too."""
    p = run_cli(["-m", f"hydra/launcher={launcher}", "trainer.epochs=-1,1", *tiny_overrides(),
                 *paths(tmp_path, cache_dir)], timeout=240)
    assert p.returncode == 1, explain(p)
    assert "Traceback" not in p.stdout + p.stderr and "HYDRA_FULL_ERROR" not in p.stderr, explain(p)
    assert "Error executing job" not in p.stderr, explain(p)  # Hydra's line naming one job's overrides
    (sweep,) = list((tmp_path / "debug" / "multiruns").iterdir())
    with open(sweep / "summary.csv", newline="") as fh:
        rows = {r["job"]: r for r in csv.DictReader(fh)}
    error = "trainer.epochs=-1: expected a whole number >= 1"
    assert set(rows) == {"0", "1"}
    assert rows["0"]["status"] == "failed" and rows["0"]["error"] == error
    assert rows["1"]["status"] == "ok" and rows["1"]["error"] == "" and float(rows["1"]["objective"]) >= 0
    md = (sweep / "summary.md").read_text()
    assert "| failed |" in md and error in md and "| ok |" in md
    log = (sweep / "0" / "train.log").read_text()
    assert "Traceback" in log and error in log
    assert (sweep / "0" / "FAILED").read_text().startswith(error)
    # on the terminal: the job's line while the sweep runs, the tally at the end
    assert f"job 0 failed: {error} (traceback: {sweep / '0' / 'train.log'})" in p.stderr
    assert p.stderr.strip().splitlines()[-1] == f"error: 1 of 2 jobs failed; every job's status and error: " \
                                                f"{sweep / 'summary.md'}"


# ----------------------------------------------------------------------------------------------
# rows 5, 6 and 16: mistakes in the command: one line, no run folder
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args, code, expected", [
    (["data=scsn"], 2, "error: data=scsn needs data.path=<file>: the SCSN HDF5 file of Ross et al. 2018"),
    (["data=instance"], 2, "error: data=instance needs data.path=<folder>: the INSTANCE folder (SeisBench format"),
    (["data.path=/x.hdf5"], 2, "error: data=synthetic generates its traces and reads no file (data.path=/x.hdf5); "
                               "to train on a file choose its layout: data=flat data.path=<file.hdf5>"),
    (["+data.path=/x.hdf5"], 2, "error: data=synthetic generates its traces and reads no file"),  # Hydra's old hint
    (["trainer.epochs=-1"], 1, "error: trainer.epochs=-1: expected a whole number >= 1"),
    (["data=scsn", "data.path=missing.hdf5"], 2, "error: data.path=missing.hdf5: no such file or directory"),
    (["data=instance", "data.path=/no/such/folder"], 2, "error: data.path=/no/such/folder: no such file or directory"),
    (["data=scsn", f"data.path={ROOT / 'README.md'}", "data.test_path=gone.hdf5"], 2,
     "error: data.test_path=gone.hdf5: no such file or directory"),
    (["eval_sets={far: {name: scsn, path: gone.hdf5}}"], 2, "error: eval_sets.far.path=gone.hdf5: no such file"),
    pytest.param(["trainer.device=cuda"], 1, "error: device='cuda' but CUDA is not available on this machine",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")),
])
def test_a_mistake_in_the_command_is_one_line_and_leaves_no_folder(args, code, expected, tmp_path):
    logs, cache = tmp_path / "logs", tmp_path / "cache"
    p = run_cli([*args, *paths(logs, cache)])
    assert p.returncode == code, explain(p)
    assert p.stderr.strip().splitlines() == [p.stderr.strip()], explain(p)  # one line
    assert p.stderr.startswith(expected), explain(p)
    message = p.stderr.strip()[len("error: "):]
    assert (p.stdout + p.stderr).count(message) == 1, explain(p)  # printed once (not logged as well)
    assert not logs.exists() and not cache.exists(), "a run that never started left files"


# What the run itself would refuse once its folder exists (or, worse, at its very end): keys added
# with `+` that the option does not take, values of the data, augmentation, report, scheduler and
# launch, the objective. Started together: each is a few seconds of start-up.
REFUSED_BEFORE_THE_FOLDER = {
    "+trainer.epoch=3": (2, "error: trainer.epoch: not a key of trainer=default (did you mean trainer.epochs? its keys:"),
    "+model.foo=3": (2, "error: model.foo: not a key of model=ppnet (its keys: attention_heads,"),
    "+data.foo=3": (2, "error: data.foo: not a key of data=synthetic (its keys: cache_dir,"),
    "+report.baseline_params.kk=3": (2, "error: report.baseline_params.kk: not a key of report.baseline_params "
                                        "(did you mean report.baseline_params.k?"),
    "objective=val_acc": (2, "error: objective=val_acc: not a number the run reports (did you mean val_accuracy?"),
    "trainer=ddp": (2, "error: distributed training asked for (trainer=ddp) but WORLD_SIZE is not set"),
    "data.max_traces=-1": (1, "error: data.max_traces=-1; expected null (all) or a whole number >= 1"),
    "data.num_traces=0": (1, "error: data.num_traces=0: expected a whole number >= 1"),
    "data.unknown=maybe": (1, "error: data.unknown='maybe'; expected one of 'auto', 'keep', 'drop'"),
    "augment.flip_prob=2": (1, "error: augment.flip_prob=2.0; expected a probability in [0, 1]"),
    "report.snr_bins=[10,0]": (1, "error: report.snr_bins=[10.0, 0.0]: bin edges must increase strictly"),
    "lr=-1": (1, "error: lr=-1.0: expected a number > 0"),
    "scheduler=step scheduler.step_size=0": (1, "error: scheduler.step_size=0: expected a whole number >= 1"),
    "scheduler=reduce_on_plateau scheduler.factor=2": (1, "error: scheduler.factor=2.0: expected a number in (0, 1)"),
    "paths.cache_dir=/proc/nope": (2, "error: data.cache_dir=/proc/nope (paths.cache_dir): /proc is not writable"),
    "model.base_channels=-3": (1, "error: model=PPNet cannot be built with model.num_classes=3, model.base_channels=-3: "),
}


def test_what_the_run_would_refuse_is_refused_before_its_folder(tmp_path):
    logs = tmp_path / "logs"
    cache = [f"paths.cache_dir={tmp_path / 'cache'}"]
    procs = {args: start_cli([*args.split(), f"paths.log_dir={logs}", *(cache if "cache_dir" not in args else [])])
             for args in REFUSED_BEFORE_THE_FOLDER}
    for args, p in procs.items():
        out, err = p.communicate(timeout=180)
        code, expected = REFUSED_BEFORE_THE_FOLDER[args]
        assert (p.returncode, err.strip().splitlines()[:1]) == (code, [err.strip()]), (args, out, err[-3000:])
        assert err.startswith(expected), (args, err)
    assert not logs.exists() and not (tmp_path / "cache").exists(), "a refused command left files"


def test_a_run_that_fails_after_it_started_is_marked_failed(tmp_path):
    (tmp_path / "broken.hdf5").write_text("not an HDF5 file\n")  # there, so only reading it fails
    p = run_cli(["data=flat", "data.path=broken.hdf5", "debug=fast", f"paths.log_dir={tmp_path}"], cwd=tmp_path)
    assert p.returncode == 1, explain(p)
    (line,) = p.stderr.strip().splitlines()
    assert line.startswith("error: ") and "broken.hdf5: cannot open as HDF5" in line
    assert (p.stdout + p.stderr).count(line[len("error: "):]) == 1, explain(p)
    (run,) = list((tmp_path / "debug" / "runs").iterdir())
    assert (run / "FAILED").read_text().splitlines()[0] == line[len("error: "):]
    assert "Traceback" in (run / "train.log").read_text() and not (run / "metrics.json").exists()


# ----------------------------------------------------------------------------------------------
# row 8: python -m seispolarity.predict with bad input
# ----------------------------------------------------------------------------------------------
def predict(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", "seispolarity.predict", *args], cwd=str(cwd), env=cli_env(),
                          capture_output=True, text=True, timeout=120)


def test_predict_reports_bad_input_in_one_line(sgd_run, synthetic_file, tmp_path):
    best = sgd_run / "checkpoints" / "best.ckpt"
    corrupt_ckpt = tmp_path / "corrupt.ckpt"
    corrupt_ckpt.write_bytes(b"not a checkpoint at all" * 10)
    corrupt_data = tmp_path / "corrupt.hdf5"
    corrupt_data.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    cases = {
        "missing checkpoint": ([f"ckpt={tmp_path / 'nope.ckpt'}", f"data={synthetic_file}"],
                               f"error: {tmp_path / 'nope.ckpt'}: no such checkpoint file"),
        "corrupt checkpoint": ([f"ckpt={corrupt_ckpt}", f"data={synthetic_file}"],
                               f"error: {corrupt_ckpt}: not a readable SeisPolarity checkpoint"),
        "corrupt data": ([f"ckpt={best}", f"data={corrupt_data}", f"out={tmp_path / 'x.csv'}"],
                         "error: "),
    }
    if not torch.cuda.is_available():  # the device named, not blamed on a file
        cases["no GPU"] = ([f"ckpt={best}", f"data={synthetic_file}", "device=cuda"],
                           "error: device='cuda' but CUDA is not available on this machine")
    for name, (args, start) in cases.items():
        p = predict(*args)
        assert p.returncode == 1, (name, explain(p))
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(start), (name, p.stderr)
        assert "Traceback" not in p.stderr, name
        if name == "corrupt data":
            assert str(corrupt_data) in lines[0], lines[0]
    # no arguments: the usage, exit 2; --help: the page, exit 0
    p = predict()
    assert p.returncode == 2 and p.stderr.startswith("usage: python -m seispolarity.predict ckpt=PATH data=PATH")
    p = predict("--help")
    assert p.returncode == 0 and "ckpt=PATH" in p.stdout


# ----------------------------------------------------------------------------------------------
# rows 9, 13: --cfg job --resolve, --help
# ----------------------------------------------------------------------------------------------
def test_cfg_job_resolve_prints_the_resolved_config(tmp_path):
    p = run_cli(["--cfg", "job", "--resolve", f"paths.log_dir={tmp_path}"])
    assert p.returncode == 0, explain(p)
    cfg = yaml.safe_load(p.stdout)
    out = cfg["paths"]["output_dir"]
    assert out.startswith(str(tmp_path / "train" / "runs")) and "${" not in p.stdout
    assert cfg["trainer"]["save_dir"] == f"{out}/checkpoints"
    assert not any(tmp_path.iterdir()), "--cfg made a run folder"


def test_help_is_the_projects_own_page():
    p = run_cli(["--help"])
    assert p.returncode == 0, explain(p)
    text = p.stdout
    assert "schema/" not in text and "powered by Hydra" not in text
    conf = ROOT / "conf"
    for group in sorted(d.name for d in conf.iterdir() if d.is_dir() and d.name != "hydra"):
        line = next((ln for ln in text.splitlines() if ln.strip().startswith(group + " ")), None)
        assert line is not None, f"--help does not list the group {group}"
        for option in sorted(f.stem for f in (conf / group).glob("*.yaml")):
            assert re.search(rf"\b{option}\b", line), f"--help does not list {group}={option}"
    for option in ("scsn", "flat", "instance", "pnw", "txed", "seisbench", "diting"):
        assert re.search(rf"data={option}\b.*\n?.*data\.path=", text), f"--help: what data={option} needs"
    assert "needs data.path=" in text
    examples = [ln for ln in text.split("Examples:")[1].splitlines() if ln.strip().startswith("python train.py")]
    assert len(examples) >= 3, text
    from dataclasses import fields

    from seispolarity.config import RunSchema

    listed = next(ln for ln in text.splitlines() if ln.startswith("Top-level keys:"))
    for f in fields(RunSchema):
        if (conf / f.name).is_dir():
            continue  # a config group, listed above
        assert re.search(rf"\b{f.name}\b", listed), f"--help's top-level keys leave out {f.name}"


# ----------------------------------------------------------------------------------------------
# rows 10, 11, 12: the plain API, logs and progress bars on a terminal
# ----------------------------------------------------------------------------------------------
README_RUN = """
import json, sys
from seispolarity import WaveformDataset
from seispolarity.models import PPNet
from seispolarity.training import Trainer, TrainingConfig, seed_everything

seed_everything(42)
dataset = WaveformDataset(path=sys.argv[1], name="synthetic", preload=True, max_traces=400)
model = PPNet(num_fm_classes=3, base_channels=4)
config = TrainingConfig(batch_size=64, epochs=2, learning_rate=1e-3, device="cpu", num_workers=0,
                        save_dir=sys.argv[2], max_steps_per_epoch=3, log_every=1)
history = Trainer(model=model, dataset=dataset, config=config).train()
print(json.dumps([[h["train_loss"], h["val_loss"]] for h in history["history"]]))
"""


def test_the_readme_api_run_is_reproducible_and_logs_each_epoch(synthetic_file, tmp_path):
    runs = [subprocess.run([PY, "-c", README_RUN, str(synthetic_file), str(tmp_path / f"ckpt{i}")], cwd=ROOT,
                           env=cli_env(), capture_output=True, text=True, timeout=180) for i in range(2)]
    for p in runs:
        assert p.returncode == 0, explain(p)
    assert json.loads(runs[0].stdout) == json.loads(runs[1].stdout), "two runs of the same script differ"
    err = runs[0].stderr
    for epoch in (1, 2):  # one line per epoch, by default, with no logging set up
        lines = [ln for ln in err.splitlines() if ln.startswith(f"epoch {epoch}/2: ")]
        assert len(lines) == 1, err
        assert re.fullmatch(r"epoch \d/2: train loss [\d.]+ acc [\d.]+, val loss [\d.]+ acc [\d.]+ \(\d+ samples/s\)",
                            lines[0]), lines[0]
    assert " step " not in err, "per-step lines on the default console"
    readme = (ROOT / "README.md").read_text()
    assert "seed_everything(42)" in readme.split("## Python API")[1].split("```", 2)[1]


STAMP = re.compile(r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}\]\[")


def test_logs_and_progress_bars_share_the_terminal(tmp_path, cache_dir):
    """Rows 11 and 12: training, evaluating, predicting and generating the synthetic set show a bar,
    and no log line starts on a bar's line."""
    logs = tmp_path / "logs"
    fresh_cache = tmp_path / "cache"  # the synthetic set is generated here: its bar shows
    args = [PY, str(ROOT / "train.py"), *tiny_overrides(), "data.num_traces=400", "data.max_traces=400",
            "trainer.show_progress=true", "trainer.log_every=1", f"paths.log_dir={logs}",
            f"paths.cache_dir={fresh_cache}"]
    code, out = in_terminal(args)
    assert code == 0, out[-3000:]
    assert "generating synthetic traces" in out and "epoch 1/1" in out and "%|" in out, out[-3000:]
    glued = [m.start() for m in STAMP.finditer(out) if m.start() and out[m.start() - 1] not in "\r\n"]
    assert not glued, "log lines glued to a bar: " + " | ".join(repr(out[max(0, i - 60):i + 40]) for i in glued[:3])
    run = run_folder(out.replace("\r", ""))
    best = run / "checkpoints" / "best.ckpt"

    # evaluation (train=false, small batches) and prediction show theirs too
    code, out = in_terminal([PY, str(ROOT / "train.py"), *tiny_overrides(), "data.num_traces=400",
                             "data.max_traces=400", "train=false", f"ckpt_path={best}", "trainer.show_progress=true",
                             "trainer.batch_size=8", f"paths.log_dir={logs}", f"paths.cache_dir={fresh_cache}"])
    assert code == 0 and "evaluating" in out, out[-3000:]
    data = next(fresh_cache.glob("*.hdf5"))
    code, out = in_terminal([PY, "-m", "seispolarity.predict", f"ckpt={best}", f"data={data}", "name=synthetic",
                             f"out={tmp_path / 'picks.csv'}", "batch_size=32", "device=cpu"])
    assert code == 0 and "predicting" in out, out[-3000:]
    with h5py.File(data, "r") as f:
        assert len((tmp_path / "picks.csv").read_text().splitlines()) == len(f["Y"]) + 1


# ----------------------------------------------------------------------------------------------
# rows 15, 17
# ----------------------------------------------------------------------------------------------
def test_lr_scheduler_params_default_is_none():
    p = subprocess.run([PY, "-c", "from seispolarity.training import TrainingConfig as T; c = T(); "
                                  "print(repr(c.lr_scheduler_params), T(lr_scheduler_params={'step_size': 2})"
                                  ".lr_scheduler_params)"],
                       cwd=ROOT, env=cli_env(), capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, explain(p)
    assert p.stdout.strip() == "None {'step_size': 2}"


def test_the_package_builds_without_deprecation_warnings(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "seispolarity", src / "seispolarity", ignore=shutil.ignore_patterns("__pycache__"))
    p = subprocess.run([PY, "-m", "pip", "wheel", "-v", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"),
                        str(src)], cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, explain(p)
    output = p.stdout + p.stderr
    assert "Deprecat" not in output and "deprecat" not in output, \
        [ln for ln in output.splitlines() if "eprecat" in ln][:5]
    (wheel,) = list((tmp_path / "dist").glob("seispolarity-*.whl"))
    import zipfile

    with zipfile.ZipFile(wheel) as z:
        meta = z.read(next(n for n in z.namelist() if n.endswith("METADATA"))).decode()
    assert "License-Expression: MIT" in meta
