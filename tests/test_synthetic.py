"""The synthetic data set (seispolarity/data/synthetic.py, docs/data.md) and the first-break baseline."""
from __future__ import annotations

import hashlib
import json
import time

import h5py
import numpy as np
import pytest

from seispolarity.baselines import first_break_polarity
from seispolarity.data.synthetic import (
    INSTRUMENTS,
    NO_SIGNAL_SNR_DB,
    SyntheticConfig,
    ensure_synthetic,
    generate_synthetic,
    synthesise,
)

N = 2000


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    path = tmp_path_factory.mktemp("synth") / "synthetic.hdf5"
    t0 = time.perf_counter()
    generate_synthetic(path, num_traces=N, seed=3)
    elapsed = time.perf_counter() - t0
    with h5py.File(path, "r") as f:
        data = {k: f[k][()] for k in f}
        attrs = dict(f.attrs)
    return path, data, attrs, elapsed


@pytest.fixture(scope="module")
def clean():
    """Noise-free traces, no noise-only windows, no flips: for the causality and sign checks."""
    return synthesise(600, seed=5, config=SyntheticConfig(noise=False, noise_only_fraction=0.0, flip_fraction=0.0,
                                                          resample_fraction=0.0))


def test_same_seed_same_bytes_different_seed_differs(tmp_path):
    a = generate_synthetic(tmp_path / "a.hdf5", num_traces=150, seed=11)
    b = generate_synthetic(tmp_path / "b.hdf5", num_traces=150, seed=11)
    c = generate_synthetic(tmp_path / "c.hdf5", num_traces=150, seed=12)
    assert _sha(a) == _sha(b)
    assert _sha(a) != _sha(c)
    assert not list(tmp_path.glob("*.tmp"))


def test_keys_shapes_dtypes_attrs(synth):
    _, d, attrs, _ = synth
    L = SyntheticConfig().trace_length
    assert d["X"].shape == (N, L) and d["X"].dtype == np.float32 and np.isfinite(d["X"]).all()
    for key, dtype in [("Y", np.int64), ("p_pick", np.int64), ("p_true", np.int64), ("snr", np.float32),
                       ("amplitude", np.float32), ("evids", np.int64), ("magnitude", np.float32),
                       ("distance", np.float32)]:
        assert d[key].shape == (N,), key
        assert d[key].dtype == dtype, (key, d[key].dtype)
    assert d["Z"].shape == (N,) and d["Z"].dtype == np.dtype("S1")
    assert set(np.unique(d["Z"])) <= {b"I", b"E", b"K"}
    assert set(np.unique(d["Y"])) == {0, 1, 2}
    assert attrs["sampling_rate"] == 100.0
    assert json.loads(attrs["label_map"]) == {"0": 0, "1": 1, "2": 2}
    assert attrs["generator"] == "seispolarity.synthetic"
    assert attrs["seed"] == 3 and attrs["num_traces"] == N
    assert json.loads(attrs["knobs"]) == json.loads(SyntheticConfig().to_json())
    # A 400-sample window around the pick plus 100 samples of shift margin always fits.
    assert d["p_pick"].min() - 300 >= 0 and d["p_pick"].max() + 300 <= L
    # Events group 5-15 consecutive traces.
    sizes = np.bincount(d["evids"])
    assert sizes[:-1].min() >= 5 and sizes.max() <= 15
    assert np.all(np.diff(d["evids"]) >= 0)
    assert np.isfinite(d["magnitude"]).all() and -1 <= d["magnitude"].min() and d["magnitude"].max() <= 5
    assert d["distance"].min() >= 1 - 1e-3 and d["distance"].max() <= 150 + 1e-3
    assert d["instrument"].dtype == np.int8 and set(np.unique(d["instrument"])) == set(range(len(INSTRUMENTS)))
    assert np.all(np.abs(d["amplitude"]) <= 1.0 + 1e-6)


def test_label_proportions_and_clarity(synth):
    d = synth[1]
    share = np.bincount(d["Y"], minlength=3) / N
    assert share.min() > 0.2, share
    assert 0.2 < share[2] < 0.45, share
    unknown = d["Y"] == 2
    np.testing.assert_array_equal(d["Z"] == b"K", unknown)
    emergent = (d["Z"] == b"E").sum() / (~unknown).sum()
    assert 0.3 < emergent < 0.5
    noise_only = d["p_true"] < 0
    assert 0.07 < noise_only.mean() < 0.13
    assert np.all(d["Y"][noise_only] == 2) and np.all(d["snr"][noise_only] == NO_SIGNAL_SNR_DB)
    assert np.all(d["amplitude"][noise_only] == 0)
    sig = ~noise_only
    assert d["snr"][sig].min() >= -5 and d["snr"][sig].max() <= 80
    assert np.all(d["Y"][sig & (np.abs(d["amplitude"]) < 0.02)] == 2)  # near-nodal
    assert np.all(d["Y"][sig & (d["snr"] < 3.0)] == 2)  # weak direct P


