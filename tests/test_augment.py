"""Training-time augmentations (seispolarity.data.augment) and class balance (Trainer).

What is checked, on real tensors and real files (nothing mocked):
- flip: a flipped trace is bit for bit the negated trace; up <-> down swap, unknown stays unknown;
- time shift: the waveform itself moves (the crop is a slice of the stored window) and the P-index
  target follows it;
- noise: the SNR of what is added is the requested one (measured);
- scale: one factor per trace, inside the range, labels untouched;
- band-pass: causal (nothing before an impulse) and equal to scipy's sosfilt from rest;
- validation / test: Trainer.evaluate applies none of them (deterministic, equal to a Trainer
  without augmentation, and the shift margin of the stored windows changes nothing);
- the ops take a whole batch at once, on whatever device it lives on;
- the fused training path (flip and scale as one factor folded into the normalisation, noise drawn
  only for the traces that get it) keeps the distributions: shares, shifts, SNRs, Gaussian noise;
- class balance: the sampler gives ~balanced classes per epoch; weights change the loss.
"""
from __future__ import annotations

import math

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from seispolarity import WaveformDataset
from seispolarity.data.augment import (
    AugmentConfig,
    NoiseBank,
    augment,
    causal_bandpass,
    crop,
    flip_polarity,
    prepare_batch,
)
from seispolarity.data.labels import DOWN, UNKNOWN, UP
from seispolarity.models import Ross
from seispolarity.training import Trainer, TrainingConfig

NONE = dict(flip_prob=0.0, noise_prob=0.0, max_shift=0, scale_prob=0.0, bandpass_prob=0.0)


def cfg(**kw) -> AugmentConfig:
    return AugmentConfig(**{**NONE, **kw})


