"""Hostile input (issue 8, part 5), generated systematically.

``CASES`` builds every kind of broken data file from a good one (truncated, wrong dtypes, wrong
ranks, empty, labels outside the map, mismatched lengths, P picks outside the trace, bad
attributes ...). Each must end in ONE clear error line that names the file and the cause, in the
library and through ``python train.py`` (the last line of stderr), with nothing half-written.
Paths with spaces and unicode must simply work (and resume). An unwritable output folder (a path
under a regular file, a read-only mount: chmod does not stop root) and a full disk (a tiny tmpfs)
end in one line too, leaving no partial checkpoint, metrics or temporary file.
"""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Callable

import h5py
import numpy as np
import pytest
import torch

from _robustness import cli_overrides, last_line, load_metrics, run_cli, tiny_model, write_flat
from seispolarity.data import WaveformDataset
from seispolarity.data.labels import LabelError
from seispolarity.data.readers import DataFormatError
from seispolarity.training import Trainer, TrainingConfig, load_checkpoint, save_checkpoint

N, L = 40, 480  # traces, samples (P at 240; the model's window is 400 + 2 x 5 shift)


def good(**replace) -> Callable[[Path], Path]:
    """A builder: the good file with some datasets replaced (None removes one)."""
    def build(path: Path) -> Path:
        return write_flat(path, n=N, length=L, **replace)
    return build


def with_bytes(fraction: float) -> Callable[[Path], Path]:
    """A builder: the good file cut to ``fraction`` of its bytes."""
    def build(path: Path) -> Path:
        full = write_flat(path.with_suffix(".full.hdf5"), n=N, length=L)
        data = full.read_bytes()
        path.write_bytes(data[:int(len(data) * fraction)])
        return path
    return build


def raw(content: bytes) -> Callable[[Path], Path]:
    def build(path: Path) -> Path:
        path.write_bytes(content)
        return path
    return build


def with_attr(**attrs) -> Callable[[Path], Path]:
    def build(path: Path) -> Path:
        write_flat(path, n=N, length=L)
        with h5py.File(path, "r+") as f:
            for key, value in attrs.items():
                f.attrs[key] = value
        return path
    return build


def folder(path: Path) -> Path:
    path.mkdir()
    return path


def missing(path: Path) -> Path:
    return path


def _x(dtype=np.float32, shape=(N, L), fill=None):
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float64)
    if fill is not None:
        x = np.full(shape, fill)
    return x.astype(dtype)


def _y(values):
    return np.asarray(values)


