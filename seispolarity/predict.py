"""Label traces with a trained checkpoint: ``python -m seispolarity.predict ckpt=... data=... out=picks.csv``.

Arguments (key=value, in any order):
    ckpt=PATH            a SeisPolarity checkpoint (best.ckpt, last.ckpt, an imported one, ...) or
                         pretrained:NAME, weights packaged with SeisPolarity
                         (python -m seispolarity.pretrained list)                          [required]
    data=PATH            an HDF5 file or data folder in any supported layout, or a .npy array
                         (N, L) / (N, C, L)                                                  [required]
    name=LAYOUT          layout of data: flat (default), synthetic, SCSN, INSTANCE, PNW, TXED, DiTing, ...
    out=PATH             the CSV to write (default picks.csv)
    threshold=P          abstain (predict unknown) when the top probability is below P
    max_uncertainty=U    abstain when the model's uncertainty (RPNet MC dropout) is above U
    mc_samples=N         Monte-Carlo passes for models with MC dropout
    device=DEV           auto (default), cpu, cuda, cuda:1, mps
    batch_size=N         traces per forward pass (default 256)
    p_index=N            P sample of a .npy array (default: the centre)
    sampling_rate=HZ     sampling rate of a .npy array (default: the checkpoint's)
    skhash=PATH          also write an SKHASH polarity CSV (needs event ids and station codes in the data)
    data.KEY=VALUE       passed to WaveformDataset / the layout reader (e.g. data.components=Z,
                         data.max_traces=1000, data.label_map='{"U": 0, "D": 1}')

The CSV has one row per trace: index, the data's per-trace metadata (event_id, station, snr, ...),
prediction (0 up, 1 down, 2 unknown), polarity (U/D/X), probability, p_up, p_down[, p_unknown],
[uncertainty,] [label].
"""
from __future__ import annotations

import logging
import sys
from typing import Any

from .cli_args import parse_value  # the package's one key=value parser (check-labels, realism too)

USAGE = "usage: python -m seispolarity.predict ckpt=PATH data=PATH [name=LAYOUT] [out=picks.csv] [threshold=P] " \
        "[device=auto] [batch_size=256] [key=value ...]  (--help for all options)"
KEYS = {"ckpt", "data", "name", "out", "threshold", "max_uncertainty", "mc_samples", "device", "batch_size",
        "p_index", "sampling_rate", "skhash"}


class UsageExit(SystemExit):
    """A command line that cannot run: exit status 2, ``str()`` the message (printed by ``main``)."""

    def __init__(self, message: str) -> None:
        super().__init__(2)
        self.message = message

    def __str__(self) -> str:
        return self.message


def parse_args(argv: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    args: dict[str, Any] = {}
    data_options: dict[str, Any] = {}
    for item in argv:
        key, sep, value = item.partition("=")
        key = key.lstrip("-").strip()
        if not sep:
            raise UsageExit(f"argument {item!r} is not key=value\n{USAGE}")
        if key.startswith("data."):
            data_options[key[5:]] = parse_value(value)
        elif key in KEYS:
            args[key] = parse_value(value) if key not in ("ckpt", "data", "out", "skhash", "name", "device") else value
        else:
            raise UsageExit(f"unknown argument {key!r}; known: {', '.join(sorted(KEYS))}, data.KEY\n{USAGE}")
    for required in ("ckpt", "data"):
        if required not in args:
            raise UsageExit(f"missing {required}=...\n{USAGE}")
    return args, data_options


def main(argv: list[str] | None = None) -> int:
    """The command; returns its exit status: 0, 1 for bad input (one ``error:`` line naming the file
    and what is wrong), 2 for a command line that cannot run (with the usage)."""
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help", "help") for a in argv):
        print(__doc__)
        return 0
    if not argv:
        print(USAGE, file=sys.stderr)
        return 2
    args: dict[str, Any] = {}
    try:
        args, data_options = parse_args(argv)
        logging.basicConfig(level=logging.INFO, format="[%(levelname)s] %(message)s")
        return _predict(args, data_options)
    except UsageExit as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        raise
    except Exception as exc:  # bad input: one line; anything else: the traceback
        from .training.checkpoint import CheckpointError

        if not isinstance(exc, (OSError, ValueError, KeyError, CheckpointError)):
            raise
        print(f"error: {_one_line(exc, args)}", file=sys.stderr, flush=True)
        return 1


def _one_line(exc: BaseException, args: dict[str, Any]) -> str:
    """The error on one line, naming the file it is about."""
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    parts = [p.strip() for p in text.strip().splitlines() if p.strip()]
    line = "; ".join(parts[:2]) if parts else type(exc).__name__
    if not any(str(args.get(k, "")) and str(args.get(k)) in line for k in ("ckpt", "data", "out", "skhash", "device")):
        line = f"{getattr(exc, 'filename', None) or args.get('data')}: {line}"
    return line[:500]


def _predict(args: dict[str, Any], data_options: dict[str, Any]) -> int:
    import numpy as np

    from .inference import Predictor
    from .training.checkpoint import CheckpointError

    try:
        predictor = Predictor(args["ckpt"], device=args.get("device", "auto"),
                              batch_size=int(args.get("batch_size", 256)), threshold=args.get("threshold"),
                              max_uncertainty=args.get("max_uncertainty"), mc_samples=args.get("mc_samples"))
    except RuntimeError as exc:  # weights that do not fit the model
        if isinstance(exc, CheckpointError):
            raise
        raise ValueError(f"{args['ckpt']}: {str(exc).strip().splitlines()[0]}") from None
    print(predictor, flush=True)
    data = str(args["data"])
    if data.endswith(".npy"):
        if data_options:
            raise UsageExit(f"data.* options apply to data files and folders, not to .npy arrays: {data_options}")
        result = predictor.predict_arrays(np.load(data), p_index=args.get("p_index"),
                                          sampling_rate=args.get("sampling_rate"))
    else:
        for key in ("p_index", "sampling_rate"):
            if key in args:
                raise UsageExit(f"{key}= applies to .npy arrays; for files set data.{key}=... if the layout reads it")
        result = predictor.predict_file(data, name=args.get("name", "flat"), **data_options)
    out = args.get("out", "picks.csv")
    result.to_csv(out)
    counts = result.counts()
    print(f"wrote {len(result)} predictions to {out} (up {counts['up']}, down {counts['down']}, "
          f"unknown {counts['unknown']})", flush=True)
    if args.get("skhash"):
        from .export import observations_from_result, write_skhash_polarities

        try:
            observations = observations_from_result(result)
        except ValueError as exc:
            print(f"no SKHASH file: {exc} (the data has no per-trace event ids / station codes)", file=sys.stderr)
            return 2
        rows = write_skhash_polarities(args["skhash"], observations)
        print(f"wrote {rows} polarities (SKHASH format) to {args['skhash']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
