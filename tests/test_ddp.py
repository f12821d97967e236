"""DistributedDataParallel under torchrun, for real: 2 CPU processes, the gloo backend.

* ``torchrun --nproc_per_node=2 train.py trainer=ddp``: one run folder that rank 0 alone writes
  (``.hydra/``, ``train.log``, TensorBoard, checkpoints, ``metrics.json``); two jobs started at the
  same moment get two folders; a DDP checkpoint resumes in a single process (and the other way round).
* Gradient averaging: the Trainer run by torchrun on 2 ranks x batch 8 ends with the same weights as
  one process with batch 16 over the same global batches (model without BatchNorm or dropout, no
  augmentation); DDP <-> single-process resumes land on the same weights too.

This file is also the torchrun worker of the equivalence test (``python -m torch.distributed.run
... tests/test_ddp.py worker <folder>``).
"""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
TRAIN_PY = ROOT / "train.py"
#: a 2-channel-wide Ross on 64 traces: a DDP train.py job takes seconds
TINY = ["model=ross", "model.base_channels=2", "model.fc_units=8", "data.num_traces=64",
        "trainer.batch_size=8", "trainer.device=cpu", "trainer.show_progress=false", "trainer.log_every=1",
        "trainer.num_workers=0", "test=false"]
DIST_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
             "TORCHELASTIC_RUN_ID", "TORCHELASTIC_USE_AGENT_STORE", "SEISPOLARITY_RUN_STAMP", "GROUP_RANK")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in DIST_VARS}
    env.update(PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HYDRA_FULL_ERROR="1")
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*args, nproc: int = 2, rdzv: str = "standalone") -> list[str]:
    """The torchrun command line; ``rdzv="c10d"`` / ``"static"``: the multi-node forms of
    docs/scaling.md with one node."""
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}"]
    if rdzv == "standalone":
        cmd.append("--standalone")
    elif rdzv == "c10d":
        cmd += ["--nnodes=1", "--rdzv_backend=c10d", f"--rdzv_endpoint=127.0.0.1:{_free_port()}",
                f"--rdzv_id=test{os.getpid()}"]
    else:
        cmd += ["--nnodes=1", "--node_rank=0", "--master_addr=127.0.0.1", f"--master_port={_free_port()}"]
    return cmd + [str(a) for a in args]


def run(cmd: list[str], timeout: float = 180) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, explain(proc)
    return proc


def explain(proc) -> str:
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-6000:]}"


def folders(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir()) if path.is_dir() else []


# ------------------------------------------------------------------------------------------------
# train.py under torchrun
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """One ``torchrun --nproc_per_node=2 train.py trainer=ddp`` job, 1 epoch, every epoch saved."""
    tmp = tmp_path_factory.mktemp("ddp")
    started = time.perf_counter()
    proc = run(torchrun(TRAIN_PY, "trainer=ddp", *TINY, "trainer.epochs=1", "trainer.save_best_only=false",
                        "trainer.save_every=1", f"paths.log_dir={tmp / 'logs'}", f"paths.cache_dir={tmp / 'cache'}"))
    return tmp, proc, time.perf_counter() - started


