"""Counting host reads: where the training code copies a value from its device to Python.

On CUDA each such read (``bool(t)``, ``float(t)``, ``t.item()``, ``t.cpu()``, ``t.nonzero()``, ...)
waits for every queued kernel: a host sync. ``HostReads`` counts the ones made directly by
seispolarity's training code (``seispolarity/training/``), so the count means the same on the CPU,
where nothing syncs, as on CUDA: a per-step read shows up on any machine (``tests/test_nan_guards.py``,
``benchmarks/throughput.py``'s syncs row without a GPU). The data path's CPU-only branch lives in
``seispolarity/data`` and torch's own internals are not counted.
"""
from __future__ import annotations

import sys

from torch.overrides import TorchFunctionMode

#: Tensor methods and functions that copy a device value to the host.
READS = frozenset({"__bool__", "__float__", "__int__", "__index__", "item", "tolist", "cpu", "numpy", "nonzero"})
TRAINING_CODE = "seispolarity/training/"


class HostReads(TorchFunctionMode):
    """A ``with`` block that lists the host reads made by the training code (``reads``: "name at
    file:line" for each)."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") in READS:
            caller = sys._getframe(1)
            where = caller.f_code.co_filename.replace("\\", "/")
            if TRAINING_CODE in where:
                self.reads.append(f"{func.__name__} at {where.rsplit('/', 1)[-1]}:{caller.f_lineno}")
        return func(*args, **(kwargs or {}))
