"""Batch augmentations and the crop/normalise step that turns stored windows into model input.

Everything works on a whole batch ``(B, C, W)`` on whatever device it lives on, drawing from one
``torch.Generator`` so a run (and its resume) is reproducible. Nothing here is zero-phase: the
optional band-pass is a causal Butterworth response, so it never puts energy before the onset.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch

from .dataset import normalize_waveforms
from .labels import DOWN, UP


@dataclass
class AugmentConfig:
    """Training-time augmentations (none is applied at validation or test).

    Attributes:
        flip_prob: probability of negating a trace and swapping up <-> down (unknown unchanged).
        noise_prob: probability of adding white noise at an SNR drawn from ``noise_snr_db``.
        max_shift: time shift of the waveform (pick error), uniform in [-max_shift, max_shift] samples.
        scale_prob / scale_range: random amplitude scaling (log-uniform in the range).
        bandpass_prob / bandpass_freqs / bandpass_order: a causal Butterworth band-pass.
    """

    flip_prob: float = 0.5
    noise_prob: float = 0.3
    noise_snr_db: list[float] = field(default_factory=lambda: [5.0, 40.0])
    max_shift: int = 5
    scale_prob: float = 0.0
    scale_range: list[float] = field(default_factory=lambda: [0.5, 2.0])
    bandpass_prob: float = 0.0
    bandpass_freqs: list[float] = field(default_factory=lambda: [1.0, 20.0])
    bandpass_order: int = 2

    def __post_init__(self) -> None:
        for name in ("flip_prob", "noise_prob", "scale_prob", "bandpass_prob"):
            value = getattr(self, name)
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"augment.{name}={value}; expected a probability in [0, 1]")
        if int(self.max_shift) < 0:
            raise ValueError(f"augment.max_shift={self.max_shift}; expected >= 0 samples")
        for name in ("noise_snr_db", "scale_range", "bandpass_freqs"):
            value = list(getattr(self, name))
            if len(value) != 2 or value[0] > value[1]:
                raise ValueError(f"augment.{name}={value}; expected [low, high] with low <= high")


def crop(x: torch.Tensor, length: int, shift: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut ``length`` samples around the centre, each trace moved by ``shift`` samples.

    Returns the crop and each trace's start offset (so a P index can follow the shift). Without a
    shift the crop is a view of ``x``; with one it is a new tensor (on the CPU one strided copy
    through numpy's fancy indexing of a sliding-window view, ~2.5x faster than ``torch.gather``
    with its index tensor as large as the output).
    """
    width = x.shape[-1]
    centre = (width - length) // 2
    if shift is None:
        start = torch.full((x.shape[0],), centre, dtype=torch.long, device=x.device)
        return x[..., centre:centre + length], start
    start = (centre + shift).clamp(0, width - length)
    if x.device.type == "cpu" and not x.requires_grad and x.dim() == 3:
        windows = np.lib.stride_tricks.sliding_window_view(x.numpy(), length, axis=2)  # (B, C, W-L+1, L)
        out = np.ascontiguousarray(windows[np.arange(x.shape[0]), :, start.numpy()])  # (B, C, L)
        return torch.from_numpy(out), start
    idx = (start[:, None] + torch.arange(length, device=x.device))[:, None, :].expand(-1, x.shape[1], -1)
    return torch.gather(x, 2, idx), start


