"""The batches of an epoch and how they reach the training process.

Each epoch's batches are a function of (seed, epoch, rank) only, so a resumed run sees the very
batches an uninterrupted one would (docs/architecture.md, "How a batch flows from file to loss"):

- ``epoch_order``: a permutation of the traces; class-balanced draws with ``class_balance=sampler``;
  shuffled blocks of contiguous rows when streaming from disk, so a batch is a few large reads;
- ``shard_batches``: the order cut into global batches, each split across the DDP ranks;
- ``iterate_batches``: batch dicts, sliced in this process from a preloaded dataset, or read by
  worker processes (whole batches, ``worker_pool.read_in_workers``) when streaming;
- ``prepared_batches``: training batches from a preloaded set on the CPU, cut while sliced from the
  store and augmented several at a time (the same draws and bytes as one at a time);
- ``to_device``: the one copy of a batch to the training device.

``benchmarks/throughput.py`` times the data path through these same functions.
"""
from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import DataLoader, Subset

from ..data.augment import AugmentDraws, draw_augment, prepare_batch, shifted_starts
from .worker_pool import read_in_workers, usable_cores

#: Training batches prepared together on the CPU (``prepared_batches``): each torch operation of the
#: crop, augmentation and normalisation costs 5-10 us beyond its work on 2 cores, and a batch needs
#: ~45 of them; 4 batches at a time took the preloaded data path from ~0.5 to ~1.1 million samples/s.
PREPARED_TOGETHER = 4
#: ... and at most this many bytes of model input at a time: a large batch gains nothing from it (its
#: per-call overhead is already small next to its work) and would only hold more memory.
PREPARED_BYTES = 16 << 20

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


def auto_num_workers(dataset, device: torch.device | str, cores: int | None = None) -> int:
    """What ``num_workers="auto"`` means for ``dataset`` on this machine.

    0 unless the dataset streams from disk and the model trains on an accelerator with cores to
    spare: a preloaded batch is a slice of memory, and on the CPU the model's step is ~1000x slower
    than the data path (400 against 100,000+ samples/s for Ross on 2 cores), so workers cannot
    speed it up and only take cores from its threads. Otherwise one worker per core beyond the two
    the training process uses, up to 4 (one worker reads ~200,000 windows/s).
    """
    cores = usable_cores() if cores is None else cores
    if not is_streaming(dataset) or torch.device(device).type == "cpu" or cores < 4:
        return 0
    return min(4, cores - 2)


def workers_to_start(num_workers: int | str, dataset, device: torch.device | str, cores: int | None = None) -> int:
    """The worker processes a pass starts for ``TrainingConfig.num_workers``.

    ``"auto"``: ``auto_num_workers``. A number: at most one per core beyond the one the training
    process needs. A worker more than that only shares a core: on 2 cores 2 workers read 0.86-1.25 x
    as fast as none, 1 worker 1.06-1.8 x (docs/performance.md, "Streaming workers").
    """
    cores = usable_cores() if cores is None else cores
    if num_workers == "auto":
        return auto_num_workers(dataset, device, cores)
    return min(int(num_workers), max(0, cores - 1)) if is_streaming(dataset) else int(num_workers)


def iterate_batches(dataset, batches: list[torch.Tensor], num_workers: int = 0, batch_size: int | None = None,
                    pin_memory: bool = False) -> Iterator[dict[str, torch.Tensor]]:
    """Yield batch dicts for ``batches`` (index tensors) of ``dataset``.

    A WaveformDataset that is preloaded, or read with ``num_workers=0``, is sliced in this process;
    a streaming one with workers is read by worker processes (``read_in_workers``). A plain
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
    yield from read_in_workers(dataset, batches, num_workers, pin_memory)


def prepared_batches(dataset, batches: list[torch.Tensor], length: int, normalize: str | None, augment,
                     generator: torch.Generator, noise_bank, sampling_rate: float,
                     together: int | None = None) -> Iterator[dict]:
    """Training batches of a preloaded ``dataset`` on the CPU, ready for the model.

    Each yields ``{"index", "prepared": (input, labels, targets), "stream_after"}``. ``together``
    batches (default: ``PREPARED_TOGETHER``, fewer for large batches: ``PREPARED_BYTES``) are
    prepared as one: their draws are made batch by batch, in the order ``prepare_batch`` makes them
    (the crop's shift, then ``draw_augment``), so the random stream and every trace's bytes are those
    of one batch at a time; the crop is cut while the windows are sliced from the store (one copy),
    and the rest runs once for the group. ``stream_after`` is (augmentation generator state, noise
    bank state) after that batch's draws: what a checkpoint taken after it keeps, though the group's
    later batches are drawn already.
    """
    shape = (dataset.num_channels, length)
    if together is None:
        largest = max((len(b) for b in batches), default=1) * dataset.num_channels * length * 4
        together = max(1, min(PREPARED_TOGETHER, PREPARED_BYTES // largest))
    for first in range(0, len(batches), together):
        group = batches[first:first + together]
        starts, draws, marks = [], [], []
        for j, idx in enumerate(group):
            if augment is not None:
                starts.append(shifted_starts(len(idx), dataset.stored_length, length, augment, generator, "cpu"))
                # (a batch's noise is copied out of the bank unless no later take can redraw it first)
                draws.append(draw_augment(len(idx), shape, torch.float32, "cpu", augment, generator, noise_bank,
                                          keep=j < len(group) - 1))
            marks.append((generator.get_state(), noise_bank.state_dict()))
        idx = torch.cat(group)
        start = torch.cat(starts) if starts and starts[0] is not None else None
        batch = dataset.get_batch(idx, length, start) if start is not None else dataset.get_batch(idx)
        drawn = AugmentDraws.concat(draws) if draws and draws[0] is not None else None
        x, labels, targets = prepare_batch(batch, length, normalize, augment, generator, sampling_rate, noise_bank,
                                           draws=drawn)
        end = 0
        for idx, mark in zip(group, marks):
            rows = slice(end, end + len(idx))
            end = rows.stop
            yield {"index": idx, "prepared": (x[rows], labels[rows], {k: v[rows] for k, v in targets.items()}),
                   "stream_after": mark}


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """Copy a batch to ``device``; asynchronously on CUDA (from pinned memory the copy overlaps)."""
    non_blocking = device.type == "cuda"
    return {k: v.to(device, non_blocking=non_blocking) for k, v in batch.items()}
