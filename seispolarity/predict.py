"""Label traces with a trained checkpoint: ``python -m seispolarity.predict ckpt=... data=... out=picks.csv``.

Arguments (key=value, in any order):
    ckpt=PATH            a SeisPolarity checkpoint (best.ckpt, last.ckpt, an imported one, ...) or
                         pretrained:NAME, weights packaged with SeisPolarity
                         (python -m seispolarity.pretrained list)                          [required]
    data=PATH            an HDF5 file or data folder in any supported layout, or a .npy array
                         (N, L) / (N, C, L)                                                  [required]
    name=LAYOUT          layout of data: flat (default), synthetic, SCSN, INSTANCE, PNW, TXED, DiTing, ...
    out=PATH             the CSV to write (default picks.csv; missing folders are created)
    threshold=P          abstain (predict unknown) when the top probability is below P
    max_uncertainty=U    abstain when the model's uncertainty (RPNet MC dropout) is above U
    mc_samples=N         Monte-Carlo passes for models with MC dropout
    device=DEV           auto (default), cpu, cuda, cuda:1, mps
    batch_size=N         traces per forward pass (default 256)
    p_index=N            P sample of a .npy array (default: the centre)
    sampling_rate=HZ     sampling rate of a .npy array (default: the checkpoint's)
    skhash=PATH          also write an SKHASH polarity CSV (needs event ids and station codes in the data,
                         e.g. the evids and sncls datasets of an SCSN or flat file)
    data.KEY=VALUE       passed to WaveformDataset / the layout reader (e.g. data.components=Z,
                         data.max_traces=1000, data.label_map='{"U": 0, "D": 1}'); a key the layout
                         does not take is refused with the list of those it does

The CSV has one row per trace: index, the data's per-trace metadata (event_id, station, snr, ...),
prediction (0 up, 1 down, 2 unknown), polarity (U/D/X), probability, p_up, p_down[, p_unknown],
[uncertainty,] [label].
"""
from __future__ import annotations

import logging
import os
import sys
from typing import Any

from .cli_args import parse_value, reader_options_problem  # the package's key=value parser (check-labels, realism too)

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
    data_options: dict[str, Any] = {}
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
        print(f"error: {_one_line(exc, args, data_options)}", file=sys.stderr, flush=True)
        return 1


def _one_line(exc: BaseException, args: dict[str, Any], data_options: dict[str, Any]) -> str:
    """The error on one line, naming the argument or the file it is about."""
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    parts = [p.strip() for p in text.strip().splitlines() if p.strip()]
    line = "; ".join(parts[:2]) if parts else type(exc).__name__
    head, names_argument, _ = line.partition("=")  # "threshold='abc': ..." is about the argument, not a file
    if names_argument and head in data_options:  # the dataset's "normalize='x'; ..." is about data.normalize=
        return f"data.{line}"[:500]
    if names_argument and (head in KEYS or head.startswith("data.") and head[5:].isidentifier()):
        return line[:500]
    if not any(str(args.get(k, "")) and str(args.get(k)) in line for k in ("ckpt", "data", "out", "skhash", "device")):
        line = f"{getattr(exc, 'filename', None) or args.get('data')}: {line}"
    return line[:500]


