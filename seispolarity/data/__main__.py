"""``python -m seispolarity.data <command> ...``: data utilities.

Commands:
    check-labels <path> name=<reader> [label_map=...] [max_traces=N] [json=true] [option=value ...]
        Per class (up/down/unknown): traces, mean sign of the first motion after P; verifies a
        label map on your copy of a data set (see seispolarity.data.check_labels).
    realism <path> [<path> ...] [name=<reader>|auto] [max_traces=N] [json=true] [option=value ...]
        Per file, side by side, the waveform statistics that decide first motions (up/down traces):
        SNR, first half-cycle ratio, 0.2 s mean sign, dominant frequency, rise time, noise slope,
        coda build-up; then the KS distance per pair of files (see seispolarity.data.realism).
"""
from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"check-labels": "seispolarity.data.check_labels", "realism": "seispolarity.data.realism"}
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(__doc__)
        return 0 if argv else 2
    command = argv[0].replace("_", "-")
    if command not in commands:
        print(f"error: unknown command {argv[0]!r}; choose one of {sorted(commands)}", file=sys.stderr)
        return 2
    import importlib

    return int(importlib.import_module(commands[command]).main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
