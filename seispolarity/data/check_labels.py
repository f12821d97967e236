"""Sign check of a label map: per class, the mean sign of the first motion after P.

If a map is right, traces labelled up start clearly positive (mean sign near +1) and traces
labelled down clearly negative; a flipped map shows the opposite, and unknown sits near 0 or
has few detectable onsets. Run it on your own copy before training:

    python -m seispolarity.data check-labels <path> name=<reader> [label_map=...] [max_traces=N]

Any registered reader name works (``seispolarity.data.readers.READERS``); further ``key=value``
pairs are passed to the reader (e.g. ``components=Z``, ``csv_path=...``).
"""
from __future__ import annotations

import json
import sys
from typing import Any, Mapping

import numpy as np

from ..baselines import first_break_polarity
from ..cli_args import parse_option, split_option
from .labels import CLASS_NAMES, DOWN, UNKNOWN, UP

__all__ = ["first_motion_sign", "check_labels", "format_report", "main"]

#: Label code -> sign of the first motion (unknown: no onset found).
CODE_SIGN = np.zeros(3, dtype=np.int8)
CODE_SIGN[[UP, DOWN, UNKNOWN]] = [1, -1, 0]


def first_motion_sign(windows: np.ndarray, p_index: int | np.ndarray, sampling_rate: float = 100.0,
                      noise_seconds: float = 0.5, search_seconds: float = 0.5, threshold: float = 3.0,
                      channel: int = 0) -> np.ndarray:
    """Sign (+1, -1, or 0 when no onset is found) of each trace's first motion after P.

    This is the first-break picker :func:`seispolarity.baselines.first_break_polarity` with this
    check's parameters: the noise is the ``noise_seconds`` right before P (no gap); the first
    motion is the first sample from P to ``search_seconds`` after it (no tolerance before P)
    whose departure from the noise mean exceeds ``threshold`` x the noise standard deviation;
    its sign is the sign of that departure. This ignores the pre-P offset, is not fooled by a
    later, larger phase, and gives 0 (undetermined) on traces whose onset never stands out of
    the noise.

    Args:
        windows: ``(N, C, L)`` or ``(N, L)`` waveforms.
        p_index: the P sample in each window (int or ``(N,)``).
        channel: which channel of a 3-D array (0: the vertical in the default "Z" selection).
    """
    x = np.asarray(windows, dtype=np.float64)
    if x.ndim == 3:
        x = x[:, channel, :]
    if x.ndim != 2:
        raise ValueError(f"windows must be (N, C, L) or (N, L), got shape {np.shape(windows)}")
    codes = first_break_polarity(x, p_index, sampling_rate, k=threshold, noise_window=noise_seconds,
                                 noise_gap=0.0, tolerance=0.0, search_window=search_seconds)
    return CODE_SIGN[codes]


def check_labels(path: str, name: str, label_map: Any = None, max_traces: int = 1000, seed: int = 0,
                 noise_seconds: float = 0.5, search_seconds: float = 0.5, threshold: float = 3.0,
                 batch: int = 512, **options: Any) -> dict[str, Any]:
    """Per class: traces in the data, traces checked (at most ``max_traces`` per class, a seeded
    random sample), onsets found, mean first-motion sign and share positive (over found onsets)."""
    from .readers import make_reader

    if label_map is not None:
        options["label_map"] = label_map
    reader = make_reader(name, path, **options)
    table = reader.table
    rate = float(table.sampling_rate)
    n_noise = max(2, int(round(noise_seconds * rate)))
    n_search = max(1, int(round(search_seconds * rate)))
    rng = np.random.default_rng(seed)
    classes: dict[str, Any] = {}
    for code, cname in enumerate(CLASS_NAMES):
        rows = np.flatnonzero(table.labels == code)
        if len(rows) > max_traces:
            rows = np.sort(rng.choice(rows, size=int(max_traces), replace=False))
        signs = []
        for b in range(0, len(rows), batch):
            chunk = rows[b:b + batch]
            # the noise before P, P, and the search window after it (its last sample included)
            windows = reader.read_windows(chunk, table.p_index[chunk] - n_noise, n_noise + n_search + 1)
            signs.append(first_motion_sign(windows, n_noise, rate, noise_seconds, search_seconds, threshold))
        s = np.concatenate(signs) if signs else np.zeros(0, dtype=np.int8)
        found = s[s != 0]
        classes[cname] = {
            "code": code,
            "traces": int((table.labels == code).sum()),
            "checked": int(len(s)),
            "onsets": int(len(found)),
            "mean_sign": float(found.mean()) if len(found) else float("nan"),
            "positive_share": float((found > 0).mean()) if len(found) else float("nan"),
        }
    reader.close()
    up, down = classes["up"]["mean_sign"], classes["down"]["mean_sign"]
    if np.isnan(up) or np.isnan(down):
        verdict = "not enough up and down onsets to judge the map"
    elif up > 0.2 and down < -0.2:
        verdict = "map looks right: up starts positive, down negative"
    elif up < -0.2 and down > 0.2:
        verdict = "map looks FLIPPED: traces labelled up start negative and down positive; swap the up/down codes"
    else:
        verdict = "ambiguous: up and down are not clearly of opposite sign (noisy picks or a wrong map)"
    return {"path": str(path), "name": name, "label_map": table.label_map, "sampling_rate": rate,
            "definition": {"noise_seconds": noise_seconds, "search_seconds": search_seconds,
                           "threshold": threshold}, "classes": classes, "verdict": verdict}


def format_report(report: Mapping[str, Any]) -> str:
    d = report["definition"]
    lines = [
        f"check-labels {report['path']} (name={report['name']}, label_map={report['label_map']})",
        f"first motion = sign of the first sample within {d['search_seconds']:g} s at/after P that departs from "
        f"the pre-P mean by > {d['threshold']:g} x the noise std of the {d['noise_seconds']:g} s before P",
        f"{'class':<8} {'code':>4} {'traces':>9} {'checked':>8} {'onsets':>7} {'mean_sign':>10} {'positive':>9}",
    ]
    for cname, c in report["classes"].items():
        lines.append(f"{cname:<8} {c['code']:>4d} {c['traces']:>9d} {c['checked']:>8d} {c['onsets']:>7d} "
                     f"{c['mean_sign']:>+10.3f} {c['positive_share']:>9.3f}")
    lines.append(f"verdict: {report['verdict']}")
    return "\n".join(lines)


USAGE = ("usage: python -m seispolarity.data check-labels <path> name=<reader> [label_map=JSON|word:code,...] "
         "[max_traces=N] [json=true] [reader option=value ...]")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    path = None
    options: dict[str, Any] = {}
    for arg in argv:
        option = split_option(arg)
        if option is not None:
            options[option[0]] = parse_option(*option)
        elif path is None:
            path = arg
        else:
            print(f"error: unexpected argument {arg!r}\n{USAGE}", file=sys.stderr)
            return 2
    path = options.pop("path", path)
    name = options.pop("name", None)
    as_json = bool(options.pop("json", False))
    if path is None or name is None:
        print(f"error: give the data path and name=<reader>\n{USAGE}", file=sys.stderr)
        return 2
    import logging

    from ..cli_args import reader_options_problem

    problem = reader_options_problem(str(name), options, also=[check_labels])
    if problem:
        print(f"error: {problem[1]}", file=sys.stderr)
        return problem[0]
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        report = check_labels(str(path), str(name), **options)
    except (ValueError, FileNotFoundError, TypeError, KeyError) as exc:  # DataFormatError / LabelError
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=2, default=str) if as_json else format_report(report))
    return 0
