"""The batches of an epoch and how they reach the training process.

Each epoch's batches are a function of (seed, epoch, rank) only, so a resumed run sees the very
batches an uninterrupted one would (docs/architecture.md, "How a batch flows from file to loss"):

- ``epoch_order``: a permutation of the traces; class-balanced draws with ``class_balance=sampler``;
  shuffled blocks of contiguous rows when streaming from disk, so a batch is a few large reads;
- ``shard_batches``: the order cut into global batches, each split across the DDP ranks;
- ``iterate_batches``: batch dicts, sliced in this process from a preloaded dataset, or read by
  DataLoader workers (one whole batch per worker call) when streaming;
- ``to_device``: the one copy of a batch to the training device.

``benchmarks/throughput.py`` times the data path through these same functions.
"""
from __future__ import annotations

import os
from typing import Any, Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Subset

#: Rows per block of the streaming order: 16 contiguous rows are one HDF5 read, and a batch of 256
#: is 16 such reads instead of 256 scattered ones.
STREAM_BLOCK = 16


def as_batched_dataset(ds):
    """A torch ``Subset`` of a WaveformDataset becomes a WaveformDataset view (the batched path)."""
    if isinstance(ds, Subset) and hasattr(ds.dataset, "subset"):
        return as_batched_dataset(ds.dataset).subset(list(ds.indices))
    return ds


def is_streaming(dataset) -> bool:
    """A batched dataset whose windows are read from disk per batch (``preload=False``)."""
    return hasattr(dataset, "get_batch") and not getattr(dataset, "preloaded", True)