def flip_polarity(x: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Negate the masked traces and swap their up/down labels (unknown stays unknown)."""
    sign = torch.where(mask, -1.0, 1.0).to(x.dtype)[:, None, None]
    swapped = torch.where(labels == UP, DOWN, torch.where(labels == DOWN, UP, labels))
    return x * sign, torch.where(mask, swapped, labels)


@lru_cache(maxsize=16)
def _bandpass_response(n_fft: int, sampling_rate: float, low: float, high: float, order: int) -> np.ndarray:
    from scipy.signal import butter, sosfilt

    nyq = sampling_rate / 2
    sos = butter(order, [low / nyq, min(high / nyq, 0.99)], btype="band", output="sos")
    # The first n_fft // 2 samples of the filter's impulse response are all that a trace of that
    # length can see; their spectrum (zero-padded to n_fft) makes the FFT product an exact linear
    # convolution: the same as sosfilt from rest, with no wrap-around of the IIR tail before the onset.
    impulse = np.zeros(n_fft // 2)
    impulse[0] = 1.0
    return np.fft.rfft(sosfilt(sos, impulse), n=n_fft).astype(np.complex64)


def causal_bandpass(x: torch.Tensor, sampling_rate: float, low: float, high: float, order: int = 2) -> torch.Tensor:
    """Causal Butterworth band-pass by FFT (zero-padded to avoid wrap-around)."""
    n = x.shape[-1]
    n_fft = 2 * n
    h = torch.from_numpy(_bandpass_response(n_fft, float(sampling_rate), float(low), float(high), int(order)))
    spec = torch.fft.rfft(x.float(), n=n_fft) * h.to(x.device)
    return torch.fft.irfft(spec, n=n_fft)[..., :n].to(x.dtype)


def _trace_std(x: torch.Tensor) -> torch.Tensor:
    """Per-trace unbiased standard deviation over channels and samples, ``(B,)``.

    ``x.std(dim=(-2, -1))`` to float rounding (~1e-7 relative), by a two-pass mean and sum of
    squares: torch's CPU std (Welford) takes ~1 ms on a (256, 1, 400) batch, this ~0.05 ms.
    """
    flat = x.flatten(1)
    centred = flat - flat.mean(dim=1, keepdim=True)
    return (centred.square().sum(dim=1) / max(flat.shape[1] - 1, 1)).sqrt()


def _add_noise(x: torch.Tensor, cfg: AugmentConfig, snr_u: torch.Tensor, mask: torch.Tensor,
               generator: torch.Generator | None, inplace: bool) -> torch.Tensor:
    """White Gaussian noise at ``snr_db`` (uniform in ``cfg.noise_snr_db``) on the masked traces.

    On the CPU the Gaussian draw is most of the data path's time (torch's generator yields ~8 ns a
    value, single-threaded), so only the masked traces (``noise_prob`` of them) draw noise, and the
    rest are not touched. On an accelerator the draw is cheap and counting the masked traces would
    be a host sync per batch: every trace draws, and the mask zeroes the level of the others.
    """
    lo, hi = cfg.noise_snr_db
    if x.device.type == "cpu":
        rows = mask.nonzero().squeeze(1)
        if len(rows) == 0:
            return x
        picked = x.index_select(0, rows)
        snr_db = lo + (hi - lo) * snr_u.index_select(0, rows)
        level = _trace_std(picked) / torch.pow(10.0, snr_db / 20.0)
        noise = torch.randn(picked.shape, generator=generator, dtype=x.dtype)
        picked.add_(noise.mul_(level[:, None, None]))
        return x.index_copy_(0, rows, picked) if inplace else x.index_copy(0, rows, picked)
    level = _trace_std(x) / torch.pow(10.0, (lo + (hi - lo) * snr_u) / 20.0) * mask
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    noise.mul_(level[:, None, None])
    return x.add_(noise) if inplace else x + noise


def _augment_parts(x: torch.Tensor, labels: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator | None,
                   sampling_rate: float, inplace: bool = False
                   ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """The augmentations as (band-passed and noisy batch, per-trace factor, labels).

    Flip and scale are one factor per trace (``-1`` or ``+1`` times the scale), returned rather than
    applied: every step is linear in the trace and the noise level follows the trace's own std, so
    applying the factor last is the same in distribution as applying it first (Gaussian noise is
    symmetric), and ``prepare_batch`` folds it into the normalisation's single division. All the
    per-trace draws come from one ``torch.rand`` call.
    """
    b, dev = x.shape[0], x.device
    draws = []
    if cfg.flip_prob > 0:
        draws.append("flip")
    if cfg.scale_prob > 0:
        draws += ["scale", "scale_mask"]
    if cfg.bandpass_prob > 0:
        draws.append("bandpass")
    if cfg.noise_prob > 0:
        draws += ["snr", "noise"]
    if not draws:
        return x, None, labels
    u = dict(zip(draws, torch.rand((len(draws), b), generator=generator, device=dev)))
    factor = None
    if "flip" in u:
        flip = u["flip"] < cfg.flip_prob
        swapped = torch.where(labels == UP, DOWN, torch.where(labels == DOWN, UP, labels))
        labels = torch.where(flip, swapped, labels)
        factor = 1.0 - 2.0 * flip.to(x.dtype)
    if "scale" in u:
        lo, hi = np.log(cfg.scale_range[0]), np.log(cfg.scale_range[1])
        scale = torch.exp(lo + (hi - lo) * u["scale"])
        scale = torch.where(u["scale_mask"] < cfg.scale_prob, scale, torch.ones_like(scale)).to(x.dtype)
        factor = scale if factor is None else factor * scale
    if "bandpass" in u:
        mask = u["bandpass"] < cfg.bandpass_prob
        if bool(mask.any()):
            filtered = causal_bandpass(x, sampling_rate, *cfg.bandpass_freqs, order=cfg.bandpass_order)
            x, inplace = torch.where(mask[:, None, None], filtered, x), True
    if "noise" in u:
        x = _add_noise(x, cfg, u["snr"], u["noise"] < cfg.noise_prob, generator, inplace)
    return x, factor, labels


def augment(x: torch.Tensor, labels: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator,
            sampling_rate: float = 100.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply flip, scale, band-pass and noise to a cropped batch (``x`` itself is left unchanged)."""
    x, factor, labels = _augment_parts(x, labels, cfg, generator, sampling_rate)
    return (x if factor is None else x * factor[:, None, None]), labels


