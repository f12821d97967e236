"""``key=value`` command-line arguments, shared by the package's small commands.

``python -m seispolarity.data check-labels|realism`` parse their arguments with these functions,
``python -m seispolarity.predict`` its values: :func:`split_option` splits one argument, :func:`parse_value`
turns its text into a Python value, :func:`parse_option` adds the ``label_map=word:code,...``
shorthand.
"""
from __future__ import annotations

import json
from typing import Any

__all__ = ["split_option", "parse_value", "parse_label_map", "parse_option"]


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