def _with_sample(row: int, value: float):
    x = _x()
    x[row, L // 2 + 3] = value
    return x


Y_OK = np.arange(N) % 3

# name -> (builder, exception class, message after "<path>: ")
CASES: dict[str, tuple[Callable[[Path], Path], type, str]] = {
    "empty file (0 bytes)": (raw(b""), DataFormatError, r"cannot open as HDF5 \(.*file signature not found"),
    "truncated HDF5 (1% of its bytes)": (with_bytes(0.01), DataFormatError, r"cannot open as HDF5 \(.*truncated file"),
    "truncated HDF5 (half)": (with_bytes(0.5), DataFormatError, r"cannot open as HDF5 \(.*truncated file"),
    "truncated HDF5 (last byte missing)": (with_bytes(0.9999), DataFormatError, r"cannot open as HDF5 \(.*truncated"),
    "a text file": (raw(b"X,Y\n1,2\n"), DataFormatError, r"cannot open as HDF5"),
    "a folder": (folder, DataFormatError, r"is a folder; expected one HDF5 file"),
    "a missing file": (missing, FileNotFoundError, r"no such file or directory"),
    "no X": (good(X=None), DataFormatError, r"no dataset 'X' \(found keys: \['Y', 'evids'\]\)"),
    "empty X (0 traces)": (good(X=np.zeros((0, L), np.float32), Y=np.zeros(0, np.int64), evids=None),
                           DataFormatError, r"'X' holds no traces"),
    "X with 0 samples": (good(X=np.zeros((N, 0), np.float32)), DataFormatError, r"traces of 0 samples"),
    "X 1-D": (good(X=_x(shape=(N,))), DataFormatError, r"'X' has shape \(40,\); expected \(N, L\) or \(N, C, L\)"),
    "X 4-D": (good(X=_x(shape=(N, 1, 1, L))), DataFormatError, r"'X' has shape \(40, 1, 1, 480\); expected"),
    "X of strings": (good(X=np.full((N, L), b"1.5")), DataFormatError, r"'X' has dtype \|S3; expected real numbers"),
    "X complex": (good(X=_x(np.complex64)), DataFormatError, r"'X' has dtype complex64; expected real numbers"),
    "X boolean": (good(X=_x(bool)), DataFormatError, r"'X' has dtype bool; expected real numbers"),
    "X shorter than the window": (good(X=_x(shape=(N, 300))), DataFormatError,
                                  r"window of 410 samples .* is longer than the traces \(300\)"),
    "NaN in a trace": (good(X=_with_sample(11, np.nan)), DataFormatError,
                       r"1 traces hold NaN or Inf \(first at row 11\)"),
    "Inf in a trace": (good(X=_with_sample(5, -np.inf)), DataFormatError,
                       r"1 traces hold NaN or Inf \(first at row 5\)"),
    "no labels": (good(Y=None), DataFormatError, r"no label dataset 'Y' \(or 'fm'\)"),
    "label outside the map (7)": (good(Y=np.where(np.arange(N) == 13, 7, Y_OK)), LabelError,
                                  r"Y: label '7' at row 13 is not in label_map"),
    "negative label": (good(Y=np.where(np.arange(N) == 2, -1, Y_OK)), LabelError, r"label '-1' at row 2 is not in"),
    "NaN label": (good(Y=np.where(np.arange(N) == 4, np.nan, Y_OK)), LabelError, r"label 'nan' at row 4 is not in"),
    "string labels without a map": (good(Y=np.array([b"U", b"D", b"X"] * 13 + [b"U"])), LabelError,
                                    r"label 'D' at row 1 is not in label_map"),
    "fewer labels than traces": (good(Y=Y_OK[:-1]), DataFormatError, r"'Y' has shape \(39,\); expected \(40,\) to match X"),
    "more labels than traces": (good(Y=np.arange(N + 5) % 3), DataFormatError, r"'Y' has shape \(45,\); expected \(40,\)"),
    "labels 2-D": (good(Y=np.zeros((N, 2), np.int64)), DataFormatError, r"'Y' has shape \(40, 2\); expected \(40,\)"),
    "P pick before the trace": (good(p_pick=np.where(np.arange(N) == 6, -5, 240)), DataFormatError,
                                r"P pick -5.0 at row 6 is outside the trace \(0..479\); fix it or set data.on_bad_row=skip"),
    "P pick after the trace": (good(p_pick=np.where(np.arange(N) == 9, 480, 240)), DataFormatError,
                               r"P pick 480.0 at row 9 is outside the trace"),
    "P pick NaN": (good(p_pick=np.where(np.arange(N) == 3, np.nan, 240.0)), DataFormatError,
                   r"P pick nan at row 3 is outside the trace"),
    "P picks of another length": (good(p_pick=np.full(N - 3, 240)), DataFormatError,
                                  r"'p_pick' has shape \(37,\); expected \(40,\)"),
    "P picks as strings": (good(p_pick=np.full(N, b"240")), DataFormatError, r"'p_pick' has dtype \|S3; expected"),
    "label_map attribute not JSON": (with_attr(label_map="{U: 0"), DataFormatError,
                                     r"attribute 'label_map' is not a valid label map"),
    "label_map attribute with code 7": (with_attr(label_map='{"0": 0, "1": 1, "2": 7}'), DataFormatError,
                                        r"attribute 'label_map' is not a valid label map \(label_map value for '2' is 7"),
    "sampling_rate 0": (with_attr(sampling_rate=0.0), DataFormatError, r"sampling_rate 0.0; expected a positive"),
    "sampling_rate negative": (with_attr(sampling_rate=-100.0), DataFormatError, r"sampling_rate -100.0; expected"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_file_is_one_clear_error(case, tmp_path):
    build, error, pattern = CASES[case]
    path = build(tmp_path / "data.hdf5")
    with pytest.raises(error) as info:
        WaveformDataset(path, name="flat", preload=True, window_length=400, max_shift=5)
    message = str(info.value)
    assert "\n" not in message, message
    assert message.startswith(f"{path}"), message
    assert re.search(pattern, message), message


def test_good_files_load(tmp_path):
    """The generator's baseline is fine, and so are 3-D X (Z picked by component) and int16 X."""
    for name, kwargs in {"2-D float32": {}, "3-D ZNE": {"X": _x(shape=(N, 3, L))},
                         "int16": {"X": (_x() * 1000).astype(np.int16)}}.items():
        ds = WaveformDataset(good(**kwargs)(tmp_path / f"{name}.hdf5"), name="flat", preload=True,
                             window_length=400, max_shift=5)
        assert len(ds) == N and ds[0][0].shape == (1, 400), name


@pytest.mark.parametrize("case", ["truncated HDF5 (half)", "label outside the map (7)"])
def test_hostile_file_through_the_cli(case, tmp_path):
    build, error, pattern = CASES[case]
    path = build(tmp_path / "data.hdf5")
    with pytest.raises(error) as info:
        WaveformDataset(path, name="flat", preload=True, window_length=400, max_shift=5)
    run_dir = tmp_path / "run"
    p = run_cli(cli_overrides(path, run_dir, **{"trainer.epochs": 1}))
    assert p.returncode == 1, p.stderr[-2000:]
    assert last_line(p.stderr) == f"error: {info.value}", p.stderr[-2000:]
    assert "Traceback" not in p.stderr and "HYDRA_FULL_ERROR" not in p.stderr, p.stderr[-2000:]
    _nothing_half_written(run_dir)
    assert "Traceback" in (run_dir / "train.log").read_text(), "train.log should keep the traceback"


def _nothing_half_written(run_dir: Path) -> None:
    assert not (run_dir / "metrics.json").exists()
    leftovers = [str(p.relative_to(run_dir)) for p in run_dir.rglob("*")
                 if p.suffix in (".tmp", ".ckpt") or p.name.startswith(".write-test")]
    assert not leftovers, leftovers


def test_unicode_and_spaces_in_paths_work_and_resume(tmp_path):
    base = tmp_path / "données sismiques" / "été 2024 run #1"  # (a comma would need Hydra quotes)
    data = write_flat(base / "train – ü ß 日本.hdf5", n=96)
    logs = base / "sorties 出力"
    args = cli_overrides(data, "unused", **{"trainer.epochs": 1, "trainer.max_steps_per_epoch": 2,
                                            "trainer.tensorboard_dir": "${paths.output_dir}/tb"})
    args = [a for a in args if not a.startswith(("hydra.run.dir=", "data.path="))]
    args += [f"data.path={data}", f"paths.log_dir={logs}"]  # unquoted, as a user types them
    p = run_cli(args)
    assert p.returncode == 0, p.stderr[-3000:]
    run_dir = Path(re.findall(r"^run folder: (.+)$", p.stdout, flags=re.M)[-1])
    assert run_dir.parent.parent.parent == logs and (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert any((run_dir / "tb").iterdir())

    ckpt = run_dir / "checkpoints" / "last.ckpt"
    resume = [a for a in args if not a.startswith("trainer.epochs=")] + ["trainer.epochs=2", f"ckpt_path={ckpt}"]
    p = run_cli(resume)
    assert p.returncode == 0, p.stderr[-3000:]
    assert f"run folder: {run_dir}" in p.stdout
    assert load_metrics(run_dir)["summary"]["epochs"] == 2 and load_checkpoint(ckpt)["epoch"] == 2
    assert len(list(logs.rglob("metrics.json"))) == 1, "the resume made a second run folder"


# -- unwritable output and a full disk -------------------------------------------------------------
@pytest.fixture
def mount_tmpfs(tmp_path):
    """``mount_tmpfs(name, size, readonly)``: a real tmpfs (root only); skipped where mounting is not allowed."""
    mounted: list[Path] = []

    def mount(name: str, size: str = "1m", readonly: bool = False) -> Path:
        point = tmp_path / name
        point.mkdir()
        options = f"size={size}" + (",ro" if readonly else "")
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], capture_output=True,
                              text=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip() or proc.returncode}): needs root "
                        f"with CAP_SYS_ADMIN")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def test_output_folder_under_a_regular_file(tmp_path):
    """chmod does not stop root, so the unwritable folder is one under a regular file."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    data = write_flat(tmp_path / "train.hdf5", n=64)
    args = [a for a in cli_overrides(data, "unused") if not a.startswith("hydra.run.dir=")]
    p = run_cli(args + [f"paths.log_dir={blocker}/logs"])
    assert p.returncode == 1, p.stderr
    assert re.fullmatch(rf"error: cannot write the run folder {re.escape(str(blocker))}/logs/\S+: "
                        rf"{re.escape(str(blocker))} is a file, not a folder \(set paths.log_dir or hydra.run.dir "
                        r"to a writable folder\)", last_line(p.stderr)), p.stderr
    assert "Traceback" not in p.stderr
    # the library: save_dir that cannot be a folder fails before the first step
    torch.set_num_threads(1)
    ds = WaveformDataset(data, name="flat", preload=True, window_length=400)
    trainer = Trainer(tiny_model(), ds, TrainingConfig(device="cpu", num_workers=0, epochs=1, batch_size=16,
                                                       save_dir=str(blocker / "ckpt"), show_progress=False))
    with pytest.raises(OSError, match=rf"save_dir {re.escape(str(blocker))}/ckpt is not a writable folder: "):
        trainer.train()
    assert trainer.global_step == 0


def test_read_only_output_folder(tmp_path, mount_tmpfs):
    ro = mount_tmpfs("readonly", readonly=True)
    data = write_flat(tmp_path / "train.hdf5", n=64)
    args = [a for a in cli_overrides(data, "unused") if not a.startswith("hydra.run.dir=")]
    p = run_cli(args + [f"paths.log_dir={ro}/logs"])
    assert p.returncode == 1, p.stderr
    assert last_line(p.stderr).startswith(f"error: cannot write the run folder {ro}/logs/"), p.stderr
    assert f"{ro} is not writable (Read-only file system)" in last_line(p.stderr)
    assert not os.listdir(ro)


def test_disk_full(tmp_path, mount_tmpfs):
    torch.set_num_threads(1)
    # the library: a save that does not fit leaves the previous checkpoint and no temporary file
    disk = mount_tmpfs("small", size="256k")
    first = {"model_state_dict": {"w": torch.zeros(20_000)}, "version": 1}  # ~80 kB
    save_checkpoint(first, disk / "last.ckpt")
    (disk / "filler").write_bytes(b"\0" * (100 * 1024))
    with pytest.raises(OSError, match=rf"\[Errno 28\] cannot write checkpoint {re.escape(str(disk))}/last.ckpt: "
                                      r"No space left on device"):
        save_checkpoint({"model_state_dict": {"w": torch.ones(20_000)}, "version": 2}, disk / "last.ckpt")
    assert load_checkpoint(disk / "last.ckpt")["version"] == 1
    assert sorted(os.listdir(disk)) == ["filler", "last.ckpt"]

    # the CLI: the run folder on a disk too small for a checkpoint
    tiny = mount_tmpfs("tiny", size="96k")
    data = write_flat(tmp_path / "train.hdf5", n=64)
    run_dir = tiny / "run"
    p = run_cli(cli_overrides(data, run_dir, **{"trainer.epochs": 1}))
    assert p.returncode == 1, p.stderr[-2000:]
    assert re.fullmatch(rf"error: \[Errno 28\] cannot write checkpoint {re.escape(str(run_dir))}/checkpoints/"
                        r"(best|last).ckpt: No space left on device", last_line(p.stderr)), p.stderr[-2000:]
    _nothing_half_written(run_dir)
    assert (run_dir / "config.yaml").is_file() and "trainer:" in (run_dir / "config.yaml").read_text()
