"""benchmarks/kumamoto_set.py builds the SCSN-layout validation file from RPNet's Kumamoto example: here
on a small folder of the same layout, written by the test (SAC files in both byte orders)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from seispolarity import WaveformDataset

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "kumamoto_set.py"


def write_sac(path: Path, data: np.ndarray, station: str, start: tuple, order: str = "<", b: float = 0.0) -> None:
    """A binary SAC file: ``start`` = (year, julian day, hour, minute, second, millisecond), 100 Hz."""
    floats = np.full(70, -12345.0, dtype=f"{order}f4")
    floats[0], floats[5] = 0.01, b  # delta, b
    ints = np.full(40, -12345, dtype=f"{order}i4")
    ints[:6] = start
    ints[6], ints[9] = 6, len(data)  # nvhdr, npts
    strings = bytearray(b"-12345  " * 24)
    strings[:8] = station.encode().ljust(8, b"\x00")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(floats.tobytes() + ints.tobytes() + bytes(strings) + data.astype(f"{order}f4").tobytes())


def test_builds_windows_with_p_at_300_and_the_catalogue_labels(tmp_path):
    example = tmp_path / "RPNet" / "example"
    up = np.r_[np.full(1000, 5.0), np.linspace(5.0, 50.0, 1000)]      # P at sample 1000 of the file
    down = np.r_[np.full(900, -2.0), np.linspace(-2.0, -40.0, 1100)]   # P at sample 900 (b = 1 s later start)
    write_sac(example / "waveform" / "D1" / "AAA.U.SAC", up, "AAA", (2016, 106, 7, 46, 40, 0), order="<")
    write_sac(example / "waveform" / "D1" / "BBB.U.SAC", down, "BBB", (2016, 106, 7, 46, 40, 0), order=">", b=1.0)
    (example / "Kumamoto_phase.csv").write_text(
        "event_id,data_id,sta,ptime,stime,pol\n"
        "E1,D1,AAA,2016-04-15T07:46:50.000000Z,x,U\n"
        "E1,D1,BBB,2016-04-15T07:46:50.000000Z,x,D\n"
        "E1,D1,CCC,2016-04-15T07:46:50.000000Z,x,U\n"      # no waveform: left out
        "E1,D1,AAA,2016-04-15T07:46:50.000000Z,x,K\n")     # pol K: left out
    out = tmp_path / "kuma.hdf5"
    p = subprocess.run([sys.executable, str(SCRIPT), str(example.parent), "--out", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "2 traces (1 up, 1 down)" in p.stdout
    with h5py.File(out, "r") as f:
        X, Y, names = f["X"][()], f["Y"][()], [n.decode() for n in f["sncls"][()]]
    assert X.shape == (2, 600) and Y.tolist() == [0, 1] and names == ["AAA..U|E1", "BBB..U|E1"]
    assert np.allclose(X[:, :300], 0.0) and X[0, 301] > 0 and X[1, 301] < 0  # demeaned before P; onset at 300
    ds = WaveformDataset(path=out, name="SCSN", preload=True)
    assert len(ds) == 2


def test_a_missing_folder_is_one_error_line(tmp_path):
    p = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "nowhere")], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 1 and p.stderr.startswith("error: ") and "Kumamoto_phase.csv" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("order", ["<", ">"])
def test_sac_reader_reads_both_byte_orders(tmp_path, order):
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        from kumamoto_set import read_sac
    finally:
        sys.path.remove(str(SCRIPT.parent))
    write_sac(tmp_path / "x.SAC", np.arange(5.0), "STA", (2020, 32, 1, 2, 3, 400), order=order, b=0.5)
    data, delta, start, station = read_sac(tmp_path / "x.SAC")
    assert data.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0] and delta == pytest.approx(0.01) and station == "STA"
    assert start.isoformat() == "2020-02-01T01:02:03.900000+00:00"