def test_torchrun_one_run_folder_written_by_rank0(ddp_run):
    tmp, proc, _ = ddp_run
    runs = folders(tmp / "logs" / "train" / "runs")
    assert len(runs) == 1, f"expected one run folder, got {runs}"
    run_dir = runs[0]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d\.\d{6}", run_dir.name)
    assert len(re.findall(r"^run folder:", proc.stdout, flags=re.M)) == 1, "only rank 0 prints the summary"
    assert str(run_dir) in proc.stdout
    # Hydra's files and the log: once, from rank 0
    assert sorted(p.name for p in (run_dir / ".hydra").iterdir()) == ["config.yaml", "hydra.yaml", "overrides.yaml"]
    overrides = (run_dir / ".hydra" / "overrides.yaml").read_text()
    assert "hydra.output_subdir" not in overrides and "trainer=ddp" in overrides
    log = (run_dir / "train.log").read_text()
    assert log.count("training Ross") == 1 and "2 processes" in log, log
    assert log.count("epoch 1/1:") == 1, log
    # TensorBoard: one writer (rank 0); checkpoints: one set, plain keys (no DDP "module." prefix)
    events = list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1, events
    ckpts = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert ckpts == ["best.ckpt", "epoch_001.ckpt", "last.ckpt"], ckpts
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert not any(k.startswith("module.") for k in state["model_state_dict"])
    assert state["epoch"] == 1 and state["finished"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == [1]
    # 44 training traces, global batch 2 x 8: 3 steps (16, 16, 12 split 6 + 6)
    assert metrics["history"][0]["step"] == 3
    assert sorted(p.name for p in run_dir.iterdir()) == [
        ".hydra", "checkpoints", "config.yaml", "metrics.json", "tensorboard", "train.log"]


def test_ddp_checkpoint_resumes_in_one_process(ddp_run, tmp_path):
    tmp, _, _ = ddp_run
    ddp_dir = folders(tmp / "logs" / "train" / "runs")[0]
    ckpt = ddp_dir / "checkpoints" / "epoch_001.ckpt"
    out = tmp_path / "single"
    # batch_size 16 = 2 ranks x 8: the same global batches as the DDP run
    run([sys.executable, str(TRAIN_PY), *TINY, "trainer.batch_size=16", "trainer.epochs=2", f"ckpt_path={ckpt}",
                f"hydra.run.dir={out}", f"paths.log_dir={tmp_path}", f"paths.cache_dir={tmp / 'cache'}"])
    log = (out / "train.log").read_text()
    assert "resumed from" in log and "at epoch 1" in log, log
    assert "processes" not in log  # a single process (the run's trainer=ddp is not resumed: it is torchrun's)
    assert "trainer.batch_size: 8 -> 16 (per process; the same global batch 16: 2 x 8 -> 1 x 16)" in log, log
    metrics = json.loads((out / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == [1, 2]
    # epoch 1 comes from the DDP run's history, epoch 2 was trained here
    ddp_history = json.loads((ddp_dir / "metrics.json").read_text())["history"]
    assert metrics["history"][0]["train_loss"] == pytest.approx(ddp_history[0]["train_loss"])
    state = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert state["epoch"] == 2 and state["global_step"] == 2 * 3  # 44 traces, global batch 16: 3 steps/epoch


def test_resume_may_change_the_batch_size_only_with_the_global_batch_kept(monkeypatch):
    """trainer.batch_size is per process and the process count is torchrun's: a resume may change it
    when processes x batch_size stays the run's (docs/scaling.md), and refuses it otherwise."""
    from omegaconf import OmegaConf

    from seispolarity.failures import UsageError
    from seispolarity.resume import resumed_config

    saved = {"trainer": {"batch_size": 8, "epochs": 1, "distributed": "auto"}, "ckpt_path": None}

    def resume(batch_size: int, processes: int, state_extra: dict | None = None):
        monkeypatch.setenv("WORLD_SIZE", str(processes))
        cfg = OmegaConf.create({"trainer": {**saved["trainer"], "batch_size": batch_size}, "ckpt_path": "last.ckpt"})
        return resumed_config(cfg, {"run_config": saved, "world_size": 2, **(state_extra or {})}, ckpt="last.ckpt")

    cfg, notes = resume(16, 1)  # 2 x 8 -> 1 x 16
    assert cfg.trainer.batch_size == 16
    assert any(n.startswith("trainer.batch_size: 8 -> 16 (per process; the same global batch 16") for n in notes), notes
    cfg, notes = resume(8, 2)
    assert cfg.trainer.batch_size == 8 and not notes
    with pytest.raises(UsageError, match=r"trainer.batch_size=32 \(the run: 8 per process x 2 processes, a global "
                                         r"batch of 16; here 1 x 32\)"):
        resume(32, 1)
    cfg, notes = resume(8, 1)  # no override, fewer processes: allowed, and the log says what changes
    assert notes == ["global batch: 16 -> 8 (2 processes x 8 -> 1 x 8; trainer.batch_size=16 keeps it)"]
    cfg, notes = resume(32, 1, {"world_size": None})  # a checkpoint that does not record its processes
    assert cfg.trainer.batch_size == 32 and "does not say how many processes" in notes[0]


@pytest.mark.slow
def test_single_process_checkpoint_resumes_under_ddp(ddp_run, tmp_path):
    """(Also covered, faster, by the Trainer-level equivalence test below.)"""
    tmp, _, _ = ddp_run
    single = tmp_path / "single"
    run([sys.executable, str(TRAIN_PY), *TINY, "trainer.epochs=1", "trainer.batch_size=16",
         f"hydra.run.dir={single}", f"paths.log_dir={tmp_path}", f"paths.cache_dir={tmp / 'cache'}",
         "trainer.save_best_only=false", "trainer.save_every=1"])
    out = tmp_path / "ddp"
    run(torchrun(TRAIN_PY, "trainer=ddp", *TINY, "trainer.epochs=2", f"ckpt_path={single / 'checkpoints' / 'epoch_001.ckpt'}",
                 f"hydra.run.dir={out}", f"paths.log_dir={tmp_path}", f"paths.cache_dir={tmp / 'cache'}", rdzv="c10d"))
    log = (out / "train.log").read_text()
    assert "resumed from" in log and "2 processes" in log, log
    assert [h["epoch"] for h in json.loads((out / "metrics.json").read_text())["history"]] == [1, 2]


def test_two_jobs_started_together_get_their_own_folder(tmp_path):
    """Two torchrun jobs at the same moment: within a job both ranks name the same folder, and the
    two jobs name different ones (``--cfg all --resolve`` composes and prints without training)."""
    cmds = [torchrun(TRAIN_PY, "trainer=ddp", f"paths.log_dir={tmp_path}", "--cfg", "all", "--resolve",
                     "--package", "hydra.run", rdzv=rdzv) for rdzv in ("c10d", "static")]
    procs = [subprocess.Popen(c, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for c in cmds]
    dirs = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=120)
        assert p.returncode == 0, stderr[-4000:]
        found = re.findall(r"dir: (\S+)", stdout)
        assert len(found) == 2, stdout  # one line per rank
        assert found[0] == found[1], f"the ranks disagree: {found}"
        dirs.append(found[0])
    assert dirs[0] != dirs[1], dirs
    assert all(d.startswith(str(tmp_path / "train" / "runs")) for d in dirs), dirs


@pytest.mark.slow
def test_basic_multirun_under_torchrun(tmp_path):
    """``torchrun ... train.py -m seed=1,2``: both ranks run the jobs in step, in one sweep folder,
    reusing one process group; rank 0 writes the summary."""
    run(torchrun(TRAIN_PY, "-m", "trainer=ddp", *TINY, "trainer.epochs=1", "seed=1,2", "trainer.tensorboard_dir=null",
                 f"paths.log_dir={tmp_path}", f"paths.cache_dir={tmp_path / 'cache'}"))
    sweeps = folders(tmp_path / "train" / "multiruns")
    assert len(sweeps) == 1, sweeps
    for job in ("0", "1"):
        log = (sweeps[0] / job / "train.log").read_text()
        assert log.count("training Ross") == 1 and "2 processes" in log, log
    assert (sweeps[0] / "summary.md").is_file()


def test_prepare_argv_outside_torchrun_is_unchanged(monkeypatch):
    from seispolarity.launch import prepare_argv

    for var in DIST_VARS:
        monkeypatch.delenv(var, raising=False)
    assert prepare_argv(["train.py", "trainer=ddp", "lr=1e-3"]) == ["train.py", "trainer=ddp", "lr=1e-3"]


def test_ddp_without_torchrun_explains(tmp_path):
    proc = subprocess.run([sys.executable, str(TRAIN_PY), "trainer=ddp", *TINY, f"hydra.run.dir={tmp_path / 'r'}",
                           f"paths.cache_dir={tmp_path / 'cache'}", "data.num_traces=16"],
                          cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "torchrun --nproc_per_node=N train.py trainer=ddp" in proc.stderr + proc.stdout


# ------------------------------------------------------------------------------------------------
# gradient averaging: DDP == one process over the same global batches
# ------------------------------------------------------------------------------------------------
PER_RANK_BATCH, WORLD, TRAIN_N, VAL_N = 8, 2, 64, 16


class TinyNet(torch.nn.Module):
    """Deterministic (no BatchNorm, no dropout): DDP's averaged gradient is the global-batch one."""

    num_classes = 3

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Conv1d(1, 4, 9, stride=4), torch.nn.ReLU(), torch.nn.Flatten(),
                                       torch.nn.Linear(4 * 14, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _data(folder: Path):
    from torch.utils.data import Subset

    from seispolarity.data.presets import synthetic_dataset

    ds = synthetic_dataset(cache_dir=str(folder / "cache"), num_traces=TRAIN_N + VAL_N, seed=3, window_length=64,
                           preload=True)
    return Subset(ds, range(TRAIN_N)), Subset(ds, range(TRAIN_N, TRAIN_N + VAL_N))


def _train(folder: Path, name: str, batch_size: int, epochs: int, resume: Path | None = None,
           optimizer: str = "adam"):
    """Train TinyNet with the Trainer; returns the trainer (rank 0 saves ``<folder>/<name>/*.ckpt``)."""
    from seispolarity.training import Trainer, TrainingConfig

    torch.manual_seed(0)
    train, val = _data(folder)
    config = TrainingConfig(batch_size=batch_size, epochs=epochs, learning_rate=3e-3, optimizer=optimizer,
                            device="cpu", num_workers=0, save_dir=str(folder / name), save_best_only=False,
                            save_every=1, validation_split=0.0, early_stopping_patience=None, show_progress=False,
                            log_every=1000, seed=11, resume_from=str(resume) if resume else None)
    # augment=None: the plain API augments by default, with random numbers drawn per rank (not bit-exact)
    trainer = Trainer(TinyNet(), train, config, val_dataset=val, augment=None)
    trainer.train()
    return trainer


def _worker(folder: Path) -> None:
    """Run by torchrun on each rank: DDP from scratch, then DDP resumed from the single-process
    epoch-1 checkpoint."""
    torch.set_num_threads(1)
    trainer = _train(folder, "ddp", PER_RANK_BATCH, 2)
    assert trainer.ctx.world_size == WORLD
    _train(folder, "ddp_from_single", PER_RANK_BATCH, 2, resume=folder / "single" / "epoch_001.ckpt")
    torch.distributed.destroy_process_group()


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["model_state_dict"]


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def test_ddp_gradients_are_averaged_and_resume_both_ways(tmp_path, capsys):
    torch.set_num_threads(1)
    _data(tmp_path)  # generate the cached file once, before the ranks read it
    single = _train(tmp_path, "single", PER_RANK_BATCH * WORLD, 2)
    start = _weights(tmp_path / "single" / "epoch_001.ckpt")
    run(torchrun(Path(__file__), "worker", tmp_path))
    # DDP from DDP's epoch-1 checkpoint, resumed in this (single) process
    _train(tmp_path, "single_from_ddp", PER_RANK_BATCH * WORLD, 2, resume=tmp_path / "ddp" / "epoch_001.ckpt")

    reference = _weights(tmp_path / "single" / "last.ckpt")
    assert _max_diff(reference, start) > 1e-3, "training must have moved the weights"
    diffs = {name: _max_diff(reference, _weights(tmp_path / name / "last.ckpt"))
             for name in ("ddp", "ddp_from_single", "single_from_ddp")}
    with capsys.disabled():
        print(f"\nmax |w_ddp - w_single| after 2 epochs x 4 steps: {diffs}")
    for name, diff in diffs.items():
        assert diff < 1e-5, f"{name}: weights differ from the single-process run by {diff}"
    # the reduced metrics agree too (train loss over both shards; validation sharded then summed)
    ddp_state = torch.load(tmp_path / "ddp" / "last.ckpt", weights_only=True)
    for mine, theirs in zip(single.history, ddp_state["history"]):
        assert theirs["train_loss"] == pytest.approx(mine["train_loss"], rel=1e-5)
        assert theirs["val_loss"] == pytest.approx(mine["val_loss"], rel=1e-5)
        assert theirs["val_accuracy"] == mine["val_accuracy"]
    assert ddp_state["global_step"] == single.global_step == 2 * TRAIN_N // (PER_RANK_BATCH * WORLD)


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "worker":
    _worker(Path(sys.argv[2]))


def test_a_stopped_ddp_run_is_resumed_by_as_many_processes(monkeypatch):
    """The resume line a signal prints names torchrun where torchrun started the run: `python`
    would refuse trainer=ddp, and one process would change the global batch."""
    from seispolarity.failures import launcher_command

    for name in ("WORLD_SIZE", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert launcher_command() == "python"
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert launcher_command() == "torchrun --standalone --nproc_per_node=2"
    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert launcher_command() == "torchrun --nnodes=2 --nproc_per_node=4 <your rendezvous options>"
