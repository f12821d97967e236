"""How a run that stops early tells the user: one clear line on stderr, the traceback in train.log.

Used by ``runner.run`` (the Hydra side; the library below raises plain exceptions):
- a signal (``TrainingInterrupted``): the Trainer has written ``last.ckpt``; print one line with
  the command that resumes, exit ``128 + signum`` (130 SIGINT, 143 SIGTERM, 138 SIGUSR1), also in
  a multirun (Ctrl-C stops the whole sweep; a submitit job ends with that code);
- bad input or config (a file that does not match its layout, a label outside the map, an
  unreadable checkpoint, a non-finite loss, a folder that cannot be written, ...): one line
  ``error: <cause>`` on stderr and exit 1 for a single run; in a multirun the job fails and Hydra
  carries on with the others;
- anything else is a bug: the traceback, once, on the terminal (and in train.log).

Each error is printed once. A run that fails after its folder exists leaves a ``FAILED`` file there
(the error's first line; a later successful resume removes it); a command refused before it starts
(``UsageError``, the ``Preflight`` checks) leaves no folder. In a multirun a failing job prints one
line (``job N failed: ...``), keeps its traceback in its own ``train.log`` and the sweep carries on;
the command ends with one line and exit 1 (``JobFailed``), and ``summary.csv`` / ``summary.md``
list every job with its status.
"""
from __future__ import annotations

import logging
import os
import re
import shlex
import signal
import sys
import traceback
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.errors import CompactHydraException, InstantiationException
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from .folders import writable_folder_problem
from .launch import hydra_quote
from .training.checkpoint import CheckpointError
from .training.trainer import TrainingInterrupted

log = logging.getLogger("seispolarity.runner")

#: Exceptions that describe bad input or config (their message names the file / key / value).
USER_ERRORS = (ValueError, KeyError, OSError, CheckpointError, FloatingPointError)


class UsageError(ValueError):
    """A command that cannot run as given (e.g. ``train=false`` without ``ckpt_path``): one line on
    stderr, exit 2, nothing logged to the console."""

    exit_code = 2


#: The file that marks a run folder whose run failed (its first line: the error).
FAILED_FILE = "FAILED"


class JobFailed(CompactHydraException):
    """A multirun job that failed (its traceback is in its train.log). Hydra prints ``str()`` of the
    first one when the sweep ends, after every job ran: one line with the sweep's tally."""

    def __init__(self, job: str, message: str, sweep_dir: str | None) -> None:
        super().__init__(message)
        self.job, self.message, self.sweep_dir = job, message, sweep_dir

    def __reduce__(self):  # picklable (joblib and submitit ship it back to the parent process)
        return type(self), (self.job, self.message, self.sweep_dir)

    def __str__(self) -> str:
        if not self.sweep_dir:
            return f"error: job {self.job} failed: {self.message}"
        try:  # counted when printed, i.e. when the sweep has ended
            from .runner import collect_sweep

            rows = collect_sweep(Path(self.sweep_dir))
            failed = sum(r.get("status") != "ok" for r in rows)
            tally = f"{failed} of {len(rows)} jobs failed"
        except Exception:  # the line must print whatever the folder holds
            tally = f"job {self.job} failed"
        return f"error: {tally}; every job's status and error: {Path(self.sweep_dir) / 'summary.md'}"


def user_error(exc: BaseException) -> BaseException | None:
    """The user-facing cause of ``exc`` (unwrapping Hydra's InstantiationException), or None."""
    wrapped = False
    while isinstance(exc, InstantiationException) and exc.__cause__ is not None:
        exc, wrapped = exc.__cause__, True
    if isinstance(exc, USER_ERRORS) or (wrapped and isinstance(exc, TypeError)):
        return exc
    return None


def one_line(exc: BaseException) -> str:
    """The exception's message on one line (KeyError without its quotes)."""
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    parts = [p.strip() for p in text.strip().splitlines() if p.strip()]
    return "; ".join(parts) if parts else type(exc).__name__


def override_value(value: str) -> str:
    """``value`` as a Hydra override value: bare when the grammar allows it, else quoted."""
    if re.fullmatch(r"[A-Za-z0-9_./\-+:%@~]+", value):
        return value
    return hydra_quote(value)


def resume_command(checkpoint: str) -> str:
    """``python train.py <this run's overrides> ckpt_path=<checkpoint>``, ready for a shell."""
    try:
        overrides = list(HydraConfig.get().overrides.task)
    except ValueError:
        overrides = []
    keep = [o for o in overrides if not o.lstrip("+~").startswith(("ckpt_path=", "hydra.run.dir="))]
    keep.append(f"ckpt_path={override_value(checkpoint)}")
    return launcher_command() + " train.py " + " ".join(shlex.quote(o) for o in keep)


