"""The step's numeric guards: the NaN guard and gradient clipping.

A non-finite loss or gradient norm raises ``NonFiniteLossError`` naming the step and the batch's
rows (``on_nan_loss=error``), or the batch is skipped (``on_nan_loss=skip``). On the CPU the guard
looks at each step as it happens. On CUDA with ``on_nan_loss=error`` each look would be a host sync
per step, so the guard keeps each step's loss and norm on the device and reads them all at once:
every ``log_every`` steps, at the epoch end and before any checkpoint. The error still names the
bad step and its rows, and no NaN reaches a checkpoint.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from .distributed import DistContext, any_rank

log = logging.getLogger("seispolarity.training")


class NonFiniteLossError(FloatingPointError):
    """A NaN or Inf loss, with the step and the batch's trace indices."""


def batch_rows(dataset, index: torch.Tensor | None) -> str:
    """The batch's traces as rows of the data file (what a user can look up), all of them."""
    if index is None:
        return "batch trace indices unknown"
    idx = index.detach().cpu().numpy()
    rows = getattr(dataset, "rows", None)
    values = [int(v) for v in (rows[idx] if rows is not None else idx)]
    path = getattr(dataset, "path", None)
    return f"batch trace rows{f' of {path}' if path else ''}: {values}"


@dataclass
class _Step:
    loss: torch.Tensor
    norm: torch.Tensor | None  # the total gradient norm (None where the scaler checks it: fp16)
    step: int
    epoch: int
    batch: int
    index: torch.Tensor | None

    def finite(self) -> torch.Tensor:
        ok = torch.isfinite(self.loss)
        return ok if self.norm is None else ok & torch.isfinite(self.norm)


class NanGuard:
    """The NaN guard of one Trainer (``on_nan_loss``: "error" or "skip").

    ``deferred`` (set on CUDA with "error"): the step's loss and norm are ``remember``-ed on the
    device and read by ``check``; otherwise ``loss_problem`` / ``norm_problem`` look at once.
    """

    def __init__(self, on_nan: str, deferred: bool, ctx: DistContext, device: torch.device, dataset,
                 optimizer: torch.optim.Optimizer | None = None) -> None:
        self.on_nan, self.deferred = on_nan, deferred
        self.ctx, self.device, self.dataset, self.optimizer = ctx, device, dataset, optimizer
        self.pending: list[_Step] = []

    @property
    def looks_later(self) -> bool:
        return self.deferred and self.on_nan == "error"

    def loss_problem(self, loss: torch.Tensor) -> str | None:
        """What is wrong with this step's loss, now (on any rank: one rank's NaN stops them all)."""
        if self.looks_later or not any_rank(not bool(torch.isfinite(loss)), self.ctx, self.device):
            return None
        return f"loss {float(loss)}"

    def norm_problem(self, norm: torch.Tensor | None, loss: torch.Tensor) -> str | None:
        """What is wrong with this step's gradient norm, now (the norm is the same on every rank)."""
        if self.looks_later or norm is None or bool(torch.isfinite(norm)):
            return None
        return f"gradient norm {float(norm)} (loss {float(loss):.4g})"

    def report(self, what: str, step: int, epoch: int, batch: int, index: torch.Tensor | None) -> None:
        """Raise ``NonFiniteLossError`` (``on_nan_loss=error``), or log the batch as skipped."""
        message = f"non-finite {what} at step {step} (epoch {epoch}, batch {batch}); {batch_rows(self.dataset, index)}"
        if self.on_nan == "error":
            raise NonFiniteLossError(message + "; the last good checkpoint is untouched "
                                               "(trainer.on_nan_loss=skip skips such batches)")
        log.warning("skipped batch: %s", message)

    def remember(self, loss: torch.Tensor, norm: torch.Tensor | None, step: int, epoch: int, batch: int,
                 index: torch.Tensor | None) -> None:
        self.pending.append(_Step(loss.detach(), norm, step, epoch, batch, index))

    def check(self, seen_at_step: int) -> None:
        """The deferred look (one host sync for every step remembered since the last): raise
        ``NonFiniteLossError`` naming the first non-finite step, on any rank, and its rows. The model
        then holds that step's update, but nothing of it has been written: every checkpoint comes
        after a look. A no-op when nothing was remembered (the per-step look)."""
        pending, self.pending = self.pending, []
        if not pending:
            return
        bad = (~torch.stack([s.finite() for s in pending]).cpu()).nonzero().flatten().tolist()
        if not any_rank(bool(bad), self.ctx, self.device):
            return
        if self.optimizer is not None:
            self.optimizer.zero_grad(set_to_none=True)  # the bad step's gradients go nowhere
        if not bad:
            raise NonFiniteLossError("non-finite loss or gradient norm on another rank; the last good checkpoint "
                                     "is untouched")
        s = pending[bad[0]]
        what = f"loss {float(s.loss)}" if not bool(torch.isfinite(s.loss)) else \
            f"gradient norm {float(s.norm)} (loss {float(s.loss):.4g})"
        raise NonFiniteLossError(f"non-finite {what} at step {s.step} (epoch {s.epoch}, batch {s.batch}); "
                                 f"{batch_rows(self.dataset, s.index)}; the last good checkpoint is untouched "
                                 f"(seen at step {seen_at_step}: the check runs every log_every steps on CUDA; "
                                 f"trainer.on_nan_loss=skip skips such batches)")


def gradient_norm(model: torch.nn.Module, scaler, device: torch.device) -> torch.Tensor | None:
    """The total gradient norm, for the NaN guard: a finite loss can still give Inf/NaN gradients
    (e.g. a huge-but-finite trace), and one such step would turn every weight into NaN. None with
    the fp16 grad scaler, which skips such steps itself."""
    if scaler.is_enabled():
        return None
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    return torch.nn.utils.get_total_norm(grads) if grads else torch.zeros((), device=device)


def clip_gradients(model: torch.nn.Module, scaler, optimizer, value: float | None, algorithm: str) -> None:
    """``gradient_clip_value`` by norm or by value (``gradient_clip_algorithm``); nothing when None."""
    if value is None:
        return
    scaler.unscale_(optimizer)  # clip the true gradients, not the fp16-scaled ones
    if algorithm == "value":
        torch.nn.utils.clip_grad_value_(model.parameters(), value)
    else:
        torch.nn.utils.clip_grad_norm_(model.parameters(), value)
