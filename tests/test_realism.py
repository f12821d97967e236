"""The realism diagnostic: statistics on hand-built traces, summaries, the KS distance, and
`python -m seispolarity.data realism` in real subprocesses on real HDF5 files."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from seispolarity.baselines import first_break, first_break_polarity
from seispolarity.data.realism import (
    STATISTICS,
    detect_layout,
    distance,
    file_stats,
    format_table,
    ks_statistic,
    summarise,
    waveform_stats,
)

ROOT = Path(__file__).resolve().parents[1]
FS = 100.0
P = 300  # SCSN: sample 300 of 600


def quiet(n: int = 1, length: int = 600, sigma: float = 0.01, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, sigma, (n, length))


def test_sinusoid_dominant_frequency_and_snr():
    x = 0.01 * (-1.0) ** np.arange(600) * np.ones((2, 1))  # noise of std 0.01 exactly
    t = np.arange(600 - P) / FS
    x[0, P:] += np.sin(2 * np.pi * 5.0 * t)
    x[1, P:] += 2.0 * np.sin(2 * np.pi * 12.5 * t)
    s = waveform_stats(x, P, np.array([0, 0]), FS)
    np.testing.assert_allclose(s["dominant_freq_hz"], [5.0, 12.5], atol=0.26)
    # peak 1 (2) over a noise std of 0.01: 40 (46) dB
    np.testing.assert_allclose(s["snr_db"], [40.0, 46.0], atol=1.0)
    # a steady sinusoid: no coda build-up, 0 dB
    np.testing.assert_allclose(s["coda_buildup_db"], [0.0, 0.0], atol=0.5)


def test_first_half_cycle_ratio_and_rise_time():
    x = quiet(3, sigma=1e-3)
    # a step onset that decays without crossing zero: the first half-cycle holds the peak -> 1
    x[0, P:] += np.exp(-np.arange(600 - P) / 20.0)
    # a weak 0.1 s lobe up, then a swing down 3 times larger: 1/3
    lobe = np.sin(np.pi * np.arange(10) / 10)
    x[1, P:P + 10] += lobe
    x[1, P + 10:P + 30] -= 3 * np.sin(np.pi * np.arange(20) / 20)
    # a linear rise over 5 samples to the peak of the first lobe (down), then back to 0
    x[2, P:P + 6] -= np.linspace(0, 1, 6)
    x[2, P + 6:P + 12] -= np.linspace(0.8, 0, 6)
    s = waveform_stats(x, P, np.array([0, 0, 1]), FS)
    ratio = s["first_half_cycle_ratio"]
    assert ratio[0] == pytest.approx(1.0)
    assert ratio[1] == pytest.approx(1 / 3, abs=0.02)
    assert ratio[2] == pytest.approx(1.0)
    # first break at the first sample above 4 std of the noise; the peak of the half-cycle after it
    onset = first_break(x, P, FS)["onset"]
    assert onset[2] in (P + 1, P + 2)
    assert s["rise_time_s"][2] == pytest.approx((P + 5 - onset[2]) / FS)
    assert s["rise_time_s"][0] == pytest.approx(0.0)
    # the mean of the first 0.2 s: positive for the decaying step, negative for the weak-lobe trace
    np.testing.assert_array_equal(s["mean_0.2s_agrees"], [1.0, 0.0, 1.0])


def test_no_break_gives_nan_and_unknown_labels_no_agreement():
    x = quiet(2)
    x[1, P:] += np.sin(2 * np.pi * 4 * np.arange(600 - P) / FS)
    s = waveform_stats(x, P, np.array([2, 0]), FS)
    assert np.isnan(s["first_half_cycle_ratio"][0]) and np.isnan(s["rise_time_s"][0])
    assert np.isnan(s["mean_0.2s_agrees"][0]) and s["mean_0.2s_agrees"][1] == 1.0
    assert np.isnan(waveform_stats(x, P, None, FS)["mean_0.2s_agrees"]).all()


def test_noise_slope_white_flat_red_negative():
    rng = np.random.default_rng(1)
    white = rng.standard_normal((200, 600))
    red = np.cumsum(rng.standard_normal((200, 600)), axis=1)  # amplitude ~ 1/f
    sw = waveform_stats(white, P, None, FS)["noise_slope"]
    sr = waveform_stats(red, P, None, FS)["noise_slope"]
    assert abs(np.median(sw)) < 0.15
    assert np.median(sr) == pytest.approx(-1.0, abs=0.25)


def test_coda_buildup_sign():
    x = quiet(2)
    t = np.arange(600 - P) / FS
    carrier = np.sin(2 * np.pi * 8 * t)
    x[0, P:] += carrier * np.exp(-t / 0.2)          # decays: negative dB
    x[1, P:] += carrier * np.minimum(t / 1.5, 1.0)  # builds up: positive dB
    s = waveform_stats(x, P, None, FS)["coda_buildup_db"]
    assert s[0] < -10 and s[1] > 3


def test_per_trace_p_index_and_shape_checks():
    x = quiet(2, length=700)
    p = np.array([300, 350])
    x[0, 300:] += 1.0
    x[1, 350:] -= 1.0
    s = waveform_stats(x[:, None, :], p, np.array([0, 1]), FS)
    np.testing.assert_array_equal(s["mean_0.2s_agrees"], [1.0, 1.0])
    with pytest.raises(ValueError, match="1.5 s after it"):
        waveform_stats(quiet(1), 500, None, FS)


def test_waveform_stats_is_fast():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((20000, 410)).astype(np.float32)
    x[:, 210:] += 5 * np.sin(np.arange(200) * 0.6)
    t = time.perf_counter()
    s = waveform_stats(x, 210, rng.integers(0, 2, 20000), FS)
    assert time.perf_counter() - t < 10  # ~0.5 s alone; generous for a busy 2-core machine
    assert set(s) == set(STATISTICS) and all(v.shape == (20000,) for v in s.values())


def test_summarise_and_ks_distance():
    stats = {"first_half_cycle_ratio": np.array([0.2, 0.4, 0.6, 0.8, np.nan]),
             "mean_0.2s_agrees": np.array([1.0, 0.0, 1.0, 1.0])}
    summ = summarise(stats)
    assert summ["first_half_cycle_ratio"]["n"] == 4
    assert summ["first_half_cycle_ratio"]["median"] == pytest.approx(0.5)
    assert summ["first_half_cycle_ratio"]["share_below_0.5"] == pytest.approx(0.5)
    assert summ["mean_0.2s_agrees"]["mean"] == pytest.approx(0.75)
    assert ks_statistic([1, 2, 3], [1, 2, 3]) == 0.0
    assert ks_statistic([1, 2, 3], [4, 5]) == 1.0
    assert ks_statistic([0, 1, 1, 1], [0, 0, 1, 1]) == pytest.approx(0.25)  # gap between the shares
    d = distance(stats, {"mean_0.2s_agrees": np.array([0.0, 0.0])})
    assert d == {"mean_0.2s_agrees": pytest.approx(0.75)}  # 0.75 agree vs none


def test_first_break_polarity_unchanged_by_the_shared_helper():
    x = quiet(3, sigma=0.01)
    x[0, P + 3:] += 1.0
    x[1, P + 3:] -= 1.0
    np.testing.assert_array_equal(first_break_polarity(x, P, FS), [0, 1, 2])
    np.testing.assert_array_equal(first_break(x, P, FS)["onset"], [P + 3, P + 3, -1])


# -- files and the command line --------------------------------------------------------------------
def make_traces(n: int, seed: int, freq: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3  # up, down, unknown
    t = np.arange(600 - P) / FS
    x = rng.normal(0, 0.05, (n, 600))
    sign = np.where(labels == 1, -1.0, 1.0)[:, None]
    x[:, P:] += sign * np.sin(2 * np.pi * freq * t) * np.exp(-t / 0.5)
    return x.astype(np.float32), labels


def write_scsn(path: Path, n: int = 30, seed: int = 0, freq: float = 6.0) -> Path:
    x, y = make_traces(n, seed, freq)
    with h5py.File(path, "w") as f:
        f["X"], f["Y"] = x, y
    return path


def write_flat(path: Path, n: int = 30, seed: int = 1, freq: float = 3.0) -> Path:
    x, y = make_traces(n, seed, freq)
    with h5py.File(path, "w") as f:
        f["X"], f["Y"] = x[:, None, :], y
        f["p_pick"] = np.full(n, P)
        f.attrs["sampling_rate"] = FS
        f.attrs["component_order"] = "Z"
    return path


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "seispolarity.data", "realism", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, env=env)


def test_detect_layout_and_file_stats(tmp_path):
    scsn, flat = write_scsn(tmp_path / "a.hdf5"), write_flat(tmp_path / "b.hdf5")
    assert detect_layout(str(scsn)) == "scsn" and detect_layout(str(flat)) == "flat"
    r = file_stats(str(scsn))
    assert (r["name"], r["traces"], r["up"], r["down"]) == ("scsn", 20, 10, 10)
    np.testing.assert_allclose(np.median(r["stats"]["dominant_freq_hz"]), 6.0, atol=0.3)
    assert np.nanmean(r["stats"]["mean_0.2s_agrees"]) == 1.0
    assert file_stats(str(flat), max_traces=7)["traces"] == 7
    text = format_table([r, file_stats(str(flat))])
    assert "1-2" in text and "dominant_freq_hz" in text


def test_cli_prints_table_and_json(tmp_path):
    a, b = write_scsn(tmp_path / "a.hdf5"), write_flat(tmp_path / "b.hdf5")
    res = run_cli(str(a), str(b))
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert f"[1] {a} (name=scsn" in out and f"[2] {b} (name=flat" in out
    assert "20 (10/10)" in out and "Kolmogorov-Smirnov" in out
    line = next(ln for ln in out.splitlines() if ln.startswith("dominant_freq_hz") and "[" in ln)
    assert "6.0 [" in line and "3.0 [" in line
    ks = next(ln for ln in out.splitlines() if ln.startswith("dominant_freq_hz") and "[" not in ln)
    assert ks.split()[-1] == "1.00"

    res = run_cli(str(a), str(a), "name=scsn", "json=true")  # a trailing name= applies to every path
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert [f["name"] for f in data["files"]] == ["scsn", "scsn"]
    assert data["ks_distance"]["1-2"]["dominant_freq_hz"] == 0.0
    assert data["files"][0]["summary"]["first_half_cycle_ratio"]["n"] == 20


@pytest.mark.parametrize("case", ["missing", "not_hdf5", "no_x", "unknown_name", "no_p"])
def test_cli_errors_are_one_line(tmp_path, case):
    path = tmp_path / "bad.hdf5"
    args = [str(path)]
    if case == "not_hdf5":
        path.write_text("not a seismogram\n")
    elif case == "no_x":
        with h5py.File(path, "w") as f:
            f["Y"] = np.zeros(3)
    elif case == "unknown_name":
        write_scsn(path)
        args = ["name=nosuchlayout", str(path)]
    elif case == "no_p":
        with h5py.File(path, "w") as f:
            f["X"], f["Y"] = np.zeros((3, 500)), np.zeros(3)
    res = run_cli(*args)
    assert res.returncode in (1, 2)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert lines[0].startswith("error: ") and str(path) in lines[0]
    expected = {"missing": "no such file", "not_hdf5": "HDF5", "no_x": "'X'",
                "unknown_name": "nosuchlayout", "no_p": "p_index"}[case]
    assert expected in lines[0]


def test_cli_usage(tmp_path):
    assert run_cli().returncode == 2
    res = run_cli("json=true")
    assert res.returncode == 2 and "give at least one data path" in res.stderr
