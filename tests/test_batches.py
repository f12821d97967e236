"""training/batches.py and worker_pool.py: the epoch's batches, and the streaming path through
worker processes.

Workers hand the windows back through shared-memory slots that later batches reuse; every batch
must still arrive whole, in order and unchanged, however many batches are in flight. A worker's
error reaches the training process, and no worker outlives its pass.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import signal

import pytest
import torch

from seispolarity import WaveformDataset
from seispolarity.training.batches import (
    auto_num_workers,
    epoch_order,
    is_streaming,
    iterate_batches,
    shard_batches,
    workers_to_start,
)
from seispolarity.training.worker_pool import read_in_workers

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def stream(synthetic_file) -> WaveformDataset:
    return WaveformDataset(synthetic_file, name="synthetic", preload=False, max_traces=600)


@pytest.mark.parametrize("workers", [1, 2])
def test_workers_deliver_the_in_process_batches(stream, workers):
    """More batches than slots (2 x workers + 2), and a short last batch."""
    order = epoch_order(len(stream), seed=5, epoch=1, streaming=True)
    batches = shard_batches(order, 24)  # 25 batches, the last one of 24 too; cut one short:
    batches[-1] = batches[-1][:7]
    expected = [stream.get_batch(b) for b in batches]
    got = list(iterate_batches(stream, batches, num_workers=workers))
    assert len(got) == len(expected)
    for i, (mine, theirs) in enumerate(zip(got, expected)):
        assert mine.keys() == theirs.keys(), i
        for key in theirs:
            assert torch.equal(mine[key], theirs[key]), (i, key)
    # the windows are copies: a later batch reusing the slot leaves an earlier one as it was
    assert not any(b["waveforms"].is_shared() for b in got)


def test_shard_batches_gives_every_rank_the_same_number_of_steps():
    order = torch.arange(103)
    per_rank = [shard_batches(order, 10, world_size=4, rank=r) for r in range(4)]
    assert {len(b) for b in per_rank} == {3}  # 2 full global batches of 40, then 23 split 6/6/6/5
    assert sorted(torch.cat([torch.cat(b) for b in per_rank]).tolist()) == list(range(103))
    assert shard_batches(order, 10, max_batches=4)[-1].tolist() == list(range(30, 40))


def test_auto_num_workers(stream, synthetic_file):
    preloaded = WaveformDataset(synthetic_file, name="synthetic", preload=True, max_traces=50)
    assert is_streaming(stream) and not is_streaming(preloaded)
    assert auto_num_workers(preloaded, "cuda", cores=32) == 0  # batches are slices of memory
    assert auto_num_workers(stream, "cpu", cores=32) == 0  # the CPU model step is the bottleneck
    assert auto_num_workers(stream, "cuda", cores=2) == 0  # no core to spare
    assert auto_num_workers(stream, "cuda", cores=4) == 2
    assert auto_num_workers(stream, "cuda", cores=32) == 4


class FailingReads:
    """A streaming dataset whose worker fails at one batch: by raising, or by dying."""

    preloaded = False

    def __init__(self, stream, bad_first_row: int, how: str) -> None:
        self.stream, self.bad, self.how = stream, bad_first_row, how

    def get_batch(self, idx):
        if int(idx[0]) == self.bad:
            if self.how == "raise":
                raise ValueError(f"row {self.bad}: unreadable")
            os.kill(os.getpid(), signal.SIGKILL)
        return self.stream.get_batch(idx)


def _children() -> list:
    return [p for p in multiprocessing.active_children() if p.name.startswith("seispolarity-data")]


def test_a_worker_error_is_raised_here_and_no_worker_is_left(stream):
    batches = shard_batches(torch.arange(240), 24)
    with pytest.raises(ValueError, match="row 120: unreadable"):
        list(read_in_workers(FailingReads(stream, 120, "raise"), batches, workers=2))
    assert _children() == []


def test_a_dead_worker_is_a_one_line_error(stream):
    batches = shard_batches(torch.arange(240), 24)
    with pytest.raises(RuntimeError, match=r"data worker 1 exited unexpectedly \(exit code -9\)"):
        list(read_in_workers(FailingReads(stream, 72, "die"), batches, workers=2))
    assert _children() == []


def test_leaving_early_stops_the_workers_and_gives_the_threads_back(stream, monkeypatch):
    from seispolarity.training import worker_pool

    monkeypatch.setattr(worker_pool, "usable_cores", lambda: 3)
    threads = 2
    torch.set_num_threads(threads)
    batches = shard_batches(torch.arange(480), 24)
    reader = read_in_workers(stream, batches, workers=2)
    next(reader)
    assert len(_children()) == 2
    assert torch.get_num_threads() == 1  # the workers' cores are theirs while they run
    reader.close()
    assert _children() == [] and torch.get_num_threads() == threads


def test_workers_to_start(stream, synthetic_file):
    preloaded = WaveformDataset(synthetic_file, name="synthetic", preload=True, max_traces=50)
    assert workers_to_start("auto", stream, "cuda", cores=8) == auto_num_workers(stream, "cuda", cores=8)
    assert workers_to_start(2, stream, "cpu", cores=2) == 1  # one core stays with the training process
    assert workers_to_start(3, stream, "cuda", cores=16) == 3
    assert workers_to_start(2, stream, "cpu", cores=1) == 0
    assert workers_to_start(2, preloaded, "cpu", cores=1) == 2  # not streaming: no workers start anyway


def test_the_trainer_says_when_it_starts_fewer_workers(stream, caplog, monkeypatch):
    from seispolarity.models import Ross
    from seispolarity.training import Trainer, TrainingConfig, batches

    monkeypatch.setattr(batches, "usable_cores", lambda: 2)
    config = TrainingConfig(batch_size=32, epochs=1, num_workers=4, max_steps_per_epoch=2, device="cpu",
                            save_dir=None, tensorboard_dir=None, show_progress=False, test_split=0.0)
    with caplog.at_level(logging.INFO, logger="seispolarity.training"):
        Trainer(Ross(), stream, config)
    assert "trainer.num_workers=4: 1 worker(s) start on this machine's 2 cores" in caplog.text


def test_overlapping_readers_give_back_the_threads_of_before_the_first(stream, monkeypatch):
    from seispolarity.training import worker_pool

    monkeypatch.setattr(worker_pool, "usable_cores", lambda: 3)
    torch.set_num_threads(2)
    batches = shard_batches(torch.arange(240), 24)
    first, second = read_in_workers(stream, batches, workers=2), read_in_workers(stream, batches, workers=1)
    next(first), next(second)
    first.close()  # the first closes first: the second still runs on the cut count
    assert torch.get_num_threads() == 1
    second.close()
    assert torch.get_num_threads() == 2


def test_a_worker_error_says_where_in_the_worker(stream):
    batches = shard_batches(torch.arange(240), 24)
    with pytest.raises(ValueError) as info:
        list(read_in_workers(FailingReads(stream, 24, "raise"), batches, workers=2))
    notes = "".join(getattr(info.value, "__notes__", []))
    assert "in data worker 1" in notes and "get_batch" in notes or not hasattr(info.value, "add_note")


def test_an_open_reader_does_not_hold_up_the_interpreter_at_exit(synthetic_file):
    """A reader left suspended in a variable: its workers (which ignore SIGTERM) stop at exit."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        import torch
        from seispolarity import WaveformDataset
        from seispolarity.training.worker_pool import read_in_workers
        stream = WaveformDataset({str(synthetic_file)!r}, name="synthetic", preload=False, max_traces=600)
        reader = read_in_workers(stream, [torch.arange(i, i + 24) for i in range(0, 480, 24)], workers=2)
        next(reader)
        print("leaving", flush=True)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "leaving" in done.stdout, done.stderr[-2000:]


def test_ranks_on_one_node_share_its_cores(monkeypatch):
    """torchrun gives every rank the node's affinity mask: each rank counts its share of it, so
    workers and threads are not started once per rank for the whole node; a SLURM task counts the
    cores SLURM allots it."""
    import os

    from seispolarity.training.worker_pool import usable_cores

    for name in ("LOCAL_WORLD_SIZE", "SLURM_CPUS_PER_TASK", "SLURM_STEP_ID"):
        monkeypatch.delenv(name, raising=False)
    mask = len(os.sched_getaffinity(0))
    assert usable_cores() == mask
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert usable_cores() == max(1, mask // 2)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(4 * mask))  # more ranks than cores: each keeps one
    assert usable_cores() == 1
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    assert usable_cores() == mask  # outside a SLURM step (srun) the allotment is not this process's
    monkeypatch.setenv("SLURM_STEP_ID", "0")
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", str(mask + 8))  # never more than the mask
    assert usable_cores() == mask
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    assert usable_cores() == 1
