"""Build a real validation file from the Kumamoto example of the RPNet repository (not shipped here).

    git clone https://github.com/jongwon-han/RPNet /data/RPNet      # MIT licence
    python benchmarks/kumamoto_set.py /data/RPNet [--out /data/kumamoto_rpnet.hdf5]
    python train.py train=false ckpt_path=pretrained:ppnet-synthetic \\
        'eval_sets={kumamoto: {name: SCSN, path: /data/kumamoto_rpnet.hdf5}}'

What it reads: ``example/Kumamoto_phase.csv`` (one row per pick: ``event_id``, ``data_id`` (the
waveform folder), ``sta``, ``ptime`` (ISO time), ``pol``) and ``example/waveform/<data_id>/<sta>.U.SAC``
(vertical, 100 Hz). Two events of the 2016 Kumamoto sequence (JMA M4.4 and M4.0), Hi-net, JMA and
university stations. Kept: the picks with ``pol`` U or D and a waveform (60 traces: 45 up, 15 down,
at the repository's commit 546c6b6b); ``pol`` K (not documented there) and picks without a waveform
are left out. The labels are the catalogue's first motions, not a network's output.

What it writes, the SCSN layout (``data=scsn``, ``WaveformDataset(path, name="SCSN")``): ``X`` float32
(N, 600), P at sample 300 (3 s either side), demeaned on the 300 samples before P, in the SAC file's
units; ``Y`` int64 (0 up, 1 down); ``sncls`` (``<station>..U|<event>``); attribute ``source``.
Validation only: never train on it.
"""
from __future__ import annotations

import argparse
import csv
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np

HALF = 300  # samples either side of P
RATE = 100.0
POLARITY = {"U": 0, "D": 1}


def read_sac(path: Path) -> tuple[np.ndarray, float, datetime, str]:
    """The samples, sampling interval (s), start time and station of a binary SAC file (either byte order).

    The header is 70 floats, 40 ints and 24 eight-character strings (632 bytes); ``nvhdr`` (int 6)
    is 6, which tells the byte order; the reference time (``nzyear`` .. ``nzmsec``, ints 0-5) plus
    ``b`` (float 5) is the first sample's time.
    """
    raw = path.read_bytes()
    for order in ("<", ">"):
        ints = np.frombuffer(raw, dtype=f"{order}i4", count=40, offset=280)
        if ints[6] == 6:
            break
    else:
        raise ValueError(f"{path}: not a SAC file (no header version 6 in either byte order)")
    floats = np.frombuffer(raw, dtype=f"{order}f4", count=70)
    npts = int(ints[9])
    data = np.frombuffer(raw, dtype=f"{order}f4", count=npts, offset=632).astype(np.float64)
    year, day, hour, minute, sec, msec = (int(v) for v in ints[:6])
    ref = datetime(year, 1, 1, hour, minute, sec, msec * 1000, tzinfo=timezone.utc)
    start = ref.timestamp() + (day - 1) * 86400.0 + float(floats[5])
    station = raw[440:448].decode("ascii", "replace").split("\x00")[0].strip()
    return data, float(floats[0]), datetime.fromtimestamp(start, tz=timezone.utc), station


def build(repo: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Windows, labels and names of every usable pick (see the module docstring)."""
    example = repo / "example"
    rows = list(csv.DictReader((example / "Kumamoto_phase.csv").open()))
    X, Y, names = [], [], []
    for row in rows:
        sac = example / "waveform" / row["data_id"] / f"{row['sta']}.U.SAC"
        if row["pol"] not in POLARITY or not sac.is_file():
            continue
        data, delta, start, station = read_sac(sac)
        if abs(1.0 / delta - RATE) > 1e-3:
            raise ValueError(f"{sac}: {1.0 / delta:g} Hz, expected {RATE:g} Hz")
        pick = datetime.fromisoformat(row["ptime"].replace("Z", "+00:00"))
        p = int(round((pick - start).total_seconds() * RATE))
        if p < HALF or p + HALF > len(data):
            raise ValueError(f"{sac}: P at sample {p} of {len(data)} leaves no {HALF} samples either side")
        window = data[p - HALF:p + HALF]
        X.append((window - window[:HALF].mean()).astype(np.float32))
        Y.append(POLARITY[row["pol"]])
        names.append(f"{station or row['sta']}..U|{row['event_id']}")
    if not X:
        raise ValueError(f"{example}: no pick with pol U/D and a waveform")
    return np.stack(X), np.array(Y, dtype=np.int64), names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repo", type=Path, help="a checkout of github.com/jongwon-han/RPNet")
    parser.add_argument("--out", type=Path, default=Path("kumamoto_rpnet.hdf5"))
    args = parser.parse_args(argv)
    try:
        X, Y, names = build(args.repo)
    except (OSError, ValueError, KeyError) as exc:
        raise SystemExit(f"error: {exc}") from None
    with h5py.File(args.out, "w") as f:
        f["X"], f["Y"] = X, Y
        f["sncls"] = np.array([n.encode() for n in names])
        f.attrs["source"] = ("2016 Kumamoto sequence (JMA M4.4 and M4.0), vertical SAC at 100 Hz, from "
                             "github.com/jongwon-han/RPNet (MIT) example/; labels: the pol column of "
                             "Kumamoto_phase.csv (catalogue first motions, U -> 0, D -> 1); built by "
                             "benchmarks/kumamoto_set.py")
    print(f"{args.out}: {len(Y)} traces ({int((Y == 0).sum())} up, {int((Y == 1).sum())} down)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
