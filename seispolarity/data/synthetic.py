"""A seeded, physics-based synthetic P-polarity data set in the flat HDF5 layout.

A fresh clone has no seismic data, so ``data=synthetic`` builds one on first use. The recipe
(version 3) aims to span the waveform character of real local records, so that a network trained on
it must read the sign of the first motion and nothing else: every relation between the first lobe
and what follows it (its width, the sign and size of the next swing, the mean of the first 0.2 s)
is randomised by physics that real records show. Every trace is a vertical record at
``sampling_rate`` Hz, built per trace as a product of causal operators on an FFT grid:

* **Sign** - far-field P radiation of a double couple (Aki & Richards eq. 4.89): each event draws
  strike, dip, rake; each of its stations an azimuth and a take-off angle. The signed radiation
  ``amplitude`` is in [-1, 1]; positive means compression (up).
* **Source** - a Brune (omega-squared) moment-rate pulse whose corner frequency follows from the
  event's magnitude (Mw uniform in ``magnitude_min..magnitude_max``, -1..5: local events from
  micro-earthquakes, corners of hundreds of Hz, to M5, ~0.5 Hz) and a log-uniform stress drop;
  differenced to ground velocity, and spread over the rupture's duration (Haskell: convolved with
  a boxcar of the source radius over the rupture speed, 0.8 x the shear-wave speed, times a
  directivity factor 0.5-1.5 per station): an M4 onset rises over ~0.1-0.3 s, an M1 onset within a
  sample. About 40% of onsets are emergent besides (a causal amplitude ramp).
* **Path** - causal minimum-phase attenuation, t* log-uniform and growing with distance.
* **Site** - near-surface reverberation, layer over half-space: a resonance ``1 / (1 - r z^-tau)``
  (r of either sign, tau 0.01-0.15 s: 3-50 Hz ringing) and an echo ``1 + g z^-d`` (g of either sign
  and up to ``echo_gain_max`` times the direct wave, d 0.01-0.3 s). A large opposite echo a few
  samples behind gives the weak first motion followed by a bigger swing of the other sign that real
  records often show.
* **Instrument** - one of a family of causal responses per station, by ``instrument_weights``:
  1, 2 and 4.5 Hz geophones (damping 0.3-0.8), a 1 Hz short-period and a 120 s broadband velocity
  sensor (damping 0.707), all by the bilinear transform of their analogue response, and an
  accelerometer (a causal difference of velocity). ``resample_fraction`` of the records were
  recorded at a higher rate and decimated with a linear-phase anti-alias filter (as
  ``scipy.signal.resample_poly`` does), the one non-causal step: a small ringing precursor.
* **Wavefield** - the direct P, 0-2 later arrivals 0.05-2 s behind it of random sign, and scattered
  coda that builds up continuously from the onset, all through the same source, path, site and
  instrument.
* **Noise** - Gaussian, coloured either by a mix of Peterson's (1993) low and high noise models or by
  a power law f^alpha (``noise_slope_min..max``), through the instrument; scaled so that the peak of
  the direct P (before site echoes) over the noise standard deviation is the drawn SNR, uniform in
  -5..80 dB (strong-motion and broadband records of M4-5 events reach 60-90 dB). Record artefacts:
  spikes, DC offsets, linear trends and clipping, each on a share of the traces.
* **Picks** - the analyst pick ``p_pick`` (uniform in ``pick_min..pick_max``) is the true onset plus
  a Gaussian jitter of ~3 samples; ~10% are gross mispicks 0.3-1.5 s off.
* **Labels** (0 up, 1 down, 2 unknown) - unknown for noise-only windows (~10%), mispicks,
  near-nodal radiation (``|amplitude| < 0.02``) or a direct-P SNR below 3 dB; ~2% of the up/down
  labels are flipped (reversed channels). Clarity ``Z``: ``I`` impulsive, ``E`` emergent, ``K``
  unclear (every unknown).

Every knob is a field of :class:`SyntheticConfig`. Output keys (N traces, L = ``trace_length``):
``X`` (N, L) float32 (not normalised), ``Y`` (N,) int64, ``p_pick`` (N,) int64, ``p_true`` (N,)
int64 (-1 for noise-only windows), ``snr`` (N,) float32 dB (``NO_SIGNAL_SNR_DB`` for noise-only
windows), ``amplitude`` (N,) float32 (0 for noise-only windows), ``evids`` (N,) int64,
``magnitude`` (N,) float32, ``distance`` (N,) float32 km, ``instrument`` (N,) int8 (an index into
``INSTRUMENTS``), ``Z`` (N,) S1. Attributes: ``sampling_rate``, ``label_map``, ``generator``,
``generator_version``, ``seed``, ``num_traces``, ``knobs`` (JSON of the config). The same seed,
trace count and knobs give a byte-identical file. docs/data.md shows what the recipe looks like
beside real records (``python -m seispolarity.data realism``).
"""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import pathlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..folders import atomic_file
from .labels import DOWN, UNKNOWN, UP

log = logging.getLogger(__name__)

GENERATOR = "seispolarity.synthetic"
# Bump when the recipe changes so cached files are regenerated by ensure_synthetic.
GENERATOR_VERSION = 3
# ``snr`` stored for noise-only windows, which have no direct P.
NO_SIGNAL_SNR_DB = -99.0
LABEL_MAP_JSON = '{"0": 0, "1": 1, "2": 2}'

# Traces are synthesised in chunks of this many (bounds memory: ~10 arrays of CHUNK x nfft/2 complex).
# Fixed, not a knob: the random streams are drawn per chunk, so it is part of the recipe.
CHUNK = 1024
_MAX_LATER = 4  # array width for later arrivals (``later_max`` may not exceed it)

# The instrument family: (name, natural frequency Hz, damping; None = drawn from the geophone range).
# The accelerometer records the derivative of velocity (its natural frequency and damping are unused).
INSTRUMENTS = (("geophone_1hz", 1.0, None), ("geophone_2hz", 2.0, None), ("geophone_4.5hz", 4.5, None),
               ("short_period_1hz", 1.0, 0.707), ("broadband_120s", 1.0 / 120.0, 0.707),
               ("accelerometer", 1.0, 0.707))
