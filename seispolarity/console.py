"""What a run shows on the terminal: progress bars on long steps, log lines that share the terminal
with them, and, for the plain Python API, one log line per epoch without any logging set-up.

- ``bar(total, desc)``: a tqdm bar on stderr when stderr is a terminal (else None), that clears
  itself when done (``leave=False``); callers ``update`` and ``close`` it.
- ``logs_above_bars()``: while bars are shown, console log handlers write through ``tqdm.write``
  (tqdm's logging redirection, keeping each handler's level, filters and format), so a log line
  never lands on the line of a bar (``...loss=1.6984][2026-11-30 20:38:52,304][seispolarity...``).
- ``default_console_logging()``: the Trainer calls it; when the program has configured no logging at
  all (no handler on the root logger or on ``seispolarity``), the ``seispolarity`` loggers print
  INFO lines to stderr (``epoch 3/10: train loss ... acc ..., val loss ... acc ... (N samples/s)``),
  without the per-step lines. Configure logging yourself (``logging.basicConfig(...)``) and this
  handler steps aside.
"""
from __future__ import annotations

import contextlib
import logging
import sys
from typing import Any, Iterator

PACKAGE_LOGGER = "seispolarity"


def is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def bar(total: int, desc: str, unit: str = "it", enabled: bool = True, initial: int = 0, delay: float = 0.0):
    """A progress bar, or None when disabled, empty or not on a terminal (``delay``: seconds before
    it first shows)."""
    if not enabled or total <= 0 or not is_terminal():
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, initial=initial, leave=False, dynamic_ncols=True, delay=delay)


class _AboveBars:
    """A console handler's stream that writes with ``tqdm.write``: the bars are cleared, the line is
    printed, the bars are drawn again below it."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        if text:
            from tqdm import tqdm

            tqdm.write(text, file=self.stream, end="")

    def flush(self) -> None:
        self.stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def _console_handlers() -> list[logging.StreamHandler]:
    found = []
    for name in ("", PACKAGE_LOGGER):
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, _PlainApiConsole) or (
                    isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler)
                    and getattr(handler, "stream", None) in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)):
                found.append(handler)
    return found


@contextlib.contextmanager
def logs_above_bars(enabled: bool = True) -> Iterator[None]:
    """Route the console log handlers through ``tqdm.write`` while bars may be shown (a no-op when
    not on a terminal or when already routed)."""
    if not enabled or not is_terminal():
        yield
        return
    swapped = []
    for handler in _console_handlers():
        if isinstance(handler.stream, _AboveBars):
            continue  # routed already (an evaluation inside training)
        swapped.append((handler, handler.stream))
        handler.stream = _AboveBars(handler.stream)
    try:
        yield
    finally:
        for handler, stream in swapped:
            handler.stream = stream


class _PlainApiConsole(logging.StreamHandler):
    """The default console of the plain API: INFO and above, no per-step lines, and only while the
    program has no logging of its own (a handler on the root logger takes over)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self.setFormatter(logging.Formatter("%(message)s"))
        self.setLevel(logging.INFO)

    def filter(self, record: logging.LogRecord) -> bool:
        if logging.getLogger().handlers:  # the program configured logging: step aside for good
            package = logging.getLogger(PACKAGE_LOGGER)
            package.removeHandler(self)
            if getattr(self, "set_level", False) and package.level == logging.INFO:
                package.setLevel(logging.NOTSET)
            return False
        return not getattr(record, "per_step", False) and super().filter(record)

    def emit(self, record: logging.LogRecord) -> None:
        if not isinstance(self.stream, _AboveBars):
            self.stream = sys.stderr  # follow a redirected stderr
        super().emit(record)


def default_console_logging() -> None:
    """Give the ``seispolarity`` loggers a console when nothing is configured (idempotent)."""
    package = logging.getLogger(PACKAGE_LOGGER)
    if logging.getLogger().handlers or package.handlers:
        return
    handler = _PlainApiConsole()
    package.addHandler(handler)
    if package.level == logging.NOTSET:
        package.setLevel(logging.INFO)
        handler.set_level = True


__all__ = ["bar", "logs_above_bars", "default_console_logging", "is_terminal"]
