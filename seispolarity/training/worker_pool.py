"""Batches read by worker processes (the streaming path with ``num_workers > 0``).

Each worker reads whole batches (worker ``k`` of ``W`` takes batches ``k, k + W, ...``) and puts
their windows into shared-memory slots of its own, allocated once per pass; only the slot number
and the small per-trace arrays travel through its pipe. A semaphore per worker counts its free
slots, so a worker never overwrites a batch the training process has not yet copied out.

Why not ``torch.utils.data.DataLoader``: its hand-over (index queue, feeder thread, status checks)
cost ~0.45 ms per batch on 2 cores, about half of what reading the batch costs, and with it 1 or 2
workers were slower than none (docs/performance.md, "Streaming workers").

While the workers run, this process uses only the cores they leave (``torch.set_num_threads``):
GNU OpenMP's idle threads spin between operations, and on a small machine they took the workers'
cores (2 workers on 2 cores: 0.6 x the rate of none; with the threads cut, 1.1-1.5 x).
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import traceback
from multiprocessing.util import Finalize
from typing import Iterator

import torch

from .signals import stop_signals

#: Slots per worker: the batch being read and one ready.
PREFETCH = 2

#: Readers open in this process and the intra-op thread count before the first of them cut it.
_open = {"readers": 0, "threads": 0}


def _slot_shape(dataset, batches: list[torch.Tensor]) -> tuple[tuple[int, ...], torch.dtype]:
    """The shape and dtype of one batch's windows, the largest batch's."""
    largest = max(len(b) for b in batches)
    if hasattr(dataset, "num_channels") and hasattr(dataset, "stored_length"):  # a WaveformDataset
        return (largest, dataset.num_channels, dataset.stored_length), torch.float32
    probe = dataset.get_batch(batches[0][:1])["waveforms"]  # any other batched dataset
    return (largest, *probe.shape[1:]), probe.dtype


def _worker(dataset, batches, k: int, workers: int, slots: torch.Tensor, free, conn, parent: int) -> None:
    """Worker ``k``: read its batches into its slots, send (slot, count, small arrays) for each."""
    # Ctrl-C, SIGTERM and SLURM's warnings (scancel and --signal reach every process of the job)
    # are the training process's to handle: it stops at a step boundary with a checkpoint, for which
    # it may need one more batch, then stops its workers with SIGKILL. A worker whose training
    # process is gone just ends.
    for signum in stop_signals():
        signal.signal(signum, signal.SIG_IGN)
    torch.set_num_threads(1)
    try:
        for j, i in enumerate(range(k, len(batches), workers)):
            while not free.acquire(timeout=1.0):
                if os.getppid() != parent:  # the training process is gone
                    return
            batch = dataset.get_batch(batches[i])
            waveforms = batch.pop("waveforms")
            slot = k * PREFETCH + j % PREFETCH
            slots[slot, :len(waveforms)].copy_(waveforms)
            conn.send((slot, len(waveforms), {key: v.numpy() for key, v in batch.items()}))
    except (BrokenPipeError, KeyboardInterrupt):
        return
    except BaseException as exc:  # noqa: BLE001 - handed to the training process, which raises it
        if hasattr(exc, "add_note"):  # where in the worker it failed (Python >= 3.11)
            exc.add_note(f"in data worker {k}:\n{traceback.format_exc()}")
        conn.send(("error", exc if _picklable(exc) else RuntimeError(f"{type(exc).__name__}: {exc}")))
    finally:
        conn.close()


def _picklable(exc: BaseException) -> bool:
    import pickle

    try:
        pickle.loads(pickle.dumps(exc))
        return True
    except Exception:  # noqa: BLE001 - any failure means "send a plain copy instead"
        return False


def _context():
    """fork where the platform has it (no pickling of the dataset), else the default."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if sys.platform.startswith("linux") and "fork" in methods else None)


def read_in_workers(dataset, batches: list[torch.Tensor], workers: int,
                    pin_memory: bool = False) -> Iterator[dict[str, torch.Tensor]]:
    """Yield the batch dicts of ``batches`` in order, read by ``workers`` processes.

    The windows are copied out of the slot (into pinned memory with ``pin_memory``), so a batch
    stays valid after the slot is reused. A worker's exception is raised here; a worker that dies
    raises a one-line ``RuntimeError``. The workers stop when the generator ends, is closed or
    collected, and at the latest when the interpreter exits.
    """
    workers = min(workers, len(batches))
    shape, dtype = _slot_shape(dataset, batches)
    slots = torch.empty((workers * PREFETCH, *shape), dtype=dtype).share_memory_()
    ctx, procs, conns, frees = _context(), [], [], []
    # At exit, before multiprocessing joins its children (which ignore its SIGTERM).
    stop = Finalize(None, _stop, args=(procs, conns), exitpriority=100)
    _cut_threads(workers)
    try:
        for k in range(workers):
            receive, send = ctx.Pipe(duplex=False)
            free = ctx.Semaphore(PREFETCH)
            proc = ctx.Process(target=_worker, daemon=True, name=f"seispolarity-data-{k}",
                               args=(dataset, batches, k, workers, slots, free, send, os.getpid()))
            proc.start()
            send.close()  # only the worker writes; its exit then ends our reads (EOFError)
            procs.append(proc), conns.append(receive), frees.append(free)
        for i in range(len(batches)):
            k = i % workers
            slot, count, small = _receive(conns[k], procs[k], k)
            window = slots[slot, :count]
            batch = {"waveforms": window.pin_memory() if pin_memory else window.clone()}
            frees[k].release()
            for key, value in small.items():
                value = torch.from_numpy(value)
                batch[key] = value.pin_memory() if pin_memory else value
            yield batch
    finally:
        stop()
        _give_threads_back()


def _cut_threads(workers: int) -> None:
    """This process keeps the cores the workers leave; the first open reader notes the count to restore."""
    if _open["readers"] == 0:
        _open["threads"] = torch.get_num_threads()
    _open["readers"] += 1
    torch.set_num_threads(max(1, min(torch.get_num_threads(), usable_cores() - workers)))


def _give_threads_back() -> None:
    _open["readers"] -= 1
    if _open["readers"] == 0:
        torch.set_num_threads(_open["threads"])


def _receive(conn, proc, k: int):
    try:
        message = conn.recv()
    except EOFError:
        proc.join(timeout=5)
        raise RuntimeError(f"data worker {k} exited unexpectedly (exit code {proc.exitcode}); "
                           "try trainer.num_workers=0 to read in this process") from None
    if message[0] == "error":
        raise message[1]
    return message


def _stop(procs, conns) -> None:
    for proc in procs:
        if proc.is_alive():
            proc.kill()
    for proc in procs:
        proc.join(timeout=5)
    for conn in conns:
        conn.close()


def usable_cores() -> int:
    """The CPU cores this process may use: its affinity mask (a container's cpuset), shared with
    the other ranks of a DDP job on the same node.

    torchrun starts every rank with the same mask (the node's), so each takes ``1/LOCAL_WORLD_SIZE``
    of it; without that, 8 ranks on 16 cores would each start workers and threads for 16. Under
    SLURM a task is allotted ``SLURM_CPUS_PER_TASK`` cores (its mask, where SLURM binds tasks).
    """
    mask = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    per_task = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if per_task.isdigit() and os.environ.get("SLURM_STEP_ID") is not None:  # inside a SLURM step
        return max(1, min(mask, int(per_task)))
    ranks_here = os.environ.get("LOCAL_WORLD_SIZE", "1")
    return max(1, mask // int(ranks_here)) if ranks_here.isdigit() and int(ranks_here) > 0 else mask
