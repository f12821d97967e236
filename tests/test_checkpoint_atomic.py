"""Atomic checkpoints (issue 8, part 3).

A writer process SIGKILLed at random moments, over and over, never leaves a truncated
``last.ckpt`` / ``best.ckpt``: each time the file loads completely and is either the version being
written or the one before. Temporary files of killed writers never look like checkpoints and the
next save clears them. Corrupt and foreign files (truncated, random bytes, pickles that would run
code or name foreign classes, valid torch files of the wrong shape) fail with one CheckpointError
line naming the file; nothing in them is executed (``weights_only=True``).
"""
from __future__ import annotations

import multiprocessing
import os
import pickle
import random
import signal
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from _robustness import cli_overrides, last_line, run_cli, tiny_model, write_flat
from seispolarity.data import WaveformDataset
from seispolarity.training import CheckpointError, Trainer, TrainingConfig, load_checkpoint, save_checkpoint

SIZE = 1 << 21  # float32 elements per tensor: 8 MB each, so a write takes long enough to be hit


def _writer(folder: str, first_version: int) -> None:
    """Child process: save versions first_version, +1, ... to last.ckpt and best.ckpt forever,
    noting each completed save in progress.txt."""
    torch.set_num_threads(1)
    version = first_version
    while True:
        for name in ("last.ckpt", "best.ckpt"):
            state = {"model_state_dict": {"w": torch.full((SIZE,), float(version)),
                                          "b": torch.full((7,), float(version))},
                     "version": version, "epoch": version, "history": [{"epoch": e} for e in range(version % 50)]}
            with open(os.path.join(folder, "progress.txt"), "a") as fh:
                fh.write(f"start {name} {version}\n")
            save_checkpoint(state, os.path.join(folder, name))
            with open(os.path.join(folder, "progress.txt"), "a") as fh:
                fh.write(f"done {name} {version}\n")
        version += 1


def _progress(folder: Path) -> tuple[dict[str, int], dict[str, int]]:
    """The last version of each file whose save completed, and the last one started."""
    done: dict[str, int] = {}
    started: dict[str, int] = {}
    progress = folder / "progress.txt"
    if progress.is_file():
        for line in progress.read_text().splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[2].isdigit():  # the last line may be cut by the kill
                (done if parts[0] == "done" else started)[parts[1]] = int(parts[2])
    return done, started


def test_sigkill_while_writing_never_leaves_a_truncated_checkpoint(tmp_path):
    torch.set_num_threads(1)
    ctx = multiprocessing.get_context("fork")  # a real process, without re-importing torch
    rng = random.Random(8)
    hit_mid_write, version = 0, 1
    for round_ in range(14):
        child = ctx.Process(target=_writer, args=(str(tmp_path), version), daemon=True)
        child.start()
        time.sleep(rng.uniform(0.05, 0.4))
        os.kill(child.pid, signal.SIGKILL)
        child.join(10)
        assert child.exitcode == -signal.SIGKILL
        temporaries = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
        hit_mid_write += any(f".{child.pid}." in name for name in temporaries)
        done, started = _progress(tmp_path)
        for name in ("last.ckpt", "best.ckpt"):
            path = tmp_path / name
            if name not in done and not path.exists():
                continue  # killed before its first save completed: no file, which is fine
            state = load_checkpoint(path)  # never truncated: always loads
            v = state["version"]
            # not older than the last save that returned, not newer than the last one begun (a save
            # may complete just before the kill cuts its progress note)
            assert done.get(name, 0) <= v <= started[name], (round_, name, v, done, started)
            assert torch.equal(state["model_state_dict"]["w"], torch.full((SIZE,), float(v)))
            assert torch.equal(state["model_state_dict"]["b"], torch.full((7,), float(v)))
            assert state["history"] == [{"epoch": e} for e in range(v % 50)]
        version = max(started.values(), default=0) + 1
        # temporary files never pass for checkpoints
        assert sorted(p.name for p in tmp_path.glob("*.ckpt")) == sorted(
            n for n in ("last.ckpt", "best.ckpt") if (tmp_path / n).exists())
    assert hit_mid_write >= 3, f"only {hit_mid_write} kills landed inside a write; the test proved little"
    assert version > 3, "the writer made too little progress to test anything"

    # the next save by a live process removes what the killed writers left behind
    save_checkpoint({"model_state_dict": {}, "version": -1}, tmp_path / "last.ckpt")
    save_checkpoint({"model_state_dict": {}, "version": -1}, tmp_path / "best.ckpt")
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


class Foreign:
    """A class that is not ours: a checkpoint naming it must not load."""

    def __init__(self) -> None:
        self.x = 1