ACCELEROMETER = len(INSTRUMENTS) - 1


@dataclass(frozen=True)
class SyntheticConfig:
    """Every knob of the synthetic recipe. Times in seconds unless ``_samples``.

    Geometry and sampling:
        trace_length: samples per trace (800 = 8 s at 100 Hz).
        sampling_rate: Hz.
        pick_min, pick_max: the analyst pick ``p_pick`` is uniform in [pick_min, pick_max] (samples).
        stations_min, stations_max: stations (traces) per event, uniform integer.
        distance_min_km, distance_max_km: epicentral distance, log-uniform.
        takeoff_min_deg, takeoff_max_deg: take-off angle from the downward vertical, uniform.
    Source and path:
        magnitude_min, magnitude_max: Mw, uniform, one per event; with the stress drop it sets the
            Brune corner frequency.
        stress_drop_min_mpa, stress_drop_max_mpa: log-uniform.
        rupture_speed_fraction: rupture speed over the shear-wave speed (3500 m/s); the rupture lasts
            the source radius over that speed, times a directivity factor per station.
        directivity_min, directivity_max: that factor, uniform (< 1: towards the station).
        tstar_log10_min, tstar_log10_max: range of log10 t* (s); t* grows with distance (+ scatter).
        emergent_fraction: share of emergent onsets.
        emergent_ramp_min, emergent_ramp_max: emergent amplitude-ramp duration, s.
    Site (near-surface reverberation):
        reverb_fraction: share of stations with a resonant layer; reverb_max: its largest |r| (< 1);
            reverb_delay_min, reverb_delay_max: its two-way time tau, s.
        echo_fraction: share of stations with an echo; echo_gain_min, echo_gain_max: its |g| range
            (log-uniform, random sign); echo_delay_min, echo_delay_max: its delay d, s.
    Instrument:
        instrument_weights: relative weights of the ``INSTRUMENTS`` family (6 numbers).
        geophone_damping_min, geophone_damping_max: geophone damping ratio, uniform.
        resample_fraction: share of records decimated from a higher rate (linear-phase anti-alias);
            antialias_min, antialias_max: its cut-off as a fraction of the Nyquist frequency.
    Later phases and coda:
        later_min, later_max: number of later arrivals per trace (uniform integer, at most 4).
        later_delay_min, later_delay_max: their delay after the onset, s.
        later_amp_min, later_amp_max: their amplitude in units of the event's maximum radiation
            (random sign).
        coda_amp_min, coda_amp_max: coda RMS in units of the direct-P peak (log-uniform).
        coda_rise_min, coda_rise_max: coda build-up time constant, s.
        coda_decay_min, coda_decay_max: coda decay time constant, s.
    Noise and record artefacts:
        noise: False writes noise-free traces (tests); the stored ``snr`` is still the drawn value.
        snr_min_db, snr_max_db: direct-P SNR, uniform; 20 log10(peak |direct P| / noise std).
        powerlaw_noise_fraction: share of traces whose noise is a power law instead of Peterson's
            models; noise_slope_min, noise_slope_max: its amplitude-spectrum exponent.
        spike_fraction, dc_fraction, trend_fraction, clip_fraction: shares of traces with 1-3 spikes,
            a DC offset, a linear trend, and clipping (at 0.3-0.9 of the record's peak).
    Picks and labels:
        jitter_std_samples: std of the Gaussian pick error (clipped to 5 std).
        mispick_fraction: share of traces whose pick is 0.3-1.5 s off (labelled unknown).
        mispick_min, mispick_max: the mispick offset range, s (before or after, equally likely).
        noise_only_fraction: share of noise-only windows (labelled unknown).
        nodal_threshold: |amplitude| below it is near-nodal (labelled unknown).
        unknown_snr_db: direct-P SNR below it is labelled unknown.
        flip_fraction: share of up/down labels that are flipped.
    """

    trace_length: int = 800
    sampling_rate: float = 100.0
    pick_min: int = 300
    pick_max: int = 500
    stations_min: int = 5
    stations_max: int = 15
    distance_min_km: float = 1.0
    distance_max_km: float = 150.0
    takeoff_min_deg: float = 5.0
    takeoff_max_deg: float = 175.0
    magnitude_min: float = -1.0
    magnitude_max: float = 5.0
    stress_drop_min_mpa: float = 0.1
    stress_drop_max_mpa: float = 10.0
    rupture_speed_fraction: float = 0.8
    directivity_min: float = 0.5
    directivity_max: float = 1.5
    tstar_log10_min: float = -3.0
    tstar_log10_max: float = -1.6
    emergent_fraction: float = 0.4
    emergent_ramp_min: float = 0.02
    emergent_ramp_max: float = 0.3
    reverb_fraction: float = 0.7
    reverb_max: float = 0.7
    reverb_delay_min: float = 0.01
    reverb_delay_max: float = 0.15
    echo_fraction: float = 0.8
    echo_gain_min: float = 0.2
    echo_gain_max: float = 3.0
    echo_delay_min: float = 0.01
    echo_delay_max: float = 0.3
    instrument_weights: tuple[float, ...] = (1.0, 1.0, 2.0, 1.0, 1.0, 1.0)
    geophone_damping_min: float = 0.3
    geophone_damping_max: float = 0.8
    resample_fraction: float = 0.3
    antialias_min: float = 0.8
    antialias_max: float = 1.0
    later_min: int = 0
    later_max: int = 2
    later_delay_min: float = 0.05
    later_delay_max: float = 2.0
    later_amp_min: float = 0.1
    later_amp_max: float = 0.7
    coda_amp_min: float = 0.1
    coda_amp_max: float = 0.6
    coda_rise_min: float = 0.02
    coda_rise_max: float = 0.3
    coda_decay_min: float = 0.3
    coda_decay_max: float = 2.0
    noise: bool = True
    snr_min_db: float = -5.0
    snr_max_db: float = 80.0
    powerlaw_noise_fraction: float = 0.5
    noise_slope_min: float = -1.5
    noise_slope_max: float = 1.0
    spike_fraction: float = 0.05
    dc_fraction: float = 0.1
    trend_fraction: float = 0.1
    clip_fraction: float = 0.03
    jitter_std_samples: float = 3.0
    mispick_fraction: float = 0.10
    mispick_min: float = 0.3
    mispick_max: float = 1.5
    noise_only_fraction: float = 0.10
    nodal_threshold: float = 0.02
    unknown_snr_db: float = 3.0
    flip_fraction: float = 0.02

    def __post_init__(self) -> None:
        object.__setattr__(self, "instrument_weights", tuple(float(w) for w in self.instrument_weights))
        for ok, msg in self._checks():
            if not ok:
                raise ValueError(f"SyntheticConfig: {msg}")

    def _checks(self) -> list[tuple[bool, str]]:
        fs = self.sampling_rate
        fractions = ("emergent_fraction", "reverb_fraction", "echo_fraction", "resample_fraction",
                     "powerlaw_noise_fraction", "spike_fraction", "dc_fraction", "trend_fraction",
                     "clip_fraction", "flip_fraction")
        ranges = ("emergent_ramp", "reverb_delay", "echo_delay", "echo_gain", "antialias", "later_delay",
                  "later_amp", "coda_amp", "coda_rise", "coda_decay", "noise_slope", "geophone_damping",
                  "mispick", "magnitude", "stress_drop_mpa", "directivity")
        weights = self.instrument_weights
        return [
            (self.trace_length >= 64, "trace_length must be >= 64"),
            (fs > 0, "sampling_rate must be > 0"),
            (0 <= self.pick_min <= self.pick_max < self.trace_length, "need 0 <= pick_min <= pick_max < trace_length"),
            (1 <= self.stations_min <= self.stations_max, "need 1 <= stations_min <= stations_max"),
            (0 < self.distance_min_km <= self.distance_max_km, "need 0 < distance_min_km <= distance_max_km"),
            (0 <= self.takeoff_min_deg <= self.takeoff_max_deg <= 180, "take-off angles must lie in 0..180"),
            (self.stress_drop_min_mpa > 0, "stress_drop_min_mpa must be > 0"),
            (self.rupture_speed_fraction > 0 and self.directivity_min >= 0,
             "rupture_speed_fraction must be > 0 and directivity_min >= 0"),
            (self.tstar_log10_min <= self.tstar_log10_max, "need tstar_log10_min <= tstar_log10_max"),
            *[(0 <= getattr(self, f) <= 1, f"{f} must lie in [0, 1]") for f in fractions],
            *[(_ordered(self, r), f"need {_bounds(r)[0]} <= {_bounds(r)[1]}") for r in ranges],
            (0 <= self.reverb_max < 1, "reverb_max must lie in [0, 1)"),
            (self.reverb_delay_min * fs >= 0.5 and self.echo_delay_min * fs >= 0.5,
             "reverb_delay_min and echo_delay_min must be at least half a sample"),
            (self.echo_gain_min > 0, "echo_gain_min must be > 0"),
            (0 < self.antialias_min and self.antialias_max <= 1, "antialias_min..max must lie in (0, 1]"),
            (len(weights) == len(INSTRUMENTS) and min(weights) >= 0 and sum(weights) > 0,
             f"instrument_weights needs {len(INSTRUMENTS)} non-negative weights "
             f"({', '.join(i[0] for i in INSTRUMENTS)}), not all zero"),
            (0 <= self.later_min <= self.later_max <= _MAX_LATER, f"need 0 <= later_min <= later_max <= {_MAX_LATER}"),
            (self.later_delay_min > 0 and self.coda_rise_min > 0 and self.coda_decay_min > 0,
             "later_delay, coda_rise and coda_decay must be > 0"),
            (self.coda_amp_min > 0, "coda_amp_min must be > 0 (log-uniform)"),
            (self.snr_min_db <= self.snr_max_db, "need snr_min_db <= snr_max_db"),
            (self.jitter_std_samples >= 0, "jitter_std_samples must be >= 0"),
            (0 < self.mispick_min, "mispick_min must be > 0"),
            (self.pick_min - self.mispick_max * fs >= 0
             and self.pick_max + self.mispick_max * fs < self.trace_length,
             "a mispick (pick +- mispick_max) must keep the onset inside the trace"),
            (0 <= self.mispick_fraction and 0 <= self.noise_only_fraction
             and self.mispick_fraction + self.noise_only_fraction <= 1, "bad mispick/noise-only fractions"),
            (0 <= self.nodal_threshold < 1, "nodal_threshold must lie in [0, 1)"),
        ]

    @classmethod
    def from_knobs(cls, **knobs: Any) -> SyntheticConfig:
        """Build a config; an unknown knob raises a TypeError naming it and listing the valid ones."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(knobs) - names)
        if unknown:
            raise TypeError(f"unknown synthetic knob(s) {unknown}; valid knobs: {sorted(names)}")
        return cls(**knobs)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


def _bounds(stem: str) -> tuple[str, str]:
    if stem.endswith("_mpa"):  # stress_drop_min_mpa / stress_drop_max_mpa
        base = stem[:-4]
        return f"{base}_min_mpa", f"{base}_max_mpa"
    return f"{stem}_min", f"{stem}_max"


def _ordered(cfg: SyntheticConfig, stem: str) -> bool:
    lo, hi = _bounds(stem)
    return getattr(cfg, lo) <= getattr(cfg, hi)


# ----------------------------------------------------------------------------------------------
# Physics helpers


def p_radiation(strike: np.ndarray, dip: np.ndarray, rake: np.ndarray, azimuth: np.ndarray,
                takeoff: np.ndarray) -> np.ndarray:
    """Far-field P radiation of a double couple (Aki & Richards 2002, eq. 4.89), angles in degrees.

    Take-off is measured from the downward vertical, azimuth and strike clockwise from north.
    Returns values in [-1, 1]; positive = compression (first motion up on the vertical).
    """
    phi = np.radians(azimuth - strike)
    d, lam, i = np.radians(dip), np.radians(rake), np.radians(takeoff)
    return (np.cos(lam) * np.sin(d) * np.sin(i) ** 2 * np.sin(2 * phi)
            - np.cos(lam) * np.cos(d) * np.sin(2 * i) * np.cos(phi)
            + np.sin(lam) * np.sin(2 * d) * (np.cos(i) ** 2 - np.sin(i) ** 2 * np.sin(phi) ** 2)
            + np.sin(lam) * np.cos(2 * d) * np.sin(2 * i) * np.sin(phi))


# Peterson (1993) new low / high noise models: PSD of acceleration in dB re 1 (m/s^2)^2/Hz,
# A + B log10(T) for period T in [P_i, P_i+1).
_NLNM = np.array([
    [0.10, -162.36, 5.64], [0.17, -166.70, 0.00], [0.40, -170.00, -8.30], [0.80, -166.40, 28.90],
    [1.24, -168.60, 52.48], [2.40, -159.98, 29.81], [4.30, -141.10, 0.00], [5.00, -71.36, -99.77],
    [6.00, -97.26, -66.49], [10.00, -132.18, -31.57], [12.00, -205.27, 36.16], [15.60, -37.65, -104.33],
    [21.90, -114.37, -47.10], [31.60, -160.58, -16.28], [45.00, -187.50, 0.00], [70.00, -216.47, 15.70],
    [101.00, -185.00, 0.00], [154.00, -168.34, -7.61], [328.00, -217.43, 11.90], [600.00, -258.28, 26.60],
    [10000.0, -346.88, 48.75]])
_NHNM = np.array([
    [0.10, -108.73, -17.23], [0.22, -150.34, -80.50], [0.32, -122.31, -23.87], [0.80, -116.85, 32.51],
    [3.80, -108.48, 18.08], [4.60, -74.66, -32.95], [6.30, 0.66, -127.18], [7.90, -93.37, -22.42],
    [15.40, 73.54, -162.98], [20.00, -151.52, 10.01], [354.80, -206.66, 31.63]])


def peterson_db(model: np.ndarray, period: np.ndarray) -> np.ndarray:
    """Acceleration PSD (dB) of a Peterson model at the given periods (the first segment extends to
    shorter periods)."""
    idx = np.clip(np.searchsorted(model[:, 0], period, side="right") - 1, 0, len(model) - 1)
    return model[idx, 1] + model[idx, 2] * np.log10(period)


@functools.lru_cache(maxsize=8)
def _tstar_table(nfft: int, fs: float, lo: float, hi: float, levels: int = 256,
                 fir_len: int = 512, nfft_hi: int = 16384):
    """Causal minimum-phase t* operators |A(f)| = exp(-pi f t*) on a grid of log10 t* in [lo, hi].

    Each operator is built by the folded real cepstrum on a fine grid, then truncated to a FIR of
    ``fir_len`` samples starting at lag 0 (exactly causal). Returns (log10 t* grid, rfft spectra at
    ``nfft``, shape (levels, nfft // 2 + 1)).
    """
    grid = np.linspace(lo, hi, levels) if hi > lo else np.array([lo])
    f = np.fft.rfftfreq(nfft_hi, 1.0 / fs)
    log_amp = -np.pi * f[None, :] * (10.0 ** grid)[:, None]
    ceps = np.fft.irfft(log_amp, nfft_hi, axis=1)
    fold = np.zeros_like(ceps)
    half = nfft_hi // 2
    fold[:, 0] = ceps[:, 0]
    fold[:, 1:half] = 2.0 * ceps[:, 1:half]
    fold[:, half] = ceps[:, half]
    h = np.fft.irfft(np.exp(np.fft.rfft(fold, axis=1)), nfft_hi, axis=1)[:, :fir_len]
    spectra = np.fft.rfft(h, nfft, axis=1)
    spectra.flags.writeable = False
    return grid, spectra


def _nfft_for(cfg: SyntheticConfig) -> int:
    # Buffer long enough that the slowest causal tail (a 120 s broadband sensor's and a 0.5 Hz Brune
    # pulse's) wrapping around the FFT circle stays far below the trace's peak.
    need = cfg.trace_length + int(round(30.0 * cfg.sampling_rate))
    return int(2 ** np.ceil(np.log2(need)))


class _Grid:
    """The rfft frequency grid of one chunk: frequencies, z^-1 and the bilinear-transform s."""

    def __init__(self, nfft: int, fs: float) -> None:
        self.nfft, self.fs = nfft, fs
        self.nf = nfft // 2 + 1
        self.f = np.fft.rfftfreq(nfft, 1.0 / fs)
        self.roots = np.exp(-2j * np.pi * np.arange(nfft) / nfft)  # z^-1 at every grid index, wrapped
        self.zinv = self.roots[None, :self.nf]

    def delay(self, samples: np.ndarray) -> np.ndarray:
        """z^-k per trace, ``(n, nf)``, for integer sample delays k (a table look-up: exact and
        much cheaper than a complex exponential)."""
        return self.roots[(np.asarray(samples)[:, None] * np.arange(self.nf)[None, :]) % self.nfft]


DAMPING_STEP = 0.05  # damping ratios are quantised to this step (a table of responses per grid)


@functools.lru_cache(maxsize=4)
def _instrument_table(nfft: int, fs: float) -> np.ndarray:
    """Causal instrument responses for ground velocity in, ``(kinds, damping levels, nf)``.

    A velocity sensor with natural frequency f0 and damping h, H(s) = s^2 / (s^2 + 2 h w0 s + w0^2),
    by the bilinear transform (numerator and denominator multiplied by (1 + z^-1)^2 so that nothing
    divides by zero at Nyquist); the accelerometer is a causal first difference of velocity.
    Damping level j is h = (j + 1) * DAMPING_STEP.
    """
    zinv = np.exp(-2j * np.pi * np.arange(nfft // 2 + 1) / nfft)[None, None, :]
    w0 = 2.0 * np.pi * np.array([i[1] for i in INSTRUMENTS])[:, None, None]
    h = (np.arange(int(round(1.0 / DAMPING_STEP))) + 1.0)[None, :, None] * DAMPING_STEP
    a = 2.0 * fs * (1.0 - zinv)   # s (1 + z^-1)
    b = 1.0 + zinv
    table = a * a / (a * a + 2.0 * h * w0 * a * b + (w0 * b) ** 2)
    table[ACCELEROMETER] = 1.0 - zinv[0]
    table.flags.writeable = False
    return table


def _instrument_response(grid: _Grid, kind: np.ndarray, damping: np.ndarray) -> np.ndarray:
    """Per-trace instrument response ``(n, nf)`` from the table (damping to the nearest level)."""
    table = _instrument_table(grid.nfft, grid.fs)
    level = np.clip(np.rint(damping / DAMPING_STEP).astype(np.int64) - 1, 0, table.shape[1] - 1)
    return table[kind.astype(np.int64), level]


def _site_response(grid: _Grid, par: dict[str, np.ndarray], sl: slice) -> np.ndarray:
    """Layer over half-space: resonance 1 / (1 - r z^-tau) times echo 1 + g z^-d (both causal)."""
    resonance = 1.0 / (1.0 - par["reverb_r"][sl][:, None] * grid.delay(par["reverb_tau"][sl]))
    echo = 1.0 + par["echo_g"][sl][:, None] * grid.delay(par["echo_d"][sl])
    return resonance * echo


@functools.lru_cache(maxsize=4)
def _antialias_table(nfft: int, fs: float, levels: int = 101) -> np.ndarray:
    """Zero-phase (linear-phase, delay removed) low-passes of a decimating resampler: flat to 0.8 x
    the cut-off, a cosine taper to zero at it; row j has its cut-off at j / (levels - 1) x Nyquist
    (row 0: no filter)."""
    f = np.fft.rfftfreq(nfft, 1.0 / fs)[None, :]
    edge = np.linspace(0.0, 1.0, levels)[:, None] * fs / 2.0
    x = np.clip((f - 0.8 * edge) / np.maximum(0.2 * edge, 1e-9), 0.0, 1.0)
    table = np.cos(0.5 * np.pi * x) ** 2
    table[0] = 1.0
    table.flags.writeable = False
    return table


def _boxcar(grid: _Grid, samples: np.ndarray) -> np.ndarray:
    """A causal moving average over ``samples`` (>= 1) per trace, ``(n, nf)``: (1 - z^-D) / (D (1 - z^-1))."""
    out = np.ones((len(samples), grid.nf), dtype=complex)
    out[:, 1:] = (1.0 - grid.delay(samples)[:, 1:]) / (samples[:, None] * (1.0 - grid.zinv[:, 1:]))
    return out


def _antialias_response(grid: _Grid, cutoff: np.ndarray) -> np.ndarray:
    """Per-trace anti-alias response ``(n, nf)``; ``cutoff`` is a fraction of Nyquist, 0 = none."""
    table = _antialias_table(grid.nfft, grid.fs)
    return table[np.rint(cutoff * (len(table) - 1)).astype(np.int64)]


def _noise_shapes(cfg: SyntheticConfig, nfft: int) -> tuple[np.ndarray, np.ndarray]:
    """Velocity PSD (dB) of the low / high noise models on the rfft grid (DC set far below)."""
    f = np.fft.rfftfreq(nfft, 1.0 / cfg.sampling_rate)
    f[0] = f[1] / 2.0
    period = 1.0 / f
    to_vel = -20.0 * np.log10(2.0 * np.pi * f)  # acceleration -> velocity PSD
    lo = peterson_db(_NLNM, period) + to_vel
    hi = peterson_db(_NHNM, period) + to_vel
    lo[0] = hi[0] = -400.0
    return lo, hi


# ----------------------------------------------------------------------------------------------
# Per-trace parameters (cheap, drawn for all traces at once)


def _log_uniform(rng: np.random.Generator, lo: float, hi: float, size) -> np.ndarray:
    return np.exp(rng.uniform(np.log(lo), np.log(hi), size))


def _signed(rng: np.random.Generator, values: np.ndarray) -> np.ndarray:
    return values * np.where(rng.random(values.shape) < 0.5, -1.0, 1.0)


def _draw_events(cfg: SyntheticConfig, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Event ids per trace and, per event, the focal mechanism, magnitude and Brune corner."""
    max_events = n // cfg.stations_min + 1
    per_event = rng.integers(cfg.stations_min, cfg.stations_max + 1, size=max_events)
    evids = np.repeat(np.arange(max_events, dtype=np.int64), per_event)[:n]
    n_events = int(evids[-1]) + 1 if n else 0
    strike = rng.uniform(0.0, 360.0, n_events)
    dip = np.degrees(np.arccos(rng.uniform(0.0, 1.0, n_events)))
    rake = rng.uniform(-180.0, 180.0, n_events)
    mw = rng.uniform(cfg.magnitude_min, cfg.magnitude_max, n_events)
    stress = _log_uniform(rng, cfg.stress_drop_min_mpa, cfg.stress_drop_max_mpa, n_events) * 1e6
    # Brune: M0 = 16/7 stress r^3, fc = 2.34 beta / (2 pi r), beta = 3500 m/s.
    m0 = 10.0 ** (1.5 * mw + 9.1)
    radius = (7.0 * m0 / (16.0 * stress)) ** (1.0 / 3.0)
    corner = 2.34 * 3500.0 / (2.0 * np.pi * radius)
    rupture = radius / (cfg.rupture_speed_fraction * 3500.0)  # s
    return dict(evids=evids, strike=strike[evids], dip=dip[evids], rake=rake[evids],
                magnitude=mw[evids], corner=corner[evids], rupture=rupture[evids])


def _draw_path_and_site(cfg: SyntheticConfig, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    fs = cfg.sampling_rate
    distance = _log_uniform(rng, cfg.distance_min_km, cfg.distance_max_km, n)
    span = np.log(cfg.distance_max_km / cfg.distance_min_km)
    frac = np.log(distance / cfg.distance_min_km) / span if span > 0 else np.zeros(n)
    frac = np.clip(frac + rng.normal(0.0, 0.15, n), 0.0, 1.0)
    log_tstar = cfg.tstar_log10_min + (cfg.tstar_log10_max - cfg.tstar_log10_min) * frac
    has_reverb = rng.random(n) < cfg.reverb_fraction
    reverb_r = np.where(has_reverb, rng.uniform(-cfg.reverb_max, cfg.reverb_max, n), 0.0)
    reverb_tau = np.round(rng.uniform(cfg.reverb_delay_min, cfg.reverb_delay_max, n) * fs).astype(np.int64)
    has_echo = rng.random(n) < cfg.echo_fraction
    echo_g = np.where(has_echo, _signed(rng, _log_uniform(rng, cfg.echo_gain_min, cfg.echo_gain_max, n)), 0.0)
    echo_d = np.round(_log_uniform(rng, cfg.echo_delay_min, cfg.echo_delay_max, n) * fs).astype(np.int64)
    weights = np.asarray(cfg.instrument_weights)
    kind = rng.choice(len(INSTRUMENTS), size=n, p=weights / weights.sum()).astype(np.int8)
    geophone_h = rng.uniform(cfg.geophone_damping_min, cfg.geophone_damping_max, n)
    fixed_h = np.array([i[2] if i[2] is not None else np.nan for i in INSTRUMENTS])[kind]
    damping = np.where(np.isnan(fixed_h), geophone_h, fixed_h)
    resampled = rng.random(n) < cfg.resample_fraction
    antialias = np.where(resampled, rng.uniform(cfg.antialias_min, cfg.antialias_max, n), 0.0)
    return dict(distance=distance, log_tstar=log_tstar, reverb_r=reverb_r, reverb_tau=np.maximum(reverb_tau, 1),
                echo_g=echo_g, echo_d=np.maximum(echo_d, 1), instrument=kind, damping=damping,
                antialias=antialias)


def _draw_wavefield(cfg: SyntheticConfig, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Onset shape, later arrivals, coda, noise and record artefacts."""
    fs = cfg.sampling_rate
    emergent = rng.random(n) < cfg.emergent_fraction
    ramp = np.maximum(1, np.round(rng.uniform(cfg.emergent_ramp_min, cfg.emergent_ramp_max, n) * fs))
    n_later = rng.integers(cfg.later_min, cfg.later_max + 1, size=n)
    later_amp = _signed(rng, rng.uniform(cfg.later_amp_min, cfg.later_amp_max, (n, _MAX_LATER)))
    return dict(
        emergent=emergent, ramp=np.where(emergent, ramp, 1).astype(np.int64),
        later_delay=np.round(rng.uniform(cfg.later_delay_min, cfg.later_delay_max, (n, _MAX_LATER)) * fs),
        later_amp=later_amp * (np.arange(_MAX_LATER)[None, :] < n_later[:, None]),
        coda_amp=_log_uniform(rng, cfg.coda_amp_min, cfg.coda_amp_max, n),
        coda_rise=rng.uniform(cfg.coda_rise_min, cfg.coda_rise_max, n) * fs,
        coda_decay=rng.uniform(cfg.coda_decay_min, cfg.coda_decay_max, n) * fs,
        snr=rng.uniform(cfg.snr_min_db, cfg.snr_max_db, n),
        noise_mix=rng.random(n),
        powerlaw=rng.random(n) < cfg.powerlaw_noise_fraction,
        noise_slope=rng.uniform(cfg.noise_slope_min, cfg.noise_slope_max, n),
        spikes=rng.random(n) < cfg.spike_fraction, dc=rng.random(n) < cfg.dc_fraction,
        trend=rng.random(n) < cfg.trend_fraction, clip=rng.random(n) < cfg.clip_fraction)


def _draw_picks_and_labels(cfg: SyntheticConfig, par: dict[str, np.ndarray], rng: np.random.Generator) -> None:
    fs, n = cfg.sampling_rate, len(par["evids"])
    kind = rng.random(n)  # < noise_only: noise-only; < noise_only + mispick: mispick; else normal
    noise_only = kind < cfg.noise_only_fraction
    mispick = (~noise_only) & (kind < cfg.noise_only_fraction + cfg.mispick_fraction)
    p_pick = rng.integers(cfg.pick_min, cfg.pick_max + 1, size=n)
    jitter = np.clip(rng.normal(0.0, cfg.jitter_std_samples, n), -5 * cfg.jitter_std_samples,
                     5 * cfg.jitter_std_samples)
    gross = _signed(rng, rng.uniform(cfg.mispick_min, cfg.mispick_max, n) * fs)
    error = np.round(np.where(mispick, gross, jitter)).astype(np.int64)
    flip = rng.random(n) < cfg.flip_fraction
    amplitude = par["amplitude"]
    labels = np.where(amplitude > 0, UP, DOWN).astype(np.int64)
    unknown = noise_only | mispick | (np.abs(amplitude) < cfg.nodal_threshold) | (par["snr"] < cfg.unknown_snr_db)
    par.update(
        noise_only=noise_only, mispick=mispick, p_pick=p_pick,
        p_true=np.clip(p_pick - error, 1, cfg.trace_length - 1),
        labels=np.where(unknown, UNKNOWN, np.where(flip, 1 - labels, labels)),
        clarity=np.where(unknown, b"K", np.where(par["emergent"], b"E", b"I")).astype("S1"),
        amplitude=np.where(noise_only, 0.0, amplitude))


def _draw_parameters(cfg: SyntheticConfig, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    par = _draw_events(cfg, n, rng)
    azimuth = rng.uniform(0.0, 360.0, n)
    takeoff = rng.uniform(cfg.takeoff_min_deg, cfg.takeoff_max_deg, n)
    par["amplitude"] = p_radiation(par["strike"], par["dip"], par["rake"], azimuth, takeoff)
    directivity = rng.uniform(cfg.directivity_min, cfg.directivity_max, n)
    par["rupture_samples"] = np.maximum(1, np.round(par.pop("rupture") * directivity * cfg.sampling_rate)
                                        ).astype(np.int64)
    par.update(_draw_path_and_site(cfg, n, rng))
    par["gain"] = 10.0 ** (0.8 * par["magnitude"] + 2.0 - 1.5 * np.log10(par["distance"]))  # counts
    par.update(_draw_wavefield(cfg, n, rng))
    _draw_picks_and_labels(cfg, par, rng)
    return par


# ----------------------------------------------------------------------------------------------
# Waveforms (vectorised per chunk)


def _direct_wavelet(cfg: SyntheticConfig, par: dict[str, np.ndarray], sl: slice, grid: _Grid
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Spectrum of the direct P wavelet before the site (source, emergent ramp, t*, instrument,
    anti-alias), scaled to a peak of 1, and the peak-normalised wavelet's RMS energy."""
    n = sl.stop - sl.start
    # Brune by impulse invariance, h[n] = (n+1) p^(n+1); velocity by a causal difference (1 - z^-1).
    p = np.exp(-2.0 * np.pi * par["corner"][sl] / grid.fs)[:, None]
    spec = p / (1.0 - p * grid.zinv) ** 2 * (1.0 - grid.zinv) * _boxcar(grid, par["rupture_samples"][sl])
    ramp = par["ramp"][sl]
    emergent = ramp > 1
    if emergent.any():  # a causal amplitude envelope: zero before the onset, so the sign is kept
        w = np.fft.irfft(spec[emergent], grid.nfft, axis=1)
        w *= np.minimum((np.arange(grid.nfft)[None, :] + 1.0) / ramp[emergent][:, None], 1.0)
        spec[emergent] = np.fft.rfft(w, axis=1)
    levels, tstar_spec = _tstar_table(grid.nfft, grid.fs, cfg.tstar_log10_min, cfg.tstar_log10_max)
    idx = np.zeros(n, dtype=np.int64)
    if len(levels) > 1:
        idx = np.clip(np.rint((par["log_tstar"][sl] - levels[0]) / (levels[1] - levels[0])), 0, len(levels) - 1)
    instrument = _instrument_response(grid, par["instrument"][sl], par["damping"][sl])
    spec = spec * tstar_spec[idx.astype(np.int64)] * instrument * _antialias_response(grid, par["antialias"][sl])
    w = np.fft.irfft(spec, grid.nfft, axis=1)
    peak = np.abs(w).max(axis=1)
    energy = np.sqrt((w ** 2).sum(axis=1)) / peak
    return spec / peak[:, None], energy


def _excitation(cfg: SyntheticConfig, par: dict[str, np.ndarray], sl: slice, nfft: int, energy: np.ndarray,
                rng: np.random.Generator) -> np.ndarray:
    """Impulses of the direct P and later arrivals plus the scattered coda, ``(n, nfft)``."""
    L, n = cfg.trace_length, sl.stop - sl.start
    gain, amp, onset = par["gain"][sl], par["amplitude"][sl], par["p_true"][sl]
    rows = np.arange(n)
    excitation = np.zeros((n, nfft))
    excitation[rows, onset] = gain * amp
    delays = onset[:, None] + par["later_delay"][sl].astype(np.int64)
    later = gain[:, None] * par["later_amp"][sl]
    inside = delays < L
    np.add.at(excitation, (np.broadcast_to(rows[:, None], delays.shape)[inside], delays[inside]), later[inside])
    # Coda: scattered energy that builds up from the onset (zero at it) and decays.
    t = np.arange(L)[None, :] - onset[:, None]
    tp = np.maximum(t, 0)
    envelope = np.where(t >= 0, (1.0 - np.exp(-tp / par["coda_rise"][sl][:, None]))
                        * np.exp(-tp / par["coda_decay"][sl][:, None]), 0.0)
    coda_scale = gain * np.abs(amp) * par["coda_amp"][sl] / energy
    excitation[:, :L] += coda_scale[:, None] * envelope * rng.standard_normal((n, L))
    excitation[par["noise_only"][sl]] = 0.0
    return excitation


def _noise(cfg: SyntheticConfig, par: dict[str, np.ndarray], sl: slice, grid: _Grid, noise_db: tuple,
           rng: np.random.Generator) -> np.ndarray:
    """Unit-std coloured Gaussian noise through the instrument (and anti-alias), ``(n, L)``.

    Noise is stationary, so a random-phase spectrum on a short grid (``grid`` just longer than the
    trace) gives it directly: no causal tail to keep, four times less work than the signal's grid.
    """
    n = sl.stop - sl.start
    lo_db, hi_db = noise_db
    mix = par["noise_mix"][sl][:, None]
    peterson = 10.0 ** ((lo_db + mix * (hi_db - lo_db)) / 20.0)
    f = np.maximum(grid.f, grid.f[1] / 2.0)[None, :]
    powerlaw = f ** par["noise_slope"][sl][:, None]
    shape = np.where(par["powerlaw"][sl][:, None], powerlaw, peterson)
    shape = shape * _instrument_response(grid, par["instrument"][sl], par["damping"][sl])
    shape = shape * _antialias_response(grid, par["antialias"][sl])
    spec = (rng.standard_normal((n, grid.nf)) + 1j * rng.standard_normal((n, grid.nf))) * shape
    noise = np.fft.irfft(spec, grid.nfft, axis=1)[:, :cfg.trace_length]
    noise -= noise.mean(axis=1, keepdims=True)
    return noise / np.maximum(noise.std(axis=1, keepdims=True), 1e-30)


def _artefacts(x: np.ndarray, par: dict[str, np.ndarray], sl: slice, sigma: np.ndarray,
               rng: np.random.Generator) -> None:
    """Spikes, DC offsets, linear trends and clipping, in place, each on its share of the traces."""
    n, L = x.shape
    peak = np.abs(x).max(axis=1)
    spikes = np.where(par["spikes"][sl])[0]
    if len(spikes):
        cols = rng.integers(0, L, (len(spikes), 3))
        size = _signed(rng, rng.uniform(3.0, 30.0, (len(spikes), 3))) * sigma[spikes, None]
        size *= rng.random((len(spikes), 3)) < 0.6
        np.add.at(x, (np.repeat(spikes, 3), cols.ravel()), size.ravel())
    offset = rng.uniform(-0.3, 0.3, n) * peak * par["dc"][sl]
    slope = rng.uniform(-0.3, 0.3, n) * peak * par["trend"][sl]
    x += offset[:, None] + slope[:, None] * np.linspace(-1.0, 1.0, L)[None, :]
    level = rng.uniform(0.3, 0.9, n) * np.abs(x).max(axis=1)
    clip = par["clip"][sl]
    x[clip] = np.clip(x[clip], -level[clip, None], level[clip, None])


def _synthesise_chunk(cfg: SyntheticConfig, par: dict[str, np.ndarray], sl: slice,
                      rng: np.random.Generator, grid: _Grid, noise_grid: _Grid, noise_db: tuple) -> np.ndarray:
    wavelet, energy = _direct_wavelet(cfg, par, sl, grid)
    wavelet = wavelet * _site_response(grid, par, sl)
    excitation = _excitation(cfg, par, sl, grid.nfft, energy, rng)
    x = np.fft.irfft(np.fft.rfft(excitation, axis=1) * wavelet, grid.nfft, axis=1)[:, :cfg.trace_length]
    if cfg.noise:
        amp = np.abs(np.where(par["noise_only"][sl], 1.0, par["amplitude"][sl]))
        sigma = par["gain"][sl] * amp * 10.0 ** (-par["snr"][sl] / 20.0)
        x += sigma[:, None] * _noise(cfg, par, sl, noise_grid, noise_db, rng)
        _artefacts(x, par, sl, sigma, rng)
    return x.astype(np.float32)


def synthesise(num_traces: int = 20000, seed: int = 0, config: SyntheticConfig | None = None
               ) -> dict[str, np.ndarray]:
    """Generate the data set in memory: a dict with the flat-file keys (see module docstring)."""
    cfg = config or SyntheticConfig()
    n = int(num_traces)
    if n < 1:
        raise ValueError(f"num_traces must be >= 1, got {num_traces}")
    root = np.random.SeedSequence([int(seed), 0x5E15])
    par_seq, *chunk_seqs = root.spawn(1 + (n + CHUNK - 1) // CHUNK)
    par = _draw_parameters(cfg, n, np.random.default_rng(par_seq))
    grid = _Grid(_nfft_for(cfg), cfg.sampling_rate)
    noise_grid = _Grid(int(2 ** np.ceil(np.log2(cfg.trace_length))), cfg.sampling_rate)
    noise_db = _noise_shapes(cfg, noise_grid.nfft)
    X = np.empty((n, cfg.trace_length), dtype=np.float32)
    for k, cs in enumerate(chunk_seqs):
        sl = slice(k * CHUNK, min(n, (k + 1) * CHUNK))
        X[sl] = _synthesise_chunk(cfg, par, sl, np.random.default_rng(cs), grid, noise_grid, noise_db)
    snr = np.where(par["noise_only"], NO_SIGNAL_SNR_DB, par["snr"])
    return {
        "X": X,
        "Y": par["labels"].astype(np.int64),
        "p_pick": par["p_pick"].astype(np.int64),
        "p_true": np.where(par["noise_only"], -1, par["p_true"]).astype(np.int64),
        "snr": snr.astype(np.float32),
        "amplitude": par["amplitude"].astype(np.float32),
        "evids": par["evids"].astype(np.int64),
        "magnitude": par["magnitude"].astype(np.float32),
        "distance": par["distance"].astype(np.float32),
        "instrument": par["instrument"].astype(np.int8),
        "Z": par["clarity"].astype("S1"),
    }


# ----------------------------------------------------------------------------------------------
# Files


def _attrs(cfg: SyntheticConfig, num_traces: int, seed: int) -> dict[str, Any]:
    return {
        "sampling_rate": float(cfg.sampling_rate),
        "label_map": LABEL_MAP_JSON,
        "generator": GENERATOR,
        "generator_version": int(GENERATOR_VERSION),
        "seed": int(seed),
        "num_traces": int(num_traces),
        "knobs": cfg.to_json(),
    }


def generate_synthetic(path: str | os.PathLike, num_traces: int = 20000, seed: int = 0,
                       **knobs: Any) -> pathlib.Path:
    """Write a synthetic flat-layout HDF5 file and return its path.

    Args:
        path: output file; written atomically (``folders.atomic_file``: a per-process temporary file
            beside it, then ``os.replace``), parents created.
        num_traces: number of traces N.
        seed: random seed; the same seed, N and knobs give a byte-identical file.
        **knobs: fields of :class:`SyntheticConfig` (an unknown name raises TypeError).
    """
    import h5py

    cfg = SyntheticConfig.from_knobs(**knobs)
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = synthesise(num_traces, seed, cfg)
    # atomic_file: a per-process temporary file (parallel sweep jobs may generate the same cache at once)
    with atomic_file(path) as tmp, h5py.File(tmp, "w", track_order=False) as f:
        for key, value in data.items():
            f.create_dataset(key, data=value, track_times=False)
        for key, value in _attrs(cfg, num_traces, seed).items():
            f.attrs[key] = value
    log.info("wrote %d synthetic traces (seed %d) to %s", num_traces, seed, path)
    return path


def ensure_synthetic(path: str | os.PathLike, num_traces: int = 20000, seed: int = 0,
                     **knobs: Any) -> pathlib.Path:
    """Return ``path`` if it holds a synthetic set with the same N, seed, knobs and recipe version;
    otherwise (missing, different or unreadable) generate it there."""
    import h5py

    cfg = SyntheticConfig.from_knobs(**knobs)
    path = pathlib.Path(path)
    if path.is_file():
        want = _attrs(cfg, num_traces, seed)
        try:
            with h5py.File(path, "r") as f:
                have = {k: f.attrs.get(k) for k in want}
                n_rows = f["X"].shape[0] if "X" in f else -1
            have = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in have.items()}
            same = n_rows == int(num_traces) and all(
                have[k] is not None and (json.loads(have[k]) == json.loads(v) if k == "knobs" else have[k] == v)
                for k, v in want.items())
        except (OSError, KeyError, ValueError) as exc:
            log.warning("cached synthetic file %s is unreadable (%s); regenerating", path, exc)
            same = False
        if same:
            log.info("using cached synthetic data %s", path)
            return path
        log.info("cached synthetic data %s differs from the request; regenerating", path)
    return generate_synthetic(path, num_traces=num_traces, seed=seed, **knobs)


__all__ = ["SyntheticConfig", "generate_synthetic", "ensure_synthetic", "synthesise", "p_radiation",
           "peterson_db", "NO_SIGNAL_SNR_DB", "GENERATOR", "GENERATOR_VERSION", "INSTRUMENTS"]