def launcher_command() -> str:
    """How this process was started: ``python``, or torchrun with as many processes (a DDP run
    resumes in as many, with ``trainer=ddp``; one process would refuse it)."""
    world, local = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("LOCAL_WORLD_SIZE", "0") or 0)
    if world <= 1 or not local:
        return "python"
    nodes = max(1, world // local)
    if nodes == 1:
        return f"torchrun --standalone --nproc_per_node={local}"
    return f"torchrun --nnodes={nodes} --nproc_per_node={local} <your rendezvous options>"


def say(line: str) -> None:
    """One line on stderr, from one process: under torchrun every rank fails or stops alike, and
    rank 0 speaks for them."""
    if int(os.environ.get("RANK", "0")) == 0:
        print(line, file=sys.stderr, flush=True)


#: How the lines (and FAILED marks) of a run stopped by a signal begin: ``interrupted_message``,
#: ``report_interrupt`` (a sweep's summary reads them as "interrupted", not "failed").
INTERRUPTED = ("training stopped by ", "interrupted (")


def interrupted_message(exc: TrainingInterrupted) -> str:
    name = signal.Signals(exc.signum).name
    if not exc.checkpoint:
        return f"training stopped by {name}; no checkpoint was written (trainer.save_dir is null)"
    return f"training stopped by {name}; checkpoint written to {exc.checkpoint}; resume with: " \
           f"{resume_command(exc.checkpoint)}"


def report_interrupt(save_dir: str | None) -> None:
    """Ctrl-C outside the training loop (the loop itself stops at a step boundary with a checkpoint):
    while the data is read or generated, or while testing. Marks the run folder; for a CLI run,
    prints one line and exits 130. Returns (for the caller to re-raise) otherwise."""
    last = Path(save_dir) / "last.ckpt" if save_dir else None
    if last is not None and last.is_file():
        line = (f"interrupted (SIGINT) outside training; last checkpoint: {last}; "
                f"resume with: {resume_command(str(last))}")
    else:  # the synthetic cache is written whole or not at all (synthetic.ensure_synthetic)
        line = "interrupted (SIGINT) before training started; nothing was trained: run the command again"
    mark_failed(line)
    _to_log_file_only(line, logging.WARNING)
    if _mode() is not None:
        say(line)
        raise SystemExit(128 + signal.SIGINT) from None


def _mode() -> RunMode | None:
    try:
        return HydraConfig.get().mode
    except ValueError:  # composed without @hydra.main (the compose API): leave exceptions alone
        return None


def _to_log_file_only(text: str, level: int = logging.ERROR) -> None:
    """Write ``text`` to the run's log file handlers (train.log), not to the console."""
    record = log.makeRecord(log.name, level, __file__, 0, text, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def _job() -> tuple[str, str | None, str | None]:
    """(job number, sweep folder, this job's folder) of a multirun job."""
    try:
        hydra = HydraConfig.get()
        return str(hydra.job.num), str(hydra.sweep.dir), str(hydra.runtime.output_dir)
    except Exception:  # not a multirun job (or composed without @hydra.main)
        return "?", None, None


def run_folder() -> Path | None:
    try:
        return Path(HydraConfig.get().runtime.output_dir)
    except Exception:  # composed without @hydra.main
        return None


def mark_failed(message: str) -> None:
    """Write ``FAILED`` (the error's line) into the run folder, if the run has one."""
    folder = run_folder()
    if folder is None or not folder.is_dir():
        return
    try:
        (folder / FAILED_FILE).write_text(f"{message}\n(the traceback, if any, is in train.log)\n")
    except OSError:
        pass


def clear_failed() -> None:
    """A run that finished: remove the ``FAILED`` mark an earlier attempt (resumed now) left."""
    folder = run_folder()
    if folder is not None:
        (folder / FAILED_FILE).unlink(missing_ok=True)


def report_failure(exc: BaseException) -> None:
    """Log ``exc`` the way its kind deserves; for a CLI run, print one line and exit.

    Returns (for the caller to re-raise) when the exception should propagate.
    """
    mode = _mode()
    if isinstance(exc, TrainingInterrupted):
        line = interrupted_message(exc)
        if mode is not None:
            _to_log_file_only(line, logging.WARNING)  # the terminal gets it once, below
            if mode == RunMode.MULTIRUN:  # the sweep summary's row for this job: how to resume it
                mark_failed(line)
            say(line)
            raise SystemExit(128 + int(exc.signum)) from None
        log.warning("%s", line)
        return
    cause = user_error(exc)
    if cause is None and mode is None:
        log.error("run failed:\n%s", traceback.format_exc())
        return
    message = one_line(cause) if cause is not None else f"{type(exc).__name__}: {one_line(exc)}"
    if isinstance(cause, UsageError):
        _to_log_file_only(f"run refused: {message}")
        if mode == RunMode.MULTIRUN:  # the job's folder exists: its row in the summary says why
            mark_failed(message)
    elif mode is None:  # in-process (compose API): the caller's logging and the exception itself
        log.error("run failed: %s", message)
    else:
        # train.log only: the terminal gets one line below (or, for a bug, Hydra's traceback)
        _to_log_file_only(f"run failed: {message}")
        _to_log_file_only("traceback of the failure above:\n" + traceback.format_exc())
        mark_failed(message)
    if mode == RunMode.RUN:
        if cause is None:
            return  # a bug: Hydra prints its traceback, once
        say(f"error: {message}")
        raise SystemExit(getattr(cause, "exit_code", 1)) from None
    if mode == RunMode.MULTIRUN:
        job, sweep, folder = _job()
        where = f" (traceback: {Path(folder) / 'train.log'})" if folder and not isinstance(cause, UsageError) else ""
        say(f"job {job} failed: {message}{where}")
        raise JobFailed(job, message, sweep) from None


class CheckOutputDir(Callback):
    """Hydra callback: before a run or sweep starts, check that its folder can be written, so an
    unwritable ``paths.log_dir`` / ``hydra.run.dir`` is one ``error:`` line, not Hydra's traceback.

    Nothing is created: the nearest existing parent folder is probed with a temporary file.
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config.hydra.run.dir, "run")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config.hydra.sweep.dir, "sweep")

    @staticmethod
    def _check(folder: str, what: str) -> None:
        problem = writable_folder_problem(str(folder))
        if problem:
            print(f"error: cannot write the {what} folder {folder}: {problem} (set paths.log_dir or "
                  f"hydra.{what}.dir to a writable folder)", file=sys.stderr, flush=True)
            raise SystemExit(1)
