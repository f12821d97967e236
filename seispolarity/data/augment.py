"""Batch augmentations and the crop/normalise step that turns stored windows into model input.

Everything works on a whole batch ``(B, C, W)`` on whatever device it lives on, drawing from one
``torch.Generator`` so a run (and its resume) is reproducible. Nothing here is zero-phase: the
optional band-pass is a causal Butterworth response, so it never puts energy before the onset.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch

from .dataset import crop_windows, normalize_waveforms
from .labels import DOWN, UNKNOWN, UP


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
    shift the crop is a view of ``x``; with one it is a new tensor (``crop_windows``).
    """
    width = x.shape[-1]
    centre = (width - length) // 2
    if shift is None:
        start = torch.full((x.shape[0],), centre, dtype=torch.long, device=x.device)
        return x[..., centre:centre + length], start
    start = (centre + shift).clamp(0, width - length)
    return crop_windows(x, length, start), start


def shifted_starts(count: int, width: int, length: int, cfg: AugmentConfig, generator: torch.Generator | None,
                   device: torch.device | str) -> torch.Tensor | None:
    """Where each training crop of ``length`` from a window of ``width`` starts: the centre moved by a
    shift uniform in ``[-max_shift, max_shift]`` (at most the window's margin); None without a shift."""
    margin = min(int(cfg.max_shift), (width - length) // 2)
    if margin <= 0:
        return None
    shift = torch.randint(-margin, margin + 1, (count,), generator=generator, device=device)
    return shift.add_((width - length) // 2)


@lru_cache(maxsize=8)
def _swap_table(device: torch.device) -> torch.Tensor:
    """label -> its flipped label, made once per device (making it per batch would be a copy to the
    device, and on CUDA a host sync, every step)."""
    return torch.tensor([DOWN, UP, UNKNOWN], dtype=torch.long, device=device)


def _flipped_labels(labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Up and down swapped on the masked traces (unknown stays unknown): one table lookup."""
    return torch.where(mask, _swap_table(labels.device).index_select(0, labels), labels)


def flip_polarity(x: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Negate the masked traces and swap their up/down labels (unknown stays unknown)."""
    sign = torch.where(mask, -1.0, 1.0).to(x.dtype)[:, None, None]
    return x * sign, _flipped_labels(labels, mask)


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

    ``x.std(dim=(-2, -1))`` to float rounding (~1e-7 relative), as the norm of the centred trace:
    torch's CPU std (Welford) takes ~1 ms on a (256, 1, 400) batch, this ~0.03 ms.
    """
    flat = x.flatten(1)
    centred = flat - flat.mean(dim=1, keepdim=True)
    return torch.linalg.vector_norm(centred, dim=1) / math.sqrt(max(flat.shape[1] - 1, 1))


def _noise_level(std: torch.Tensor, snr_u: torch.Tensor, snr_db: list[float]) -> torch.Tensor:
    """``std / 10 ** (snr / 20)`` with ``snr`` uniform in ``snr_db`` (dB) for ``snr_u`` uniform in [0, 1):
    the factor is ``exp`` of an affine function of ``snr_u``, two operations."""
    lo, hi = float(snr_db[0]), float(snr_db[1])
    per_db = math.log(10.0) / 20.0
    return std * torch.exp(torch.add(-lo * per_db, snr_u, alpha=-(hi - lo) * per_db))


class NoiseBank:
    """Unit white Gaussian noise for the noise augmentation on the CPU, drawn in bulk and each vector
    used by ``reuse`` traces on average.

    torch's CPU generator yields ~5 ns a Gaussian value, single-threaded: fresh noise for the ~30 %
    of a batch of 256 that get it was a fifth of the CPU data path. The bank holds ``slots`` noise
    vectors. A batch takes a run of consecutive slots from a random start (drawn from the
    augmentation generator), so no two traces of a batch share noise. As vectors are handed out the
    bank is redrawn ``chunk`` slots at a time, in turn, one slot for every ``reuse`` vectors handed
    out: the cost is spread over the steps, and each vector serves ``reuse`` traces on average before
    it is replaced. Each trace's noise is exactly white and Gaussian and independent of the rest of
    its batch; only in other batches is a vector met again, by other traces at other levels and
    polarities. Every chunk is drawn from a generator seeded by (seed, chunk, times drawn), so the
    bank is a function of the seed and the count of vectors handed out, and a checkpoint keeps that
    one count (``state_dict``) for an exact resume.
    """

    def __init__(self, seed: int, slots: int = 4096, reuse: int = 8, chunk: int = 64) -> None:
        if slots % chunk:
            raise ValueError(f"NoiseBank: slots={slots} must be a multiple of chunk={chunk}")
        self.seed, self.slots, self.reuse, self.chunk = int(seed), int(slots), int(reuse), int(chunk)
        self.uses = 0  # noise vectors handed out so far
        self._values: torch.Tensor | None = None
        self._layout: tuple | None = None  # (shape, dtype) of _values
        self._redrawn = 0  # chunks redrawn in turn since the first draw

    def take(self, count: int, shape: tuple[int, ...], dtype: torch.dtype,
             generator: torch.Generator | None) -> torch.Tensor | None:
        """``count`` distinct unit-noise vectors of ``shape`` (a view: do not write to it); None when
        the batch wants more than half the bank (then draw fresh noise)."""
        if count > self.slots // 2:
            return None
        if self._layout != (tuple(shape), dtype):  # first use (or a resume): every chunk as it stands now
            self._values = torch.empty((self.slots, *shape), dtype=dtype)
            self._layout, self._redrawn = (tuple(shape), dtype), self._due()
            for index in range(self.slots // self.chunk):
                self._draw(index)
        while self._redrawn < self._due():
            self._redrawn += 1
            self._draw((self._redrawn - 1) % (self.slots // self.chunk))
        start = int(torch.randint(0, self.slots - count + 1, (1,), generator=generator))
        self.uses += count
        return self._values[start:start + count]

    def _due(self) -> int:
        """Chunks to have been redrawn by now: one slot for every ``reuse`` vectors handed out."""
        return self.uses // (self.reuse * self.chunk)

    def _draw(self, index: int) -> None:
        """Chunk ``index`` as it stands after ``_redrawn`` redraws in turn (chunk ``i`` is redrawn by
        the redraws ``i``, ``i + chunks``, ...): its seed counts those, plus the first draw."""
        chunks = self.slots // self.chunk
        generation = (self._redrawn - index + chunks - 1) // chunks
        seed = ((self.seed * 1_000_003 + index) * 1_000_003 + generation) % 2**63
        part = self._values[index * self.chunk:(index + 1) * self.chunk]
        part.normal_(generator=torch.Generator().manual_seed(seed))

    def state_dict(self) -> dict[str, int]:
        return {"uses": self.uses}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.uses = int(state.get("uses", 0))
        self._layout = None  # redrawn for this count at the next take


@dataclass
class AugmentDraws:
    """The random draws of the augmentations for one batch (or for consecutive batches, ``concat``).

    ``u``: per-trace uniforms by name (``flip``, ``scale``, ``scale_mask``, ``bandpass``, ``snr``,
    ``noise``), each ``(B,)``. On the CPU ``rows`` are the traces that get noise and ``unit`` their
    unit noise ``(len(rows), C, L)``; on a device every trace draws noise (``unit`` is ``(B, C, L)``)
    and the mask zeroes the level of the rest, as counting the masked traces would be a host sync.
    """

    u: dict[str, torch.Tensor]
    rows: torch.Tensor | None = None
    unit: torch.Tensor | None = None

    @staticmethod
    def concat(parts: list[AugmentDraws]) -> AugmentDraws:
        """Consecutive batches' draws as the draws of one batch holding their traces in turn."""
        if len(parts) == 1:
            return parts[0]
        u = {name: torch.cat([p.u[name] for p in parts]) for name in parts[0].u}
        units = [p.unit for p in parts if p.unit is not None]
        unit = torch.cat(units) if units else None
        if parts[0].rows is None:
            return AugmentDraws(u, None, unit)
        offsets = np.cumsum([0] + [len(next(iter(p.u.values()))) for p in parts[:-1]])
        rows = torch.cat([p.rows + int(offset) for p, offset in zip(parts, offsets)])
        return AugmentDraws(u, rows, unit)


def draw_augment(count: int, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device | str,
                 cfg: AugmentConfig, generator: torch.Generator | None, bank: NoiseBank | None = None,
                 keep: bool = False) -> AugmentDraws | None:
    """Draw what the augmentations of ``count`` traces of ``shape`` need, in a fixed order; None when
    ``cfg`` applies nothing.

    All the per-trace uniforms come from one ``torch.rand`` call. On the CPU the Gaussian draw is the
    data path's largest cost, so only the traces that get noise (``noise_prob`` of them) draw it,
    from ``bank`` where one is given. ``keep``: copy the noise out of the bank (a view otherwise),
    for draws applied after the bank's next ``take``, which may redraw those slots.
    """
    names = (["flip"] if cfg.flip_prob > 0 else []) + (["scale", "scale_mask"] if cfg.scale_prob > 0 else []) \
        + (["bandpass"] if cfg.bandpass_prob > 0 else []) + (["snr", "noise"] if cfg.noise_prob > 0 else [])
    if not names:
        return None
    draws = AugmentDraws(dict(zip(names, torch.rand((len(names), count), generator=generator, device=device))))
    if "noise" not in draws.u:
        return draws
    if torch.device(device).type != "cpu":
        draws.unit = torch.randn((count, *shape), generator=generator, device=device, dtype=dtype)
        return draws
    draws.rows = (draws.u["noise"] < cfg.noise_prob).nonzero().squeeze(1)
    picked = draws.rows.shape[0]
    if picked:
        unit = bank.take(picked, shape, dtype, generator) if bank is not None else None
        if unit is None:
            unit = torch.randn((picked, *shape), generator=generator, dtype=dtype)
        elif keep:
            unit = unit.clone()
        draws.unit = unit
    return draws


def _add_noise(x: torch.Tensor, cfg: AugmentConfig, draws: AugmentDraws, inplace: bool) -> torch.Tensor:
    """White Gaussian noise at ``snr_db`` (uniform in ``cfg.noise_snr_db``) on the traces drawn for it:
    on the CPU only those rows are touched; on a device the mask zeroes the others' level."""
    snr_u = draws.u["snr"]
    if draws.rows is not None:
        rows = draws.rows
        if rows.shape[0] == 0:
            return x
        level = _noise_level(_trace_std(x.index_select(0, rows)), snr_u.index_select(0, rows), cfg.noise_snr_db)
        noise = draws.unit * level[:, None, None]
        return x.index_add_(0, rows, noise) if inplace else x.index_add(0, rows, noise)
    level = _noise_level(_trace_std(x), snr_u, cfg.noise_snr_db) * (draws.u["noise"] < cfg.noise_prob)
    noise = draws.unit * level[:, None, None]
    return x.add_(noise) if inplace else x + noise


def _augment_parts(x: torch.Tensor, labels: torch.Tensor, cfg: AugmentConfig, draws: AugmentDraws | None,
                   sampling_rate: float, inplace: bool = False
                   ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """The augmentations of ``draws`` as (band-passed and noisy batch, per-trace factor, labels).

    Flip and scale are one factor per trace (``-1`` or ``+1`` times the scale), returned rather than
    applied: every step is linear in the trace and the noise level follows the trace's own std, so
    applying the factor last is the same in distribution as applying it first (Gaussian noise is
    symmetric), and ``prepare_batch`` folds it into the normalisation's single division.
    """
    if draws is None:
        return x, None, labels
    u, dev, factor = draws.u, x.device, None
    if "flip" in u:
        flip = u["flip"] < cfg.flip_prob
        labels = _flipped_labels(labels, flip)
        factor = torch.where(flip, -1.0, 1.0).to(x.dtype)
    if "scale" in u:
        lo, hi = np.log(cfg.scale_range[0]), np.log(cfg.scale_range[1])
        scale = torch.exp(lo + (hi - lo) * u["scale"])
        scale = torch.where(u["scale_mask"] < cfg.scale_prob, scale, torch.ones_like(scale)).to(x.dtype)
        factor = scale if factor is None else factor * scale
    if "bandpass" in u:
        mask = u["bandpass"] < cfg.bandpass_prob
        if dev.type != "cpu" or bool(mask.any()):  # on a device the look would be a host sync per step
            filtered = causal_bandpass(x, sampling_rate, *cfg.bandpass_freqs, order=cfg.bandpass_order)
            x, inplace = torch.where(mask[:, None, None], filtered, x), True
    if "noise" in u:
        x = _add_noise(x, cfg, draws, inplace)
    return x, factor, labels


def augment(x: torch.Tensor, labels: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator,
            sampling_rate: float = 100.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply flip, scale, band-pass and noise to a cropped batch (``x`` itself is left unchanged)."""
    draws = draw_augment(len(x), tuple(x.shape[1:]), x.dtype, x.device, cfg, generator)
    x, factor, labels = _augment_parts(x, labels, cfg, draws, sampling_rate)
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
            den = torch.copysign(den, factor)
        den = den[:, None, None]
        return x.div_(den) if inplace else x / den
    if factor is not None:
        x = x.mul_(factor[:, None, None]) if inplace else x * factor[:, None, None]
    return normalize_waveforms(x, normalize)


def prepare_batch(batch: dict[str, torch.Tensor], length: int, normalize: str | None,
                  cfg: AugmentConfig | None = None, generator: torch.Generator | None = None,
                  sampling_rate: float = 100.0, noise_bank: NoiseBank | None = None,
                  draws: AugmentDraws | None = None) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Stored windows -> (model input ``(B, C, length)``, labels, targets for auxiliary heads).

    With ``cfg`` (training) the crop is shifted and the batch augmented; without it the crop is
    centred and nothing random happens (validation, test, prediction). ``noise_bank``: where the
    CPU takes its unit noise from (the Trainer's); without one, noise is drawn fresh. ``draws``: the
    augmentation's draws made beforehand (``draw_augment``, for several batches ``AugmentDraws.concat``),
    with the crop's start in the batch; without them they are drawn here, after the start.
    """
    x, labels = batch["waveforms"], batch["labels"]
    if "start" in batch:  # cut as it was read (WaveformDataset.get_batch with a start): a new tensor
        start, owned = batch["start"], True
    else:
        if x.shape[-1] < length:
            raise ValueError(f"windows of {x.shape[-1]} samples are shorter than the model input {length}; "
                             f"set the dataset's window_length to at least {length}")
        start = None if cfg is None else shifted_starts(len(x), x.shape[-1], length, cfg, generator, x.device)
        owned = start is not None  # a shifted crop is a new tensor: work on it in place
        x, start = (crop_windows(x, length, start), start) if owned else crop(x, length)
    if cfg is None:
        x = normalize_waveforms(x, normalize)
    else:
        if draws is None:
            draws = draw_augment(len(x), tuple(x.shape[1:]), x.dtype, x.device, cfg, generator, noise_bank)
        x, factor, labels = _augment_parts(x, labels, cfg, draws, sampling_rate, owned)
        x = _normalize_with_factor(x, factor, normalize, inplace=owned)
    targets = {"labels": labels}
    if "p_index" in batch:
        targets["p_index"] = batch["p_index"] - start
    if "clarity" in batch:
        targets["clarity"] = batch["clarity"]
    return x, labels, targets
