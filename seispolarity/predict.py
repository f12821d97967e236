"""Label traces with a trained checkpoint: ``python -m seispolarity.predict ckpt=... data=... out=picks.csv``.

Arguments (key=value, in any order):
    ckpt=PATH            a SeisPolarity checkpoint (best.ckpt, last.ckpt, ...)            [required]
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

import json
import logging
import sys
from typing import Any

USAGE = "usage: python -m seispolarity.predict ckpt=PATH data=PATH [name=LAYOUT] [out=picks.csv] [threshold=P] " \
        "[device=auto] [batch_size=256] [key=value ...]  (--help for all options)"
KEYS = {"ckpt", "data", "name", "out", "threshold", "max_uncertainty", "mc_samples", "device", "batch_size",
        "p_index", "sampling_rate", "skhash"}


def parse_value(text: str) -> Any:
    """``1`` -> int, ``0.5`` -> float, true/false, null/none, JSON lists/maps; otherwise the string."""
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
    if text[:1] in "[{":
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            pass
    return text


def parse_args(argv: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    args: dict[str, Any] = {}
    data_options: dict[str, Any] = {}
    for item in argv:
        key, sep, value = item.partition("=")
        key = key.lstrip("-").strip()
        if not sep:
            raise SystemExit(f"argument {item!r} is not key=value\n{USAGE}")
        if key.startswith("data."):
            data_options[key[5:]] = parse_value(value)
        elif key in KEYS:
            args[key] = parse_value(value) if key not in ("ckpt", "data", "out", "skhash", "name", "device") else value
        else:
            raise SystemExit(f"unknown argument {key!r}; known: {', '.join(sorted(KEYS))}, data.KEY\n{USAGE}")
    for required in ("ckpt", "data"):
        if required not in args:
            raise SystemExit(f"missing {required}=...\n{USAGE}")
    return args, data_options


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or any(a in ("-h", "--help", "help") for a in argv):
        print(__doc__)
        return 0
    logging.basicConfig(level=logging.INFO, format="[%(levelname)s] %(message)s")
    args, data_options = parse_args(argv)
    import numpy as np

    from .inference import Predictor

    predictor = Predictor(args["ckpt"], device=args.get("device", "auto"), batch_size=int(args.get("batch_size", 256)),
                          threshold=args.get("threshold"), max_uncertainty=args.get("max_uncertainty"),
                          mc_samples=args.get("mc_samples"))
    print(predictor, flush=True)
    data = str(args["data"])
    if data.endswith(".npy"):
        if data_options:
            raise SystemExit(f"data.* options apply to data files and folders, not to .npy arrays: {data_options}")
        result = predictor.predict_arrays(np.load(data), p_index=args.get("p_index"),
                                          sampling_rate=args.get("sampling_rate"))
    else:
        for key in ("p_index", "sampling_rate"):
            if key in args:
                raise SystemExit(f"{key}= applies to .npy arrays; for files set data.{key}=... if the layout reads it")
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