def epoch_order(n: int, seed: int, epoch: int, labels: torch.Tensor | None = None, num_classes: int = 3,
                streaming: bool = False) -> torch.Tensor:
    """The order of one epoch's traces, from (seed, epoch) alone.

    ``labels`` given: class-balanced draws with replacement (``class_balance=sampler``), each
    class equally likely. ``streaming``: shuffled blocks of ``STREAM_BLOCK`` contiguous rows.
    """
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    if labels is not None:
        counts = torch.bincount(labels, minlength=num_classes).double()
        return torch.multinomial((1.0 / counts.clamp_min(1))[labels], n, replacement=True, generator=g)
    if streaming:
        starts = torch.randperm((n + STREAM_BLOCK - 1) // STREAM_BLOCK, generator=g) * STREAM_BLOCK
        order = (starts[:, None] + torch.arange(STREAM_BLOCK)).flatten()
        return order[order < n]
    return torch.randperm(n, generator=g)


def shard_batches(order: torch.Tensor, batch_size: int, world_size: int = 1, rank: int = 0,
                  max_batches: int | None = None) -> list[torch.Tensor]:
    """This rank's batches: global batches of ``batch_size x world_size``, each split across ranks.

    The last, short global batch is split evenly (``tensor_split``) and dropped when it cannot give
    every rank one trace, so all ranks take the same number of steps (DDP needs it).
    """
    global_bs = batch_size * world_size
    batches = []
    for a in range(0, len(order), global_bs):
        chunk = order[a:a + global_bs]
        if len(chunk) < world_size:
            break
        if len(chunk) == global_bs:
            batches.append(chunk[rank * batch_size:(rank + 1) * batch_size])
        else:
            batches.append(torch.tensor_split(chunk, world_size)[rank])
    return batches[:max_batches] if max_batches is not None else batches


def epoch_batches(dataset, config, epoch: int, num_classes: int = 3, world_size: int = 1,
                  rank: int = 0) -> list[torch.Tensor]:
    """This rank's batches of one epoch of ``dataset`` under a TrainingConfig: ``epoch_order``
    (class-balanced with ``class_balance=sampler``, blocks when streaming), then ``shard_batches``."""
    balanced = dataset.labels if config.class_balance == "sampler" else None
    order = epoch_order(len(dataset), config.seed, epoch, balanced, num_classes, streaming=is_streaming(dataset))
    return shard_batches(order, config.batch_size, world_size, rank, config.max_steps_per_epoch)


class BatchRequests(Dataset):
    """Each item is one whole batch, read by a DataLoader worker (the streaming path).

    The windows come back through shared memory: ``slots`` buffers, allocated once before the
    workers start, hold the waveforms of the batches in flight (item ``i`` in slot ``i % slots``);
    only the slot number and the small per-trace arrays travel through the worker's pipe. Pickling
    a batch's windows through the pipe (420 KB for 256 traces, in 64 KB pipe writes, each waiting for
    the reader) cost more than reading them: 2-3 ms per batch, and 2 workers ran 4x slower than
    none (docs/performance.md). A tensor per batch instead would cost a new shared-memory segment and
    file descriptor per batch (~3x slower still).
    """

    def __init__(self, dataset, batches: list[torch.Tensor], slots: int) -> None:
        self.dataset, self.batches = dataset, batches
        if hasattr(dataset, "num_channels") and hasattr(dataset, "stored_length"):  # a WaveformDataset
            shape, dtype = (dataset.num_channels, dataset.stored_length), torch.float32
        else:  # any other batched dataset: read one trace to learn the window shape
            probe = dataset.get_batch(batches[0][:1])["waveforms"]
            shape, dtype = tuple(probe.shape[1:]), probe.dtype
        largest = max(len(b) for b in batches)
        self.buffer = torch.empty((slots, largest, *shape), dtype=dtype).share_memory_()

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> dict[str, Any]:
        batch = self.dataset.get_batch(self.batches[i])
        waveforms = batch.pop("waveforms")
        slot = i % len(self.buffer)
        self.buffer[slot, :len(waveforms)].copy_(waveforms)
        return {"slot": slot, "count": len(waveforms), **{k: v.numpy() for k, v in batch.items()}}

    def take(self, item: dict[str, Any], pin_memory: bool = False) -> dict[str, torch.Tensor]:
        """A worker's item -> the batch dict, its windows copied out of the slot (which a later batch reuses)."""
        waveforms = self.buffer[item.pop("slot"), :item.pop("count")]
        batch = {"waveforms": waveforms.pin_memory() if pin_memory else waveforms.clone()}
        for key, value in item.items():
            value = torch.from_numpy(value)
            batch[key] = value.pin_memory() if pin_memory else value
        return batch


def _keep_numpy(batch):
    """DataLoader ``collate_fn``: leave a worker's item as it is (tensors are made here)."""
    return batch


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask; a container's cpuset)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def auto_num_workers(dataset, device: torch.device | str, cores: int | None = None) -> int:
    """What ``num_workers="auto"`` means for ``dataset`` on this machine.

    0 unless the dataset streams from disk and the model trains on an accelerator with cores to
    spare: a preloaded batch is a slice of memory; on the CPU the model's step is ~1000x slower than
    the data path (400 against 100,000+ samples/s for Ross on 2 cores), so workers cannot speed it
    up and only take cores from its threads; and on 2 cores 1 or 2 workers made the streaming data
    path 0.5-0.9x as fast as none (docs/performance.md). Otherwise one worker per core beyond the
    two the training process uses, up to 4 (one worker reads ~200,000 windows/s).
    """
    cores = usable_cores() if cores is None else cores
    if not is_streaming(dataset) or torch.device(device).type == "cpu" or cores < 4:
        return 0
    return min(4, cores - 2)


def iterate_batches(dataset, batches: list[torch.Tensor], num_workers: int = 0, batch_size: int | None = None,
                    pin_memory: bool = False) -> Iterator[dict[str, torch.Tensor]]:
    """Yield batch dicts for ``batches`` (index tensors) of ``dataset``.

    A WaveformDataset that is preloaded, or read with ``num_workers=0``, is sliced in this process;
    a streaming one with workers goes through a DataLoader whose items are whole batches. A plain
    torch dataset of ``(waveform, label)`` items goes through a DataLoader of ``batch_size``.
    """
    if not hasattr(dataset, "get_batch"):
        indices = torch.cat(batches).tolist() if batches else list(range(len(dataset)))
        loader = DataLoader(Subset(dataset, indices), batch_size=batch_size or 1, shuffle=False,
                            num_workers=num_workers)
        for x, y in loader:
            yield {"waveforms": x, "labels": y}
        return
    if not is_streaming(dataset) or num_workers == 0 or not batches:
        for idx in batches:
            yield dataset.get_batch(idx)
        return
    workers, prefetch = min(num_workers, len(batches)), 2
    # Slots: the loader keeps workers x prefetch batches in flight and asks for the next one before
    # handing over the current one, so one more slot than that is never overwritten too early.
    requests = BatchRequests(dataset, batches, slots=workers * prefetch + 2)
    loader = DataLoader(requests, batch_size=None, shuffle=False, num_workers=workers, prefetch_factor=prefetch,
                        collate_fn=_keep_numpy, persistent_workers=False)
    for item in loader:
        yield requests.take(item, pin_memory)


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """Copy a batch to ``device``; asynchronously on CUDA (from pinned memory the copy overlaps)."""
    non_blocking = device.type == "cuda"
    return {k: v.to(device, non_blocking=non_blocking) for k, v in batch.items()}
