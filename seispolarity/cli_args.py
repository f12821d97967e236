"""``key=value`` command-line arguments, shared by the package's small commands.

``python -m seispolarity.data check-labels|realism`` parse their arguments with these functions,
``python -m seispolarity.predict`` its values: :func:`split_option` splits one argument, :func:`parse_value`
turns its text into a Python value, :func:`parse_option` adds the ``label_map=word:code,...``
shorthand.
"""
from __future__ import annotations

import inspect
import json
import typing
from typing import Any, Callable, Iterable

__all__ = ["split_option", "parse_value", "parse_label_map", "parse_option", "reader_options_problem"]


def split_option(arg: str) -> tuple[str, str] | None:
    """``max_traces=5`` or ``--max-traces=5`` -> ``("max_traces", "5")``; None when ``arg`` is not
    ``key=value`` (a positional argument such as a path)."""
    if "=" not in arg or arg.startswith("="):
        return None
    key, _, value = arg.partition("=")
    return key.strip().lstrip("-").replace("-", "_"), value


def parse_value(text: str) -> Any:
    """``1`` -> int, ``0.5`` -> float, true/false, null/none/~ -> None, JSON lists, maps and quoted
    strings; anything else is the string itself."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("null", "none", "~"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    if text.strip()[:1] in ('[', '{', '"'):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            pass
    return text


def parse_label_map(text: str) -> dict[str, int]:
    """``"positive:0,negative:1,undecidable:2"`` -> ``{"positive": 0, "negative": 1, "undecidable": 2}``
    (the word may itself hold colons: the code is after the last one)."""
    out = {}
    for item in text.split(","):
        if item.strip():
            word, _, code = item.rpartition(":")
            out[word.strip()] = int(code)
    return out


def parse_option(key: str, text: str) -> Any:
    """The value of option ``key``: ``label_map`` also takes the ``word:code,...`` shorthand."""
    if key == "label_map" and not text.lstrip().startswith("{"):
        return parse_label_map(text)
    return parse_value(text)


def reader_options_problem(name: str, options: dict[str, Any], prefix: str = "",
                           also: Iterable[Callable] = ()) -> tuple[int, str] | None:
    """The first option that layout ``name`` (``WaveformDataset``, its reader and the commands in
    ``also``) does not take, or takes with another type: ``(2, message)`` for an unknown key (the
    command is wrong), ``(1, message)`` for a value; None when all fit. ``prefix``: how the command
    spells the keys (``data.`` for predict)."""
    from .data.dataset import WaveformDataset
    from .data.readers import READERS

    reader = READERS.get(str(name).lower())
    if reader is None:
        return 1, f"name={name}: expected a layout, one of {', '.join(sorted(READERS))}"
    accepted: dict[str, Any] = {}
    for target in (WaveformDataset, reader, *also):
        accepted.update(_keywords(target))
    for key, value in options.items():
        if key not in accepted:
            return 2, (f"unknown option {prefix}{key} (name={name}); accepted: "
                       f"{', '.join(prefix + k for k in sorted(accepted))}")
        expected = _expected_value(accepted[key], value)
        if expected:
            return 1, f"{prefix}{key}={value!r}: expected {expected}"
    return None


def _keywords(target: Any) -> dict[str, Any]:
    """Keyword parameters of a function or class (or a ``functools.partial`` of one, as ``READERS``
    holds) -> type hints; those a command sets itself (path, name=, the reader's preset) left out."""
    target = getattr(target, "func", target)
    try:
        hints = typing.get_type_hints(target.__init__ if inspect.isclass(target) else target)
    except Exception:  # a hint that does not evaluate: the key is still accepted, its type unchecked
        hints = {}
    return {p.name: hints.get(p.name, Any) for p in inspect.signature(target).parameters.values()
            if p.name not in ("self", "path", "name", "preset") and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def _expected_value(hint: Any, value: Any) -> str | None:
    """What an option typed ``hint`` takes, when ``value`` is not that; None when it fits (or when
    the hint is not a plain bool / int / number: the reader checks those values itself)."""
    allowed = set(typing.get_args(hint)) or {hint}
    optional = type(None) in allowed
    allowed.discard(type(None))
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if allowed == {bool}:
        fits, expected = isinstance(value, bool), "true or false"
    elif allowed == {int}:
        fits, expected = is_number and isinstance(value, int), "an integer"
    elif allowed and allowed <= {int, float}:
        fits, expected = is_number, "a number"
    else:
        return None
    if optional:
        fits, expected = fits or value is None, expected + " or null"
    return None if fits else expected