def _normalize_with_factor(x: torch.Tensor, factor: torch.Tensor | None, normalize: str | None,
                           inplace: bool) -> torch.Tensor:
    """``normalize_waveforms(x * factor, normalize)`` in one pass over the batch where it can.

    Peak and std normalisation divide out any positive factor, so only its sign is left: the result
    is ``x / (scale(x) * sign)``, bit for bit the negation of the unflipped trace.
    """
    if normalize in ("peak", "std"):
        if normalize == "peak":
            scale = x.abs().amax(dim=(-2, -1))
        else:
            scale = _trace_std(x)
        den = scale.clamp_min(1e-12)
        if factor is not None:
            den = den * torch.sign(factor)
        den = den[:, None, None]
        return x.div_(den) if inplace else x / den
    if factor is not None:
        x = x.mul_(factor[:, None, None]) if inplace else x * factor[:, None, None]
    return normalize_waveforms(x, normalize)


def prepare_batch(batch: dict[str, torch.Tensor], length: int, normalize: str | None,
                  cfg: AugmentConfig | None = None, generator: torch.Generator | None = None,
                  sampling_rate: float = 100.0) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Stored windows -> (model input ``(B, C, length)``, labels, targets for auxiliary heads).

    With ``cfg`` (training) the crop is shifted and the batch augmented; without it the crop is
    centred and nothing random happens (validation, test, prediction).
    """
    x, labels = batch["waveforms"], batch["labels"]
    if x.shape[-1] < length:
        raise ValueError(f"windows of {x.shape[-1]} samples are shorter than the model input {length}; "
                         f"set the dataset's window_length to at least {length}")
    shift = None
    if cfg is not None and cfg.max_shift > 0:
        margin = min(int(cfg.max_shift), (x.shape[-1] - length) // 2)
        if margin > 0:
            shift = torch.randint(-margin, margin + 1, (x.shape[0],), generator=generator, device=x.device)
    x, start = crop(x, length, shift)
    if cfg is None:
        x = normalize_waveforms(x, normalize)
    else:
        owned = shift is not None  # a shifted crop is a new tensor: work on it in place
        x, factor, labels = _augment_parts(x, labels, cfg, generator, sampling_rate, inplace=owned)
        x = _normalize_with_factor(x, factor, normalize, inplace=owned)
    targets = {"labels": labels}
    if "p_index" in batch:
        targets["p_index"] = batch["p_index"] - start
    if "clarity" in batch:
        targets["clarity"] = batch["clarity"]
    return x, labels, targets
