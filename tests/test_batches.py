"""training/batches.py: the epoch's batches, and the streaming path through DataLoader workers.

Workers hand the windows back through shared-memory slots that later batches reuse; every batch
must still arrive whole, in order and unchanged, however many batches are in flight.
"""
from __future__ import annotations

import pytest
import torch

from seispolarity import WaveformDataset
from seispolarity.training.batches import (
    auto_num_workers,
    epoch_order,
    is_streaming,
    iterate_batches,
    shard_batches,
)

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