def _rates(d, fs=100.0):
    sig = d["p_true"] >= 0
    off = np.abs(d["p_pick"] - d["p_true"])
    mispick = sig & (off >= 0.3 * fs - 1)
    ud = d["Y"] < 2
    flipped = ud & (np.where(d["amplitude"] > 0, 0, 1) != d["Y"])
    return mispick.mean(), flipped.sum() / ud.sum(), mispick, off


def test_flip_and_mispick_rates_follow_knobs(synth):
    d = synth[1]
    mis, flip, mispick, off = _rates(d)
    assert 0.07 < mis < 0.13, mis
    assert 0.005 < flip < 0.045, flip
    assert np.all(d["Y"][mispick] == 2)
    assert off[mispick].max() <= 150 + 1
    # Ordinary picks: Gaussian jitter with a std of ~3 samples.
    ok = (d["p_true"] >= 0) & ~mispick
    assert 2.0 < np.std(d["p_pick"][ok] - d["p_true"][ok]) < 4.0
    d2 = synthesise(1000, seed=4, config=SyntheticConfig(flip_fraction=0.25, mispick_fraction=0.3))
    mis2, flip2, _, _ = _rates(d2)
    assert 0.25 < mis2 < 0.35, mis2
    assert 0.17 < flip2 < 0.33, flip2


def test_label_agrees_with_true_amplitude_on_clean_traces(synth):
    d = synth[1]
    m = (d["Y"] < 2) & (d["snr"] > 20) & (np.abs(d["amplitude"]) > 0.1)
    agree = np.mean(np.where(d["amplitude"][m] > 0, 0, 1) == d["Y"][m])
    assert 0.95 < agree < 1.0 or (agree == 1.0 and m.sum() < 100), agree


def test_pulse_is_causal_without_noise(clean):
    X, pt = clean["X"], clean["p_true"]
    assert np.all(pt >= 1)
    peak = np.abs(X).max(axis=1)
    assert np.all(peak > 0)
    before = np.array([np.abs(x[:p]).max() for x, p in zip(X, pt)]) / peak
    # The 120 s broadband sensor's response tail outlasts the FFT buffer: its wrap-around is a
    # near-constant offset below 1e-3 of the peak; every other operator is exact to rounding.
    broadband = clean["instrument"] == [name for name, _, _ in INSTRUMENTS].index("broadband_120s")
    assert np.all(before[~broadband] <= 1e-6), before[~broadband].max()
    assert np.all(before[broadband] <= 1e-3), before[broadband].max()


def test_first_motion_has_labelled_sign(clean):
    X, pt, Y, amp = clean["X"], clean["p_true"], clean["Y"], clean["amplitude"]
    rows = np.arange(len(X))
    first = X[rows, pt]
    # The first non-zero sample carries the sign of the radiation ...
    assert np.all(np.sign(first) == np.sign(amp))
    # ... and with flip_fraction=0, of the label (the sign check a user runs on their own data).
    ud = Y < 2
    assert np.all(np.where(first[ud] > 0, 0, 1) == Y[ud])


def _first_lobe_ratio(X, onset, span=50):
    """Peak of the first half-cycle (onset to the first sign change) over the peak of ``span`` samples."""
    ratios = []
    for x, p in zip(X, onset):
        seg = x[p:p + span]
        change = np.nonzero(np.sign(seg) != np.sign(seg[0]))[0]
        lobe = seg[:change[0]] if len(change) else seg
        ratios.append(np.abs(lobe).max() / np.abs(seg).max())
    return np.array(ratios)


def test_first_lobe_does_not_predict_what_follows(clean):
    """The recipe randomises what follows the first motion: weak first lobes before a bigger
    opposite swing are common, and so are dominant first lobes (a network must read the sign)."""
    ratio = _first_lobe_ratio(clean["X"], clean["p_true"])
    assert 0.2 < np.mean(ratio < 0.5) < 0.75, np.mean(ratio < 0.5)
    assert np.mean(ratio > 0.9) > 0.15
    # The mean of the first 0.2 s agrees with the first motion about half the time, not always or never.
    rows = np.arange(len(clean["X"]))
    mean02 = clean["X"][rows[:, None], clean["p_true"][:, None] + np.arange(20)[None, :]].mean(axis=1)
    agree = np.mean(np.sign(mean02) == np.sign(clean["amplitude"]))
    assert 0.3 < agree < 0.7, agree