def gen(seed: int = 0, device: str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def random_batch(b: int = 64, c: int = 1, length: int = 400, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, c, length, generator=g)
    labels = torch.arange(b) % 3
    return x, labels


def write_pulses(path, n: int = 60, length: int = 700, labels=None, seed: int = 0, noise: float = 0.05):
    """A flat-layout file: noise + a signed pulse at a per-trace P pick; labels i % 3 by default."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3 if labels is None else np.asarray(labels)
    p = rng.integers(250, length - 250, size=len(labels))
    x = rng.normal(0.0, noise, size=(len(labels), length)).astype(np.float32)
    for i, (y, pi) in enumerate(zip(labels, p)):
        sign = {UP: 1.0, DOWN: -1.0, UNKNOWN: 0.0}[int(y)]
        x[i, pi:pi + 30] += sign * np.hanning(30).astype(np.float32)
    with h5py.File(path, "w") as f:
        f["X"], f["Y"], f["p_pick"], f["evids"] = x, labels, p, np.arange(len(labels)) // 2
        f.attrs["sampling_rate"] = 100.0
    return path


# ----------------------------------------------------------------------------------------------
# flip
# ----------------------------------------------------------------------------------------------
def test_flip_negates_bit_for_bit_and_swaps_up_down_only():
    x, labels = random_batch()
    mask = torch.arange(len(x)) % 2 == 0
    out, new = flip_polarity(x, labels, mask)
    assert torch.equal(out[mask], -x[mask]) and torch.equal(out[~mask], x[~mask])
    swap = {UP: DOWN, DOWN: UP, UNKNOWN: UNKNOWN}
    for m, y, z in zip(mask.tolist(), labels.tolist(), new.tolist()):
        assert z == (swap[y] if m else y)


@pytest.mark.parametrize("prob", [0.5, 1.0])
def test_flip_through_prepare_batch_keeps_every_label_consistent(prob):
    """Through the Trainer's own path (crop, augment, peak normalisation): each trace is either
    untouched with its label, or bit for bit the negated trace with up/down swapped."""
    x, labels = random_batch(b=200, length=410)
    batch = {"waveforms": x, "labels": labels}
    ref, ref_labels, _ = prepare_batch(batch, 400, "peak")  # no augmentation
    out, new, targets = prepare_batch(batch, 400, "peak", cfg(flip_prob=prob), gen(1))
    flipped = torch.tensor([torch.equal(o, -r) for o, r in zip(out, ref)])
    same = torch.tensor([torch.equal(o, r) for o, r in zip(out, ref)])
    assert bool((flipped | same).all())
    assert torch.equal(new[flipped & (labels == UP)], torch.full_like(new[flipped & (labels == UP)], DOWN))
    assert torch.equal(new[flipped & (labels == DOWN)], torch.full_like(new[flipped & (labels == DOWN)], UP))
    assert bool((new[labels == UNKNOWN] == UNKNOWN).all())
    assert torch.equal(new[same], ref_labels[same]) and torch.equal(targets["labels"], new)
    share = flipped.float().mean().item()
    assert share == 1.0 if prob == 1.0 else 0.35 < share < 0.65


def test_flip_of_a_real_up_trace_is_a_real_down_trace(tmp_path):
    """On windows read from a file: the flipped 'up' window equals the negated window, labelled down."""
    ds = WaveformDataset(write_pulses(tmp_path / "p.hdf5"), name="flat", preload=True, normalize="none")
    batch = ds.get_batch(torch.arange(len(ds)))
    out, new, _ = prepare_batch(batch, 400, "none", cfg(flip_prob=1.0), gen(0))
    ref, _, _ = prepare_batch(batch, 400, "none")
    assert torch.equal(out, -ref)
    assert torch.equal(new, torch.tensor([{0: 1, 1: 0, 2: 2}[int(y)] for y in ds.labels]))


# ----------------------------------------------------------------------------------------------
# time shift
# ----------------------------------------------------------------------------------------------
def test_time_shift_moves_the_waveform_and_the_p_target_follows():
    b, m, length = 300, 7, 400
    stored = length + 2 * m
    x = torch.zeros(b, 1, stored)
    centre = stored // 2
    x[:, 0, centre] = 1.0  # an impulse at P (the centre of the stored window)
    x[:, 0, :] += torch.arange(stored) * 1e-3  # and a ramp: every sample is distinct
    batch = {"waveforms": x, "labels": torch.zeros(b, dtype=torch.long),
             "p_index": torch.full((b,), centre, dtype=torch.long)}
    out, _, targets = prepare_batch(batch, length, "none", cfg(max_shift=m), gen(3))
    p = targets["p_index"]
    # the impulse sits where the target says
    assert torch.equal(out[:, 0].argmax(dim=1), p)
    # the crop is the stored window moved by a whole number of samples (no interpolation)
    start = centre - p
    for i in range(b):
        assert torch.equal(out[i], x[i, :, start[i]:start[i] + length])
    shifts = (length // 2 - p)  # > 0: the waveform moved left (P earlier in the crop)
    assert int(shifts.abs().max()) <= m
    assert set(shifts.tolist()) == set(range(-m, m + 1))  # every shift in [-m, m] occurs
    # without augmentation the crop is centred: P exactly at length // 2
    out0, _, t0 = prepare_batch(batch, length, "none")
    assert bool((t0["p_index"] == length // 2).all()) and bool((out0[:, 0].argmax(dim=1) == length // 2).all())


def test_time_shift_on_a_real_file_with_per_trace_picks(tmp_path):
    ds = WaveformDataset(write_pulses(tmp_path / "p.hdf5", noise=0.0), name="flat", preload=True, max_shift=20,
                         normalize="none")
    assert ds.has_pick
    batch = ds.get_batch(torch.arange(len(ds)))
    out, labels, targets = prepare_batch(batch, 400, "none", cfg(max_shift=20), gen(5))
    onset = out[:, 0].abs().argmax(dim=1)  # the hanning(30) pulse peaks 14 samples after P
    moving = labels != UNKNOWN
    assert torch.equal((onset - targets["p_index"])[moving], torch.full((int(moving.sum()),), 14))
    assert len(set(targets["p_index"].tolist())) > 10


def test_crop_clamps_at_the_window_edges():
    x = torch.arange(20.0).reshape(1, 1, 20).repeat(3, 1, 1)
    out, start = crop(x, 10, torch.tensor([-100, 0, 100]))
    assert start.tolist() == [0, 5, 10]
    assert torch.equal(out[0, 0], torch.arange(10.0)) and torch.equal(out[2, 0], torch.arange(10.0, 20.0))


# ----------------------------------------------------------------------------------------------
# noise, scale, band-pass
# ----------------------------------------------------------------------------------------------
def test_noise_is_added_at_the_requested_snr():
    """SNR (dB) = 20 log10(std(trace) / std(added noise)) over the window, per trace."""
    b, length = 400, 2000
    t = torch.arange(length) / 100.0
    amp = torch.linspace(0.1, 100.0, b)[:, None, None]  # the SNR must not depend on the amplitude
    x = amp * torch.sin(2 * math.pi * 3.0 * t)[None, None, :]
    labels = torch.zeros(b, dtype=torch.long)
    out, new = augment(x.clone(), labels, cfg(noise_prob=1.0, noise_snr_db=[20.0, 20.0]), gen(7))
    noise = out - x
    snr = 20 * torch.log10(x.std(dim=(-2, -1)) / noise.std(dim=(-2, -1)))
    assert abs(snr.mean().item() - 20.0) < 0.1 and float((snr - 20.0).abs().max()) < 0.5
    assert abs(noise.mean().item()) < 0.05 * noise.std().item() and torch.equal(new, labels)
    # a range: every measured SNR inside it, and spread over it
    out, _ = augment(x.clone(), labels, cfg(noise_prob=1.0, noise_snr_db=[5.0, 40.0]), gen(8))
    snr = 20 * torch.log10(x.std(dim=(-2, -1)) / (out - x).std(dim=(-2, -1)))
    assert float(snr.min()) > 4.5 and float(snr.max()) < 40.5
    assert float(snr.min()) < 10 and float(snr.max()) > 35
    # noise_prob: that share of traces gets noise, the rest is untouched bit for bit
    out, _ = augment(x.clone(), labels, cfg(noise_prob=0.3, noise_snr_db=[10.0, 10.0]), gen(9))
    touched = (out != x).any(dim=2).any(dim=1).float().mean().item()
    assert 0.2 < touched < 0.4


def test_scale_is_one_factor_per_trace_inside_the_range():
    x, labels = random_batch(b=300)
    out, new = augment(x.clone(), labels, cfg(scale_prob=1.0, scale_range=[0.5, 2.0]), gen(2))
    factor = out[:, 0, :] / x[:, 0, :]
    per_trace = factor.median(dim=1).values
    assert torch.allclose(factor, per_trace[:, None].expand_as(factor), rtol=1e-5)
    assert float(per_trace.min()) >= 0.5 - 1e-6 and float(per_trace.max()) <= 2.0 + 1e-6
    assert float(per_trace.min()) < 0.6 and float(per_trace.max()) > 1.8 and torch.equal(new, labels)
    assert (per_trace < 1).float().mean().item() == pytest.approx(0.5, abs=0.1)  # log-uniform: symmetric


def test_bandpass_is_causal_and_equals_sosfilt_from_rest():
    from scipy.signal import butter, filtfilt, sosfilt

    length, onset = 400, 200
    x = torch.zeros(3, 1, length)
    x[0, 0, onset] = 1.0  # an impulse
    x[1, 0, onset:] = 1.0  # a step
    x[2, 0, onset:] = torch.randn(length - onset, generator=torch.Generator().manual_seed(0))
    y = causal_bandpass(x, 100.0, 1.0, 20.0, order=2)
    before, after = y[..., :onset].abs().max().item(), y[..., onset:].abs().max().item()
    assert before < 1e-6 * after  # nothing before the onset (float32 FFT rounding only)
    sos = butter(2, [1.0 / 50.0, 20.0 / 50.0], btype="band", output="sos")
    for i in range(3):
        ref = sosfilt(sos, x[i, 0].double().numpy())
        assert np.abs(ref - y[i, 0].double().numpy()).max() < 1e-5 * np.abs(ref).max()
    # a zero-phase filter (what this must not be) puts energy before the onset
    b, a = butter(2, [1.0 / 50.0, 20.0 / 50.0], btype="band")
    zero_phase = filtfilt(b, a, x[0, 0].double().numpy())
    assert np.abs(zero_phase[:onset]).max() > 1e-2 * np.abs(zero_phase).max()
    # through augment(): a filtered trace is still quiet before its onset
    out, _ = augment(x.clone(), torch.zeros(3, dtype=torch.long), cfg(bandpass_prob=1.0), gen(0))
    assert out[..., :onset].abs().max().item() < 1e-6 * out.abs().max().item()


# ----------------------------------------------------------------------------------------------
# whole batches, on the device
# ----------------------------------------------------------------------------------------------
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_all_ops_take_a_whole_batch_on_its_device(device):
    full = AugmentConfig(flip_prob=0.5, noise_prob=0.5, noise_snr_db=[5, 30], max_shift=5, scale_prob=0.5,
                         scale_range=[0.5, 2.0], bandpass_prob=0.5, bandpass_freqs=[1.0, 20.0])
    x, labels = random_batch(b=256, c=3, length=410)
    batch = {"waveforms": x.to(device), "labels": labels.to(device),
             "p_index": torch.full((256,), 205, device=device)}
    out, new, targets = prepare_batch(batch, 400, "peak", full, gen(0, device), 100.0)
    assert out.shape == (256, 3, 400) and out.device.type == device and new.device.type == device
    assert targets["p_index"].device.type == device and out.dtype == torch.float32
    assert bool(torch.isfinite(out).all())
    # one generator drives it: the same seed gives the same batch, another seed another one
    again, _, _ = prepare_batch(batch, 400, "peak", full, gen(0, device), 100.0)
    other, _, _ = prepare_batch(batch, 400, "peak", full, gen(1, device), 100.0)
    assert torch.equal(out, again) and not torch.equal(out, other)


def test_config_validation():
    with pytest.raises(ValueError, match="flip_prob"):
        AugmentConfig(flip_prob=1.5)
    with pytest.raises(ValueError, match="max_shift"):
        AugmentConfig(max_shift=-1)
    with pytest.raises(ValueError, match="noise_snr_db"):
        AugmentConfig(noise_snr_db=[30, 5])


# ----------------------------------------------------------------------------------------------
# none at validation / test
# ----------------------------------------------------------------------------------------------
def small_ross(num_classes: int = 3) -> Ross:
    torch.manual_seed(0)
    return Ross(num_classes=num_classes, base_channels=4, fc_units=16)


def test_evaluate_is_deterministic_and_applies_no_augmentation(tmp_path):
    path = write_pulses(tmp_path / "p.hdf5", n=90)
    aug = AugmentConfig(flip_prob=0.5, noise_prob=1.0, max_shift=10, scale_prob=1.0, bandpass_prob=1.0)
    conf = dict(device="cpu", batch_size=16, validation_split=0.0, save_dir=None, show_progress=False,
                num_workers=0)
    ds = WaveformDataset(path, name="flat", preload=True, max_shift=aug.max_shift)
    model = small_ross()
    augmented = Trainer(model, ds, TrainingConfig(**conf), augment=aug)
    state = augmented.augment_generator.get_state()
    first = augmented.evaluate(ds, return_predictions=True)
    second = augmented.evaluate(ds, return_predictions=True)
    assert torch.equal(augmented.augment_generator.get_state(), state)  # evaluation draws nothing
    assert np.array_equal(first["probabilities"], second["probabilities"])
    # the same model in a Trainer without augmentation, on windows stored without a shift margin
    plain_ds = WaveformDataset(path, name="flat", preload=True, max_shift=0)
    plain = Trainer(model, plain_ds, TrainingConfig(**conf), augment=None)
    third = plain.evaluate(plain_ds, return_predictions=True)
    assert np.array_equal(first["probabilities"], third["probabilities"])
    assert first["accuracy"] == third["accuracy"] and first["loss"] == third["loss"]
    # while a training batch through the same Trainer is augmented
    batch = ds.get_batch(torch.arange(16))
    x_train, _, _ = augmented.prepare_inputs(batch, train=True)
    x_eval, _, _ = augmented.prepare_inputs(batch, train=False)
    assert not torch.equal(x_train, x_eval)


# ----------------------------------------------------------------------------------------------
# class balance
# ----------------------------------------------------------------------------------------------
def imbalanced_file(tmp_path, n: int = 600):
    labels = np.array([UP] * int(0.8 * n) + [DOWN] * int(0.15 * n) + [UNKNOWN] * (n - int(0.8 * n) - int(0.15 * n)))
    labels = np.random.default_rng(0).permutation(labels)
    return write_pulses(tmp_path / "imbalanced.hdf5", labels=labels)


def test_sampler_gives_balanced_classes_per_epoch(tmp_path):
    ds = WaveformDataset(imbalanced_file(tmp_path), name="flat", preload=True)
    conf = dict(device="cpu", batch_size=50, validation_split=0.0, save_dir=None, show_progress=False,
                num_workers=0, seed=3)
    balanced = Trainer(small_ross(), ds, TrainingConfig(class_balance="sampler", **conf))
    for epoch in (1, 2):
        idx = torch.cat(balanced.epoch_batches(epoch))
        assert len(idx) == len(ds)
        share = torch.bincount(ds.labels[idx], minlength=3).float() / len(idx)
        assert bool(((share - 1 / 3).abs() < 0.06).all()), share
    assert not torch.equal(torch.cat(balanced.epoch_batches(1)), torch.cat(balanced.epoch_batches(2)))
    plain = Trainer(small_ross(), ds, TrainingConfig(class_balance="none", **conf))
    idx = torch.cat(plain.epoch_batches(1))
    assert sorted(idx.tolist()) == list(range(len(ds)))  # a permutation: every trace once
    assert torch.bincount(ds.labels[idx], minlength=3).tolist() == torch.bincount(ds.labels, minlength=3).tolist()


def test_class_weights_change_the_loss(tmp_path):
    ds = WaveformDataset(imbalanced_file(tmp_path), name="flat", preload=True)
    conf = dict(device="cpu", batch_size=50, validation_split=0.0, save_dir=None, show_progress=False,
                num_workers=0)
    weighted = Trainer(small_ross(), ds, TrainingConfig(class_balance="weights", **conf))
    counts = torch.bincount(ds.labels, minlength=3).double()
    expected = counts.sum() / (3 * counts)  # inverse frequency, mean weight per trace = 1
    assert torch.allclose(weighted.class_weights.double(), expected, rtol=1e-6)
    assert weighted.class_weights[UP] < weighted.class_weights[DOWN] < weighted.class_weights[UNKNOWN]
    logits = torch.randn(90, 3, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(90) % 3
    assert weighted.compute_loss(logits, labels, None).item() == pytest.approx(
        F.cross_entropy(logits, labels, weight=expected.float()).item(), rel=1e-6)
    assert weighted.compute_loss(logits, labels, None).item() != pytest.approx(F.cross_entropy(logits, labels).item())
    plain = Trainer(small_ross(), ds, TrainingConfig(class_balance="none", **conf))
    assert plain.class_weights is None
    assert plain.compute_loss(logits, labels, None).item() == pytest.approx(F.cross_entropy(logits, labels).item())


# ----------------------------------------------------------------------------------------------
# the fused training path keeps the augmentations' distributions (issue 16)
# ----------------------------------------------------------------------------------------------
def test_prepare_batch_draws_have_the_configured_distributions():
    """Through prepare_batch (shifted crop, flip and scale folded into one factor, noise drawn only
    for the traces that get it): the share of flipped and noisy traces, the shifts, the SNRs and the
    noise itself have the distributions the config asks for - checked statistically, not by bytes."""
    b, m, length = 6000, 5, 400
    stored = length + 2 * m
    t = torch.arange(stored) / 100.0
    amp = torch.exp(torch.linspace(-3.0, 3.0, b))[:, None, None]  # the SNR must not depend on the amplitude
    x = amp * torch.sin(2 * math.pi * 2.7 * t + torch.linspace(0, 3, b)[:, None, None])
    labels = torch.arange(b) % 3
    batch = {"waveforms": x, "labels": labels, "p_index": torch.full((b,), stored // 2, dtype=torch.long)}
    conf = cfg(flip_prob=0.5, noise_prob=0.3, noise_snr_db=[5.0, 40.0], max_shift=m)
    out, new, targets = prepare_batch(batch, length, "none", conf, gen(11))
    start = stored // 2 - targets["p_index"]  # the crop's first sample in the stored window
    shift = start - (stored - length) // 2
    counts = torch.bincount(shift + m, minlength=2 * m + 1).float() / b
    assert int(shift.abs().max()) <= m and bool(((counts - 1 / (2 * m + 1)).abs() < 0.02).all()), counts
    ref = torch.stack([x[i, :, start[i]:start[i] + length] for i in range(b)])
    sign = torch.sign((out * ref).sum(dim=(-2, -1)))
    flipped = sign < 0
    assert abs(flipped.float().mean().item() - 0.5) < 0.03
    swap = {UP: DOWN, DOWN: UP, UNKNOWN: UNKNOWN}
    assert new.tolist() == [swap[y] if f else y for y, f in zip(labels.tolist(), flipped.tolist())]
    noise = out * sign[:, None, None] - ref
    noisy = (noise != 0).any(dim=2).any(dim=1)
    assert abs(noisy.float().mean().item() - 0.3) < 0.03
    assert torch.equal(out[~noisy], (ref * sign[:, None, None])[~noisy])  # the others: untouched, flipped or not
    snr = 20 * torch.log10(ref[noisy].std(dim=(-2, -1)) / noise[noisy].std(dim=(-2, -1)))
    assert float(snr.min()) > 4.5 and float(snr.max()) < 40.5
    deciles = torch.quantile(snr, torch.linspace(0.1, 0.9, 9))  # uniform in dB over [5, 40]
    assert bool(((deciles - torch.linspace(8.5, 36.5, 9)).abs() < 1.5).all()), deciles
    z = noise[noisy] / noise[noisy].std(dim=(-2, -1), keepdim=True)  # white Gaussian: mean 0, kurtosis 3
    assert abs(z.mean().item()) < 0.01 and abs((z ** 4).mean().item() - 3.0) < 0.1
    lag1 = (z[..., 1:] * z[..., :-1]).mean().item()
    across = (z[1:] * z[:-1]).mean().item()  # neighbouring traces draw independent noise
    assert abs(lag1) < 0.01 and abs(across) < 0.01


def test_prepare_batch_normalised_equals_augment_then_normalise_in_distribution():
    """The fused path (peak normalisation divides out the scale factor, keeps the flip sign) gives
    what augment() followed by normalize_waveforms gives: same signs and labels for the same flips,
    unit peaks, and for traces without noise the very same values up to float rounding."""
    from seispolarity.data.dataset import normalize_waveforms

    x, labels = random_batch(b=500, length=410, seed=3)
    conf = cfg(flip_prob=0.5, scale_prob=1.0, scale_range=[0.1, 10.0], max_shift=0)
    out, new, _ = prepare_batch({"waveforms": x, "labels": labels}, 400, "peak", conf, gen(4))
    ref_x, ref_labels = augment(x[..., 5:405].clone(), labels, conf, gen(4))
    ref = normalize_waveforms(ref_x, "peak")
    assert torch.equal(new, ref_labels)
    assert torch.allclose(out, ref, rtol=1e-5, atol=1e-6)
    assert torch.allclose(out.abs().amax(dim=(-2, -1)), torch.ones(500))


# ----------------------------------------------------------------------------------------------
# the CPU's noise bank and the crop cut while reading (issue 16: the preloaded data path's speed)
# ----------------------------------------------------------------------------------------------
def test_noise_from_the_bank_keeps_the_noise_distribution_and_no_trace_shares_its_batch_noise():
    """The Trainer's NoiseBank (noise drawn in bulk, each vector used by several traces across
    batches) against the configured distribution, over 40 batches of 256: SNR uniform in dB,
    Gaussian, white, and within a batch every trace's noise independent of every other's."""
    from seispolarity.data.augment import NoiseBank

    b, length, batches = 256, 400, 40
    t = torch.arange(length) / 100.0
    amp = torch.exp(torch.linspace(-3.0, 3.0, b))[:, None, None]
    x = amp * torch.sin(2 * math.pi * 2.7 * t + torch.linspace(0, 3, b)[:, None, None])
    conf = cfg(noise_prob=0.3, noise_snr_db=[5.0, 40.0])
    bank, g = NoiseBank(seed=5, slots=1024, reuse=2, chunk=64), gen(12)
    snrs, units, shares = [], [], []
    for _ in range(batches):
        out, _, _ = prepare_batch({"waveforms": x.clone(), "labels": torch.zeros(b, dtype=torch.long)}, length,
                                  "none", conf, g, noise_bank=bank)
        noise = out - x
        noisy = (noise != 0).any(dim=2).any(dim=1)
        shares.append(noisy.float().mean().item())
        snrs.append(20 * torch.log10(x[noisy].std(dim=(-2, -1)) / noise[noisy].std(dim=(-2, -1))))
        z = (noise[noisy] / noise[noisy].std(dim=(-2, -1), keepdim=True)).flatten(1)
        corr = (z @ z.T) / z.shape[1]  # within the batch: independent vectors, |r| ~ 0.05, never ~1
        assert float((corr - torch.diag(torch.diag(corr))).abs().max()) < 0.35
        units.append(z)
    assert abs(sum(shares) / batches - 0.3) < 0.02
    assert bank.uses == sum(len(z) for z in units) and bank._redrawn > 1024 // 64  # every chunk redrawn
    snr = torch.cat(snrs)
    assert float(snr.min()) > 4.0 and float(snr.max()) < 41.0  # a 400-sample std scatters ~0.3 dB
    deciles = torch.quantile(snr, torch.linspace(0.1, 0.9, 9))
    assert bool(((deciles - torch.linspace(8.5, 36.5, 9)).abs() < 1.5).all()), deciles
    z = torch.cat(units)
    assert abs(z.mean().item()) < 0.01 and abs((z ** 4).mean().item() - 3.0) < 0.1
    assert abs((z[:, 1:] * z[:, :-1]).mean().item()) < 0.01


def test_noise_bank_is_a_function_of_its_seed_and_count():
    """What a resume relies on: a bank restored from state_dict hands out the same noise, at any
    point of its rolling redraws; and the chunks are redrawn as it is used."""
    from seispolarity.data.augment import NoiseBank

    first, g1 = NoiseBank(seed=3, slots=64, reuse=2, chunk=16), gen(1)
    seen = first.take(20, (1, 50), torch.float32, g1).clone()
    for step in range(30):
        again, g2 = NoiseBank(seed=3, slots=64, reuse=2, chunk=16), gen(0)
        again.load_state_dict(first.state_dict())
        g2.set_state(g1.get_state())
        assert torch.equal(first.take(20, (1, 50), torch.float32, g1), again.take(20, (1, 50), torch.float32, g2)), step
    assert first._redrawn == (first.uses - 20) // 32 > 4 * 4  # (as of the last take) each chunk several times
    assert not torch.equal(first._values[:20], seen)
    assert NoiseBank(seed=3, slots=64).take(40, (1, 50), torch.float32, gen(0)) is None  # over half: draw fresh


@pytest.mark.parametrize("channels", [1, 3])
def test_crop_windows_cuts_every_trace_at_its_own_start(channels):
    from seispolarity.data.dataset import crop_windows

    store = torch.randn(50, channels, 30)
    traces = torch.tensor([7, 0, 49, 7, 22])
    start = torch.tensor([0, 10, 5, 3, 10])
    out = crop_windows(store, 20, start, traces=traces)
    assert torch.equal(out, torch.stack([store[i, :, s:s + 20] for i, s in zip(traces.tolist(), start.tolist())]))
    batch = store[traces]
    assert torch.equal(crop_windows(batch, 20, start), out)
    assert torch.equal(crop(batch, 20, start - 5)[0], out)  # crop: a shift around the centre


def test_training_batches_prepared_together_equal_one_at_a_time(tmp_path):
    """Training on the CPU from a preloaded set, the Trainer prepares batches 4 at a time, each cut
    at its shifted crop as it is sliced. The model input, labels and targets are the same bytes as
    slicing each whole window and letting prepare_batch draw the shift, crop and augment it, from
    the same generator state; and each batch's ``stream_after`` is the generator and noise bank state
    after its own draws (what a checkpoint after that batch keeps)."""
    path = write_pulses(tmp_path / "p.hdf5", n=90, length=700)
    ds = WaveformDataset(str(path), name="synthetic", preload=True, window_length=400, max_shift=5)
    conf = AugmentConfig(noise_prob=0.9, scale_prob=0.5, bandpass_prob=0.3)
    trainer = Trainer(Ross(), ds, TrainingConfig(batch_size=16, epochs=1, device="cpu", validation_split=0.0),
                      augment=conf)
    trainer.noise_bank = NoiseBank(seed=4, slots=64, reuse=1, chunk=16)  # redrawn within a group
    batches = trainer.epoch_batches(1)  # 6 batches, the last of 10: a group of 4, then one of 2
    state, bank = trainer.augment_generator.get_state(), trainer.noise_bank.state_dict()
    together = list(trainer.iterate(ds, batches, train=True))
    trainer.augment_generator.set_state(state)
    trainer.noise_bank = NoiseBank(seed=4, slots=64, reuse=1, chunk=16)
    trainer.noise_bank.load_state_dict(bank)
    for batch, idx in zip(together, batches, strict=True):
        x1, y1, t1 = trainer.prepare_inputs(batch, train=True)
        x2, y2, t2 = trainer.prepare_inputs(ds.get_batch(idx), train=True)
        assert torch.equal(x1, x2) and torch.equal(y1, y2) and torch.equal(t1["p_index"], t2["p_index"])
        rng, noise = batch["stream_after"]
        assert torch.equal(rng, trainer.augment_generator.get_state())
        assert noise == trainer.noise_bank.state_dict()
    assert trainer.noise_bank._redrawn > 0


def test_large_batches_are_prepared_in_smaller_groups(tmp_path, monkeypatch):
    """Grouping pays for small batches only: at most PREPARED_BYTES of model input are prepared at a
    time. The batches of a group share one tensor, so its size tells the group."""
    from seispolarity.training import batches as batch_plan

    path = write_pulses(tmp_path / "p.hdf5", n=90, length=700)
    ds = WaveformDataset(str(path), name="synthetic", preload=True, window_length=400, max_shift=5)
    trainer = Trainer(Ross(), ds, TrainingConfig(batch_size=16, epochs=1, device="cpu", validation_split=0.0))
    batches = trainer.epoch_batches(1)  # 16, 16, 16, 16, 16, 10 traces

    def group_rows() -> list[int]:
        got = batch_plan.prepared_batches(ds, batches, 400, "peak", None, trainer.augment_generator,
                                          trainer.noise_bank, 100.0)
        return [b["prepared"][0].untyped_storage().nbytes() // (400 * 4) for b in got]

    assert group_rows() == [64] * 4 + [26] * 2  # the default: 4 batches at a time
    monkeypatch.setattr(batch_plan, "PREPARED_BYTES", 3 * 16 * 400 * 4)
    assert group_rows() == [48] * 3 + [42] * 3
    monkeypatch.setattr(batch_plan, "PREPARED_BYTES", 1000)
    assert group_rows() == [16] * 5 + [10]