def _predict(args: dict[str, Any], data_options: dict[str, Any]) -> int:
    from .inference import Predictor
    from .training.checkpoint import CheckpointError

    # everything the command line alone can get wrong is refused before the checkpoint is read
    data, out, skhash = str(args["data"]), str(args.get("out", "picks.csv")), args.get("skhash")
    is_array = data.endswith(".npy")
    _check_outputs(out, skhash)
    if is_array:
        if data_options:
            raise UsageExit(f"data.* options apply to data files and folders, not to .npy arrays: {data_options}")
        if skhash:
            _check_skhash(skhash, data, metadata={})
    else:
        for key in ("p_index", "sampling_rate"):
            if key in args:
                raise UsageExit(f"{key}= applies to .npy arrays; for files set data.{key}=... if the layout reads it")
        problem = reader_options_problem(args.get("name", "flat"), data_options, prefix="data.")
        if problem:  # a key the layout does not take: the command is wrong (2); a value of the wrong type: 1
            raise (UsageExit if problem[0] == 2 else ValueError)(problem[1])
    try:
        predictor = Predictor(args["ckpt"], device=args.get("device", "auto"), batch_size=args.get("batch_size", 256),
                              threshold=args.get("threshold"), max_uncertainty=args.get("max_uncertainty"),
                              mc_samples=args.get("mc_samples"))
    except RuntimeError as exc:  # weights that do not fit the model
        if isinstance(exc, CheckpointError):
            raise
        raise ValueError(f"{args['ckpt']}: {str(exc).strip().splitlines()[0]}") from None
    print(predictor, flush=True)
    if is_array:
        result = predictor.predict_arrays(_load_array(data), p_index=args.get("p_index"),
                                          sampling_rate=args.get("sampling_rate"))
    else:
        dataset = predictor.open_file(data, name=args.get("name", "flat"), **data_options)
        if skhash:  # the file's metadata is known now, before the predictions
            _check_skhash(skhash, data, dataset.metadata)
        result = predictor.predict_dataset(dataset)
    result.to_csv(out)
    counts = result.counts()
    print(f"wrote {len(result)} predictions to {out} (up {counts['up']}, down {counts['down']}, "
          f"unknown {counts['unknown']})", flush=True)
    if skhash:
        from .export import observations_from_result, write_skhash_polarities

        os.makedirs(os.path.dirname(os.path.abspath(skhash)), exist_ok=True)  # as out= (to_csv) does
        rows = write_skhash_polarities(skhash, observations_from_result(result))
        print(f"wrote {rows} polarities (SKHASH format) to {skhash}", flush=True)
    return 0


# -- checks before any work ----------------------------------------------------------------------------
def _check_outputs(out: str, skhash: str | None) -> None:
    """Each output can be written once the predictions are done (missing folders are made then)."""
    for key, path, example in (("out", out, "picks.csv"), ("skhash", skhash, "polarities.csv")):
        if path is None:
            continue
        path = str(path)
        if not path.strip():
            raise ValueError(f"{key}=: expected the path of the file to write, e.g. {key}={example}")
        if os.path.isdir(path):
            raise ValueError(f"{key}={path}: is a folder; expected the file to write, e.g. "
                             f"{key}={os.path.join(path, example)}")
        folder = os.path.dirname(os.path.abspath(path))
        while not os.path.exists(folder):
            folder = os.path.dirname(folder)
        if not os.path.isdir(folder):
            raise ValueError(f"{key}={path}: {folder} is a file, not a folder")
        if not os.access(folder, os.W_OK):
            raise ValueError(f"{key}={path}: no permission to write in {folder}")
    if skhash is not None and os.path.abspath(str(skhash)) == os.path.abspath(out):
        raise ValueError(f"skhash={skhash}: the same file as out=; give the SKHASH file another name")


def _check_skhash(skhash: str, data: str, metadata: dict[str, Any]) -> None:
    """An SKHASH row needs the trace's event id and station code (``export.observations_from_result``
    reads the ``event_id`` and ``station`` metadata); say what the data lacks and where it comes from."""
    missing = [what for key, what in (("event_id", "event ids"), ("station", "station codes")) if key not in metadata]
    if missing:
        raise ValueError(f"skhash={skhash}: {data} has no per-trace {' or '.join(missing)}; an SKHASH file needs both "
                         f"(e.g. the evids and sncls datasets of an SCSN or flat file, the source_id and station_code "
                         f"columns of SeisBench metadata); drop skhash= or predict data that has them")


def _load_array(path: str):
    """A ``.npy`` array; a missing file is reported as for HDF5 files."""
    import numpy as np

    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file or directory")
    if os.path.isdir(path):
        raise ValueError(f"{path}: is a folder; expected a .npy array (N, L) or (N, C, L)")
    try:
        return np.load(path)
    except ValueError as exc:  # not an array numpy wrote (or a pickle, which is never loaded)
        raise ValueError(f"{path}: not a readable .npy array ({str(exc).splitlines()[0]})") from None


if __name__ == "__main__":
    sys.exit(main())