def _rise_samples(magnitude: float) -> np.ndarray:
    """Samples from the onset to the peak of the first half-cycle, on clean plain onsets of one magnitude
    (no emergent ramp, site, later arrivals or decimation; a broadband sensor; the least attenuation)."""
    d = synthesise(60, seed=8, config=SyntheticConfig(
        noise=False, noise_only_fraction=0.0, mispick_fraction=0.0, magnitude_min=magnitude, magnitude_max=magnitude,
        stress_drop_min_mpa=1.0, stress_drop_max_mpa=1.0, emergent_fraction=0.0, reverb_fraction=0.0,
        echo_fraction=0.0, later_max=0, coda_amp_min=1e-6, coda_amp_max=1e-6, resample_fraction=0.0,
        instrument_weights=(0, 0, 0, 0, 1, 0), tstar_log10_min=-3.0, tstar_log10_max=-3.0))
    rises = []
    for x, p in zip(d["X"], d["p_true"]):
        seg = x[p:p + 200] * np.sign(x[p])
        end = np.nonzero(seg < 0)[0]
        rises.append(int(np.argmax(seg[:end[0] if len(end) else len(seg)])))
    return np.array(rises)


def test_onsets_rise_over_the_rupture_duration():
    """The moment rate lasts the rupture (Haskell: Brune's pulse spread over radius / rupture speed,
    ~0.3 s for an M4 of 1 MPa, radius ~0.8 km, times the directivity): the ground velocity no longer
    jumps at the onset but rises over Brune's time constant, radius / (2.34 x 3.5 km/s) ~ 0.1 s for
    that M4 (Brune's pulse alone peaks at the onset sample); an M0.5 onset still rises within a sample."""
    large, small = _rise_samples(4.0), _rise_samples(0.5)
    assert np.all(small <= 1), small
    assert large.min() >= 7 and large.max() <= 12, large


def test_resampled_records_ring_only_slightly_before_the_onset():
    d = synthesise(300, seed=6, config=SyntheticConfig(noise=False, noise_only_fraction=0.0, resample_fraction=1.0))
    X, pt = d["X"], d["p_true"]
    before = np.array([np.abs(x[max(0, p - 20):p]).max() for x, p in zip(X, pt)])
    onset = np.array([np.abs(x[p:p + 5]).max() for x, p in zip(X, pt)])
    ratio = before / onset  # the linear-phase anti-alias filter rings ahead of the onset (Gibbs) ...
    assert np.median(ratio) > 1e-3
    assert np.median(ratio) < 0.2 and np.percentile(ratio, 90) < 0.5  # ... but less than the onset


def test_baseline_beats_chance_but_is_not_perfect(synth):
    d = synth[1]
    pred = first_break_polarity(d["X"], d["p_pick"])
    assert pred.dtype == np.int64 and pred.shape == (N,)
    acc = np.mean(pred == d["Y"])
    assert 0.6 < acc < 0.95, acc


def test_baseline_inputs(synth):
    torch = pytest.importorskip("torch")
    d = synth[1]
    X, pk = d["X"][:64], d["p_pick"][:64]
    ref = first_break_polarity(X, pk)
    np.testing.assert_array_equal(first_break_polarity(torch.from_numpy(X)[:, None, :], torch.from_numpy(pk)), ref)
    # A scalar pick index, and a clean pulse: up, down, and nothing (unknown).
    t = np.zeros((3, 400), dtype=np.float32)
    rng = np.random.default_rng(0)
    t += 0.01 * rng.standard_normal(t.shape).astype(np.float32)
    t[0, 200:210] += 1.0
    t[1, 200:210] -= 1.0
    np.testing.assert_array_equal(first_break_polarity(t, 200), [0, 1, 2])


def test_unknown_knob_raises(tmp_path):
    with pytest.raises(TypeError, match="not_a_knob"):
        generate_synthetic(tmp_path / "x.hdf5", num_traces=10, seed=0, not_a_knob=1)
    with pytest.raises(TypeError, match="not_a_knob"):
        ensure_synthetic(tmp_path / "x.hdf5", num_traces=10, seed=0, not_a_knob=1)
    with pytest.raises(ValueError):
        SyntheticConfig(flip_fraction=2.0)
    assert not (tmp_path / "x.hdf5").exists()


def test_ensure_synthetic_caches_and_regenerates(tmp_path):
    path = tmp_path / "cache" / "syn.hdf5"
    ensure_synthetic(path, num_traces=100, seed=1, flip_fraction=0.05)
    first = path.stat().st_mtime_ns, _sha(path)
    time.sleep(0.01)
    ensure_synthetic(path, num_traces=100, seed=1, flip_fraction=0.05)
    assert (path.stat().st_mtime_ns, _sha(path)) == first  # reused, not rewritten
    ensure_synthetic(path, num_traces=100, seed=2, flip_fraction=0.05)
    with h5py.File(path, "r") as f:
        assert f.attrs["seed"] == 2
    ensure_synthetic(path, num_traces=120, seed=2, flip_fraction=0.05)
    with h5py.File(path, "r") as f:
        assert f["X"].shape[0] == 120
    ensure_synthetic(path, num_traces=120, seed=2)
    with h5py.File(path, "r") as f:
        assert json.loads(f.attrs["knobs"])["flip_fraction"] == SyntheticConfig().flip_fraction
    path.write_bytes(b"not hdf5")
    ensure_synthetic(path, num_traces=50, seed=0)
    with h5py.File(path, "r") as f:
        assert f["X"].shape == (50, 800)
