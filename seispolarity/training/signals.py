"""Stopping a run on a signal at the next step boundary, with a resumable checkpoint.

``StopRequest`` is a context manager: inside it SIGINT, SIGTERM, SIGUSR1 and SIGUSR2 only set a
flag that the training loop looks at between steps; on exit the handlers installed before are
back. The loop then writes ``last.ckpt`` and raises ``TrainingInterrupted`` (docs/robustness.md).
"""
from __future__ import annotations

import logging
import signal
import threading
from typing import Any

import torch

from .distributed import DistContext, any_rank

log = logging.getLogger("seispolarity.training")


class TrainingInterrupted(RuntimeError):
    """Raised after a signal: a resumable checkpoint has been written."""

    def __init__(self, signum: int, checkpoint: str | None) -> None:
        self.signum = signum
        self.checkpoint = checkpoint
        name = signal.Signals(signum).name
        where = (f"; checkpoint written to {checkpoint}; resume with ckpt_path={checkpoint} "
                 f"(or TrainingConfig(resume_from=...))") if checkpoint else "; no checkpoint written (save_dir=None)"
        super().__init__(f"training stopped by {name}{where}")

    def __reduce__(self):  # picklable (launchers ship a job's exception to the parent process)
        return type(self), (self.signum, self.checkpoint)


def stop_signals() -> list[int]:
    # SIGUSR1 / SIGUSR2: SLURM's advance warning (--signal=USR1@90; submitit uses USR2 by default)
    names = ("SIGINT", "SIGTERM", "SIGUSR1", "SIGUSR2")
    return [getattr(signal, name) for name in names if hasattr(signal, name)]


class StopRequest:
    """``with StopRequest() as stop:`` ... ``stop.signum`` is the signal received, or None.

    Signal handlers can only be installed from the main thread; elsewhere (a launcher's thread)
    nothing is installed and the run cannot be stopped this way. Re-entering resets the flag, so a
    Trainer stopped by a signal can train again.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        self.signum = None
        self.previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in stop_signals():
                self.previous[sig] = signal.getsignal(sig)
                signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *exc) -> None:
        self._restore()

    def _restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous = {}

    def _on_signal(self, signum, frame) -> None:  # (frame: the signal module's handler signature)
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C stops at once
        # Only set the flag: logging here could re-enter a log handler that the signal interrupted
        # mid-write (a "reentrant call" error); the loop logs it at the next step boundary.
        self.signum = signum

    def on_any_rank(self, ctx: DistContext, device: torch.device) -> bool:
        """Whether any rank was signalled: every rank stops at the same step boundary."""
        flag = any_rank(self.signum is not None, ctx, device)
        if flag and self.signum is None:  # another rank was signalled
            self.signum = signal.SIGTERM
        return flag

    def pass_on(self) -> None:
        """After the checkpoint, hand the signal to the Python handler installed before training,
        if any (submitit's pre-emption handler: it requeues the job, which then resumes from
        ``last.ckpt``, and exits). Python's own Ctrl-C handler is not called."""
        handler = self.previous.get(self.signum) if self.signum is not None else None
        if not callable(handler) or handler is signal.default_int_handler:
            return
        log.warning("passing %s on to the handler installed before training (%s)", signal.Signals(self.signum).name,
                    getattr(handler, "__qualname__", handler))
        signum = self.signum
        self._restore()
        handler(signum, None)