class RunsCode:
    """Unpickling this would run a shell command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _good(path: Path) -> Path:
    save_checkpoint({"model_state_dict": {"w": torch.arange(5000.0)}, "epoch": 1}, path)
    return path


def _corrupt_cases(tmp_path: Path) -> dict[str, Path]:
    """Every kind of bad checkpoint file, generated."""
    good = _good(tmp_path / "good.ckpt")
    data = good.read_bytes()
    cases = {}
    for name, keep in (("empty", 0), ("10 bytes", 10), ("half", len(data) // 2), ("all but one byte", len(data) - 1)):
        cases[f"truncated to {name}"] = tmp_path / f"cut-{keep}.ckpt"
        cases[f"truncated to {name}"].write_bytes(data[:keep])
    cases["random bytes"] = tmp_path / "random.ckpt"
    cases["random bytes"].write_bytes(np.random.default_rng(0).bytes(4096))
    flipped = bytearray(data)
    for i in range(len(flipped) // 3, len(flipped) // 3 + 64):
        flipped[i] ^= 0xFF
    cases["bytes flipped inside"] = tmp_path / "flipped.ckpt"
    cases["bytes flipped inside"].write_bytes(bytes(flipped))
    cases["legacy pickle running a shell command"] = tmp_path / "code.ckpt"
    with open(cases["legacy pickle running a shell command"], "wb") as fh:
        pickle.dump({"model_state_dict": RunsCode(tmp_path / "PWNED")}, fh)
    cases["torch file with a function"] = tmp_path / "function.ckpt"
    torch.save({"model_state_dict": {}, "hook": os.system}, cases["torch file with a function"])
    cases["torch file with a foreign class"] = tmp_path / "foreign.ckpt"
    torch.save({"model_state_dict": {}, "extra": Foreign()}, cases["torch file with a foreign class"])
    cases["a bare tensor"] = tmp_path / "tensor.ckpt"
    torch.save(torch.ones(3), cases["a bare tensor"])
    cases["a dict without model_state_dict"] = tmp_path / "nomodel.ckpt"
    torch.save({"state_dict": {"w": torch.ones(2)}}, cases["a dict without model_state_dict"])
    cases["a zip that is not torch"] = tmp_path / "zip.ckpt"
    with zipfile.ZipFile(cases["a zip that is not torch"], "w") as z:
        z.writestr("hello.txt", "hi")
    cases["an HDF5 file"] = write_flat(tmp_path / "data.ckpt", n=4)
    cases["a text file"] = tmp_path / "notes.ckpt"
    cases["a text file"].write_text("epochs: 10  # a config, not weights: é\n")
    cases["a NumPy file"] = tmp_path / "array.ckpt"
    with open(cases["a NumPy file"], "wb") as fh:
        np.save(fh, np.zeros(3))
    cases["a folder"] = tmp_path / "folder.ckpt"
    cases["a folder"].mkdir()
    cases["missing"] = tmp_path / "missing.ckpt"
    return cases


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_corrupt_and_foreign_checkpoints_fail_clearly(tmp_path):
    cases = _corrupt_cases(tmp_path)
    for what, path in cases.items():
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(path)
        message = str(info.value)
        assert message.startswith(f"{path}: "), (what, message)
        assert "\n" not in message and len(message) < 400, (what, message)
    assert not (tmp_path / "PWNED").exists(), "loading a checkpoint ran code from it"
    assert "Unsupported global" in str(pytest.raises(CheckpointError, load_checkpoint,
                                                     cases["torch file with a foreign class"]).value)
    assert load_checkpoint(tmp_path / "good.ckpt")["epoch"] == 1


#: What the message says a file that is not a checkpoint is (its first bytes tell; torch.load's own
#: message was e.g. "Unsupported operand 72" for an HDF5 file, "101" for a text file).
LOOKS_LIKE = {
    "truncated to empty": "(a torch .ckpt/.pt file was expected; this looks like an empty file)",
    "random bytes": "(a torch .ckpt/.pt file was expected; this looks like unknown binary data (first bytes ",
    "legacy pickle running a shell command": "this looks like a plain Python pickle, which is not loaded",
    "torch file with a function": "(it holds code or classes, which are not loaded: Trying to load unsupported "
                                  "GLOBAL posix.system",
    "a zip that is not torch": "(a torch .ckpt/.pt file was expected; this looks like a zip archive torch.save did "
                               "not write)",
    "an HDF5 file": "(a torch .ckpt/.pt file was expected; this looks like an HDF5 file)",
    "a text file": "(a torch .ckpt/.pt file was expected; this looks like a text file)",
    "a NumPy file": "(a torch .ckpt/.pt file was expected; this looks like a NumPy .npy file)",
    "a folder": "a folder, not a checkpoint file, and it holds no checkpoints/last.ckpt or best.ckpt",
}


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_files_that_are_not_checkpoints_say_what_they_are(tmp_path):
    cases = _corrupt_cases(tmp_path)
    for what, says in LOOKS_LIKE.items():
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(cases[what])
        assert says in str(info.value), (what, str(info.value))


def test_a_run_folder_given_as_a_checkpoint_names_its_checkpoints(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    last, best = _good(run / "checkpoints" / "last.ckpt"), _good(run / "checkpoints" / "best.ckpt")
    expected = (f"{run}: a folder, not a checkpoint file; give the file: {last} (to resume the run) or {best} "
                f"(to evaluate or fine-tune it)")
    assert str(pytest.raises(CheckpointError, load_checkpoint, run).value) == expected
    assert str(pytest.raises(CheckpointError, load_checkpoint, run / "checkpoints").value) == (
        expected.replace(f"{run}:", f"{run / 'checkpoints'}:", 1))
    # through train.py: a resume, an evaluation and a fine-tuning run given a folder or a text file
    data, notes = write_flat(tmp_path / "train.hdf5", n=32), tmp_path / "notes.txt"
    notes.write_text("not weights\n")
    text = f"error: {notes}: not a readable SeisPolarity checkpoint (a torch .ckpt/.pt file was expected; this " \
           f"looks like a text file)"
    for extra, line in (([f"ckpt_path={run}"], f"error: {expected}"),
                        (["train=false", f"ckpt_path={run}"], f"error: {expected}"),
                        ([f"init_from={notes}"], text)):
        p = run_cli(cli_overrides(data, tmp_path / "out", **{"trainer.epochs": 1}) + extra)
        assert p.returncode == 1 and last_line(p.stderr) == line, (extra, p.stderr[-2000:])
        assert "Traceback" not in p.stderr


def test_save_refuses_objects_that_would_not_load(tmp_path):
    # OmegaConf containers (e.g. a model argument from Hydra) are stored as plain lists / dicts
    path = save_checkpoint({"model_state_dict": {}, "model": {"kernel_sizes": OmegaConf.create([21, 15]),
                                                              "cfg": OmegaConf.create({"a": {"b": 1}})},
                            "np": np.float32(0.5), "arr": np.arange(3)}, tmp_path / "ok.ckpt")
    state = load_checkpoint(path)
    assert state["model"] == {"kernel_sizes": [21, 15], "cfg": {"a": {"b": 1}}} and state["np"] == 0.5
    assert torch.equal(state["arr"], torch.arange(3))
    # anything else is refused before a byte is written
    with pytest.raises(CheckpointError, match=r"checkpoint value state\.extra\.obj is a .*Foreign"):
        save_checkpoint({"model_state_dict": {}, "extra": {"obj": Foreign()}}, tmp_path / "bad.ckpt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.ckpt"]


def test_resume_from_a_corrupt_checkpoint_is_one_clear_line(tmp_path):
    torch.set_num_threads(1)
    data = write_flat(tmp_path / "train.hdf5", n=64)
    bad = tmp_path / "run" / "checkpoints" / "last.ckpt"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(_good(tmp_path / "g.ckpt").read_bytes()[:300])
    dataset = WaveformDataset(data, name="flat", preload=True, window_length=400)
    with pytest.raises(CheckpointError, match=f"^{bad}: damaged checkpoint \\(incomplete zip archive"):
        Trainer(tiny_model(), dataset, TrainingConfig(device="cpu", num_workers=0, resume_from=str(bad),
                                                      save_dir=str(tmp_path / "out")))
    before = bad.read_bytes()
    p = run_cli(cli_overrides(data, tmp_path / "run", **{"trainer.epochs": 1}) + [f"ckpt_path={bad}"])
    assert p.returncode == 1, p.stderr[-2000:]
    assert last_line(p.stderr).startswith(f"error: {bad}: damaged checkpoint (incomplete zip archive"), p.stderr
    assert "Traceback" not in p.stderr
    assert bad.read_bytes() == before, "a failed resume touched the checkpoint"


def test_checkpoint_of_another_model_is_one_clear_line(tmp_path):
    from seispolarity.models import Ross

    torch.set_num_threads(1)
    dataset = WaveformDataset(write_flat(tmp_path / "train.hdf5", n=32), name="flat", preload=True, window_length=400)
    config = TrainingConfig(device="cpu", num_workers=0, save_dir=None)
    path = Trainer(tiny_model(), dataset, config).save_checkpoint(str(tmp_path / "small.ckpt"))
    with pytest.raises(CheckpointError) as info:
        Trainer(Ross(base_channels=8, fc_units=16), dataset,
                TrainingConfig(device="cpu", num_workers=0, save_dir=None, resume_from=path))
    assert str(info.value) == (f"{path}: checkpoint does not fit Ross: size mismatch for features.0.weight: copying a "
                               f"param with shape torch.Size([4, 1, 21]) from checkpoint, the shape in current model "
                               f"is torch.Size([8, 1, 21]).")
